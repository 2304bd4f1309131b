"""What one ingest pass did, for the caller, the CLI and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["IngestReport"]


@dataclass
class IngestReport:
    """Counts of one pass (or the sum of several, see :meth:`merge`).

    Attributes:
        segments: segments that had new bytes and were read.
        segments_seen: segments found under the root.
        frames: whole frames consumed. events: events decoded. bytes: bytes consumed.
        rows: rows inserted per store table (``metrics`` = scalar points).
        problems: one message per quarantined piece (file, byte offset, reason).
        duplicates: frames skipped because the same frame was already loaded (a copied
            segment); refused: paths not read because they are not regular files or
            folders inside the root (links, FIFOs...), each reported once.
        runs: status of every run this pass touched or re-checked.
        commits: transactions committed; commit_seconds: time spent committing (on the
            commit thread); wait_seconds: time decoding waited for commits.
        seconds: wall time of the pass.
        notes: what ingest did to the store itself before the pass (a conversion into a
            lake, a rebuild), one line each, for the CLI to print.
    """

    segments: int = 0
    segments_seen: int = 0
    frames: int = 0
    events: int = 0
    bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0
    refused: int = 0
    runs: dict[str, str] = field(default_factory=dict)
    commits: int = 0
    commit_seconds: float = 0.0
    wait_seconds: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        """Scalar metric points inserted (rows of ``metrics``)."""
        return self.rows.get("metrics", 0)

    @property
    def quarantined(self) -> int:
        return len(self.problems)

    def add_rows(self, rows: dict[str, int]) -> None:
        for table, n in rows.items():
            if n:
                self.rows[table] = self.rows.get(table, 0) + n

    def summary(self) -> str:
        """One line: what was loaded, how fast, and how many problems."""
        rate = self.points / self.seconds if self.seconds > 0 else 0.0
        others = ", ".join(f"{n:,} {t}" for t, n in sorted(self.rows.items()) if t != "metrics")
        text = (
            f"ingested {self.segments} segment(s), {self.frames:,} frames, {self.events:,} events: "
            f"{self.points:,} metric points"
            + (f", {others}" if others else "")
            + f" in {self.seconds:.2f}s ({rate / 1e6:.2f}M points/s)"
        )
        if self.duplicates:
            text += f"; {self.duplicates:,} duplicate frame(s) skipped"
        if self.problems:
            text += f"; {len(self.problems)} problem(s) quarantined (see the quarantine table)"
        return text
