"""Crash-safe checkpoints with retention, a ``latest`` pointer and ``checkpoint`` events.

Why it exists: a training job killed at any instant must leave a directory from which it
can resume. :class:`CheckpointManager` guarantees that:

* a checkpoint file under its final name is always complete: it is written to a temporary
  file in the same directory (``.ckpt-<step>.pt.tmp-<pid>-<random>``), hashed while it is
  written, fsynced, renamed with ``os.replace`` (atomic on POSIX) and the directory is
  fsynced, so the rename itself survives a power cut;
* the ``latest`` pointer (a small JSON file naming the file, its step and its sha256) is
  replaced the same way, only after its checkpoint is durable, so it always names a
  complete checkpoint whose sha256 matches;
* ``manifest.json`` (same atomic replace) remembers every kept checkpoint's step, metrics
  and sha256, so retention and "best" survive restarts;
* retention keeps the ``keep_last`` newest and the ``keep_best`` best by ``metric``; it
  never deletes the checkpoint named by ``latest`` nor a kept-best one, and deletes only
  after the new pointer is durable;
* loading uses ``torch.load(weights_only=True)`` by default, which refuses to unpickle
  arbitrary objects: nothing in a checkpoint directory can run code on load. Pass
  ``weights_only=False`` only for files you wrote yourself.

Temporary files left by a killed process are removed when a manager opens the directory
(only those whose writing process is gone). In distributed training only rank 0 writes:
on other ranks :meth:`CheckpointManager.save` is a no-op returning None.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlake.schemas.errors import ConfigError, RunlakeError

__all__ = ["CheckpointInfo", "CheckpointManager"]

LATEST = "latest"
MANIFEST = "manifest.json"
_FILE_RE = re.compile(r"^ckpt-(\d{9,})\.pt$")
_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint as recorded in the manifest and in its ``checkpoint`` event."""

    file: str
    step: int
    sha256: str
    bytes: int
    metrics: dict[str, float] = field(default_factory=dict)
    path: Path | None = None


class _HashingWriter:
    """A file-like that hashes and counts what torch.save writes through it."""

    def __init__(self, f):
        self._f = f
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.n += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers cannot be in progress: we are not saving now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class CheckpointManager:
    """Save, retain and reload checkpoints atomically, recording ``checkpoint`` events.

    Args:
        run: the runlake Run that receives ``checkpoint`` events (or None to only manage
            files). Its ``rank`` decides who writes: ranks other than 0 do not save.
        dir: the checkpoint directory (created if missing).
        keep_last: how many of the newest checkpoints to keep (>= 1).
        keep_best: how many of the best checkpoints by ``metric`` to keep (>= 0).
        metric: the metrics key that ranks checkpoints (from ``save(metrics=...)``).
        mode: ``"min"`` or ``"max"``: whether lower or higher ``metric`` is better.

    Raises:
        ConfigError: invalid retention arguments.

    Example::

        ckpt = CheckpointManager(run, "ckpts", keep_last=2, metric="val/loss")
        state = ckpt.load_latest()                     # None on a fresh start
        ...
        ckpt.save({"model": model.state_dict(), "step": step}, step, {"val/loss": vl})
    """

    def __init__(
        self,
        run: Any,
        dir: str | os.PathLike,
        *,
        keep_last: int = 3,
        keep_best: int = 1,
        metric: str = "val/loss",
        mode: str = "min",
    ) -> None:
        if keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1 (the latest checkpoint is always kept), got {keep_last}")
        if keep_best < 0:
            raise ConfigError(f"keep_best must be >= 0, got {keep_best}")
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        self.run = run
        self.dir = Path(dir)
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.metric = metric
        self.mode = mode
        self.rank = int(getattr(run, "rank", 0) or 0)
        if self.rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
        self._manifest = self._read_manifest()
        if self.rank == 0:
            self._adopt_orphans()

    # ---------------------------------------------------------------- saving

    def save(self, obj: Any, step: int, metrics: dict[str, float] | None = None) -> CheckpointInfo | None:
        """Write one checkpoint atomically, move ``latest`` to it, apply retention.

        Args:
            obj: a state dict (any object ``torch.save`` accepts) or an object with
                ``state_dict()`` (a module or optimizer), whose state dict is saved.
            step: the training step; names the file ``ckpt-<step:09d>.pt``.
            metrics: scalars recorded with it; ``metrics[self.metric]`` ranks "best".

        Returns:
            The saved checkpoint's info, or None on ranks other than 0.
        """
        import torch

        if self.rank != 0:
            return None
        step = int(step)
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        if hasattr(obj, "state_dict") and callable(obj.state_dict):
            obj = obj.state_dict()
        name = f"ckpt-{step:09d}.pt"
        final = self.dir / name
        tmp = self.dir / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as f:
                writer = _HashingWriter(f)
                torch.save(obj, writer)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)
        info = CheckpointInfo(name, step, writer.sha.hexdigest(), writer.n, metrics, final)

        entries = [e for e in self._manifest["checkpoints"] if e["file"] != name]
        entries.append({"file": name, "step": step, "sha256": info.sha256, "bytes": info.bytes, "metrics": metrics})
        entries.sort(key=lambda e: e["step"])
        keep = self._retained(entries, latest=name)
        best = self._best(entries, 1)
        self._manifest = {"checkpoints": [e for e in entries if e["file"] in keep]}
        _write_atomic(self.dir / MANIFEST, json.dumps(self._manifest, indent=1).encode())
        pointer = {"file": name, "step": step, "sha256": info.sha256, "bytes": info.bytes}
        _write_atomic(self.dir / LATEST, json.dumps(pointer).encode())
        for e in entries:
            if e["file"] not in keep:
                (self.dir / e["file"]).unlink(missing_ok=True)
        if self.run is not None:
            tags = ["latest"] + (["best"] if name in best else [])
            self.run.log_checkpoint(
                str(final.resolve()), step=step, metrics=metrics, bytes=info.bytes, sha256=info.sha256, tags=tags
            )
        return info

    def _score(self, entry: dict) -> float | None:
        value = entry["metrics"].get(self.metric)
        if value is None or not math.isfinite(value):
            return None
        return value if self.mode == "min" else -value

    def _best(self, entries: list[dict], n: int) -> list[str]:
        scored = [(self._score(e), -e["step"], e["file"]) for e in entries]
        return [f for s, _, f in sorted(x for x in scored if x[0] is not None)][:n]

    def _retained(self, entries: list[dict], latest: str) -> set[str]:
        newest = [e["file"] for e in entries[-self.keep_last :]]
        return {latest, *newest, *self._best(entries, self.keep_best)}

    # --------------------------------------------------------------- loading

    @property
    def checkpoints(self) -> list[CheckpointInfo]:
        """The kept checkpoints, oldest first."""
        return [self._info(e) for e in self._read_manifest()["checkpoints"]]

    def latest(self) -> CheckpointInfo | None:
        """The checkpoint named by the ``latest`` pointer, or None when there is none."""
        try:
            pointer = json.loads((self.dir / LATEST).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise RunlakeError(f"checkpoint pointer {self.dir / LATEST} is not JSON ({exc}); delete it to start fresh") from exc
        return self._info({"metrics": {}, **pointer})

    def best(self) -> CheckpointInfo | None:
        """The best kept checkpoint by ``metric`` (None when no checkpoint has it)."""
        entries = self._read_manifest()["checkpoints"]
        files = self._best(entries, 1)
        return next((self._info(e) for e in entries if files and e["file"] == files[0]), None)

    def load_latest(self, map_location: Any = None, *, weights_only: bool = True, verify: bool = True) -> Any:
        """Load the checkpoint named by ``latest`` (None when there is none yet).

        Args:
            map_location: passed to ``torch.load`` (e.g. ``"cpu"``).
            weights_only: keep True unless you wrote the file yourself: it refuses to
                unpickle arbitrary objects.
            verify: check the file's sha256 against the pointer before loading.

        Raises:
            RunlakeError: the file is missing or its sha256 does not match.
        """
        return self._load(self.latest(), map_location, weights_only, verify)

    def load_best(self, map_location: Any = None, *, weights_only: bool = True, verify: bool = True) -> Any:
        """Load the best kept checkpoint by ``metric`` (None when there is none)."""
        return self._load(self.best(), map_location, weights_only, verify)

    def _load(self, info: CheckpointInfo | None, map_location, weights_only: bool, verify: bool) -> Any:
        import torch

        if info is None:
            return None
        if not info.path.exists():
            raise RunlakeError(f"checkpoint {info.path} named by {self.dir} is missing; was the directory edited by hand?")
        if verify:
            digest = file_sha256(info.path)
            if digest != info.sha256:
                raise RunlakeError(
                    f"checkpoint {info.path} has sha256 {digest}, expected {info.sha256}: the file changed "
                    f"after it was written; restore it or load another with weights_only"
                )
        return torch.load(info.path, map_location=map_location, weights_only=weights_only)

    # -------------------------------------------------------------- internals

    def _info(self, e: dict) -> CheckpointInfo:
        return CheckpointInfo(e["file"], e["step"], e["sha256"], e.get("bytes", 0), e.get("metrics", {}), self.dir / e["file"])

    def _read_manifest(self) -> dict:
        try:
            manifest = json.loads((self.dir / MANIFEST).read_bytes())
        except FileNotFoundError:
            return {"checkpoints": []}
        except ValueError as exc:
            raise RunlakeError(f"checkpoint manifest {self.dir / MANIFEST} is not JSON ({exc}); delete it to rebuild") from exc
        manifest["checkpoints"] = [e for e in manifest.get("checkpoints", []) if (self.dir / e["file"]).exists()]
        return manifest

    def _adopt_orphans(self) -> None:
        """Add complete files a killed save renamed but never recorded, so retention sees them."""
        known = {e["file"] for e in self._manifest["checkpoints"]}
        for path in sorted(self.dir.iterdir()):
            m = _FILE_RE.match(path.name)
            if m and path.name not in known:
                self._manifest["checkpoints"].append(
                    {"file": path.name, "step": int(m.group(1)), "sha256": file_sha256(path),
                     "bytes": path.stat().st_size, "metrics": {}}
                )
        self._manifest["checkpoints"].sort(key=lambda e: e["step"])

    def _remove_stale_temps(self) -> None:
        for path in self.dir.iterdir():
            m = _TMP_RE.match(path.name)
            if m and not _pid_alive(int(m.group(1))):
                path.unlink(missing_ok=True)
