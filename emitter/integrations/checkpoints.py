"""Crash-safe checkpoints with retention, a ``latest`` pointer and ``checkpoint`` events.

Why it exists: a training job killed at any instant must leave a directory from which it
can resume, and nothing in that directory may turn the manager against its user.
:class:`CheckpointManager` guarantees that:

* a checkpoint file under its final name is always complete: it is written to a temporary
  file in the same directory (``.ckpt-<step>.pt.tmp-<pid>-<random>``), hashed while it is
  written, fsynced, renamed with ``os.replace`` (atomic on POSIX) and the directory is
  fsynced, so the rename itself survives a power cut;
* the ``latest`` pointer (a small JSON file naming the file, its step and its sha256) is
  replaced the same way, only after its checkpoint is durable, so it always names a
  complete checkpoint whose sha256 matches;
* ``manifest.json`` (same atomic replace) remembers every kept checkpoint's step, metrics
  and sha256, so retention and "best" survive restarts, and the run that owns the folder
  (``run_id``, ``run_name``, ``project``);
* retention keeps the ``keep_last`` newest and the ``keep_best`` best by ``metric``; it
  never deletes the checkpoint named by ``latest`` nor a kept-best one, deletes only after
  the new pointer is durable, and records each deletion as a ``checkpoint`` event tagged
  ``deleted``;
* names read from ``manifest.json`` and ``latest`` are trusted for nothing: only a bare
  ``ckpt-<step>.pt`` of a regular file directly in the folder is accepted (no ``..``, no
  absolute path, no symbolic link, FIFO or device); anything else is refused with a
  :class:`RunlakeError` before a file is loaded or deleted (see ``_ckpt_files``);
* one folder, one run: a manager given a run refuses a folder whose manifest names another
  run (it would silently resume someone else's weights) unless ``take_over=True``; saves
  re-check the owner under an ``flock`` on the folder, so two live runs sharing a folder
  never overwrite each other's files: the second one gets an error instead;
* loading uses ``torch.load(weights_only=True)`` by default, which refuses to unpickle
  arbitrary objects: nothing in a checkpoint directory can run code on load. Pass
  ``weights_only=False`` only for files you wrote yourself.

Temporary files left by a killed process are removed when a manager opens the directory
(only those whose writing process is gone). In distributed training only rank 0 writes:
on other ranks :meth:`CheckpointManager.save` is a no-op returning None. A manager with
``run=None`` only manages files: it records no owner and checks none (use it to load
another run's checkpoint on purpose, e.g. to fine-tune from it).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlake.emitter.integrations._ckpt_files import (
    CKPT_RE, TMP_RE, HashingWriter, file_sha256, folder_lock, fsync_dir, is_regular, member,
    open_member, pid_alive, read_json, sha256_of, temp_name, write_atomic,
)
from runlake.schemas.errors import ConfigError, RunlakeError, RunlakeWarning

__all__ = ["CheckpointInfo", "CheckpointManager"]

LATEST = "latest"
MANIFEST = "manifest.json"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_OWNER = ("run_id", "run_name", "project")


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint as recorded in the manifest and in its ``checkpoint`` event."""

    file: str
    step: int
    sha256: str
    bytes: int
    metrics: dict[str, float] = field(default_factory=dict)
    path: Path | None = None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


class CheckpointManager:
    """Save, retain and reload checkpoints atomically, recording ``checkpoint`` events.

    Args:
        run: the runlake Run that owns the folder and receives ``checkpoint`` events (or
            None to only manage files). Its ``rank`` decides who writes: ranks other than
            0 do not save.
        dir: the checkpoint directory (created if missing). Give each run its own.
        keep_last: how many of the newest checkpoints to keep (>= 1).
        keep_best: how many of the best checkpoints by ``metric`` to keep (>= 0).
        metric: the metrics key that ranks checkpoints (from ``save(metrics=...)``).
        mode: ``"min"`` or ``"max"``: whether lower or higher ``metric`` is better.
        take_over: continue a folder whose manifest names another run: its checkpoints
            become this run's (``load_latest`` resumes from them, retention applies) and
            the manifest names this run from now on. Without it such a folder is refused.

    Raises:
        ConfigError: invalid retention arguments.
        RunlakeError: the folder belongs to another run, or its manifest / pointer names
            something that is not a checkpoint file of the folder.

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
        take_over: bool = False,
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
        self.take_over = take_over
        self.rank = int(getattr(run, "rank", 0) or 0)
        self._run_id = getattr(run, "id", None)  # None: files only, no owner recorded or checked
        if self.rank != 0:
            self._check_owner(self._read_manifest())
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        with folder_lock(self.dir):
            manifest = self._read_manifest(adopt=True)
            self._check_owner(manifest)
            if self._run_id is not None and manifest.get("run_id") != self._run_id:
                self._write_manifest(manifest)  # claim the folder for this run

    # ---------------------------------------------------------------- owner

    def _owner_text(self, manifest: dict) -> str:
        name = manifest.get("run_name")
        return f"run {manifest['run_id']}" + (f" ({name!r})" if name else "")

    def _check_owner(self, manifest: dict) -> None:
        """Refuse (or, with take_over, warn about) a folder recorded for another run."""
        run = self.run
        owner = manifest.get("run_id")
        if self._run_id is None or owner == self._run_id:
            return
        if owner is None:
            if manifest["checkpoints"]:
                warnings.warn(
                    f"runlake: checkpoint folder {self.dir} holds checkpoints recorded for no run "
                    f"(saved by an older runlake or with run=None); run {run.id} now owns it and "
                    f"load_latest() resumes from them", RunlakeWarning, stacklevel=3)
            return
        if self.take_over:
            warnings.warn(f"runlake: run {run.id} takes over checkpoint folder {self.dir} from "
                          f"{self._owner_text(manifest)}", RunlakeWarning, stacklevel=3)
            return
        raise RunlakeError(
            f"checkpoint folder {self.dir} belongs to {self._owner_text(manifest)}, not to this run "
            f"{run.id} ({getattr(run, 'name', None)!r}): loading it would resume another run's weights and saving "
            f"would overwrite its files. Give this run its own folder, resume that run with "
            f"runlake.init(..., resume={manifest['run_id']!r}), or pass take_over=True to continue "
            f"from its checkpoints in this run")

    # ---------------------------------------------------------------- saving

    def save(self, obj: Any, step: int, metrics: dict[str, float] | None = None) -> CheckpointInfo | None:
        """Write one checkpoint atomically, move ``latest`` to it, apply retention.

        Args:
            obj: a state dict (any object ``torch.save`` accepts) or an object with
                ``state_dict()`` (a module or optimizer), whose state dict is saved.
            step: the training step (>= 0); names the file ``ckpt-<step:09d>.pt``.
            metrics: scalars recorded with it; ``metrics[self.metric]`` ranks "best".

        Returns:
            The saved checkpoint's info, or None on ranks other than 0.

        Raises:
            RunlakeError: another run took the folder over since this manager opened it
                (nothing is written), or the manifest was tampered with.
        """
        import torch

        if self.rank != 0:
            return None
        step = int(step)
        if step < 0:
            raise ConfigError(f"checkpoint step must be >= 0, got {step}")
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        if hasattr(obj, "state_dict") and callable(obj.state_dict):
            obj = obj.state_dict()
        name = f"ckpt-{step:09d}.pt"
        final = self.dir / name
        tmp = temp_name(final)
        try:
            with open(tmp, "wb") as f:
                writer = HashingWriter(f)
                torch.save(obj, writer)
                f.flush()
                os.fsync(f.fileno())
            with folder_lock(self.dir):
                deleted, is_best = self._commit(tmp, name, step, metrics, writer)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        info = CheckpointInfo(name, step, writer.sha.hexdigest(), writer.n, metrics, final)
        if self.run is not None:
            tags = ["latest"] + (["best"] if is_best else [])
            self.run.log_checkpoint(self._uri(name), step=step, metrics=metrics, bytes=info.bytes,
                                    sha256=info.sha256, tags=tags)
            for e in deleted:
                self.run.log_checkpoint(self._uri(e["file"]), step=e["step"], bytes=e["bytes"],
                                        sha256=e["sha256"], tags=["deleted"])
        return info

    def _commit(self, tmp: Path, name: str, step: int, metrics: dict,
                writer: HashingWriter) -> tuple[list[dict], bool]:
        """Under the folder lock: check the owner, rename, update manifest and pointer, retain.

        Returns the deleted entries and whether the new checkpoint is the best so far.
        """
        manifest = self._read_manifest(adopt=True)
        owner = manifest.get("run_id")
        if self._run_id is not None and owner not in (None, self._run_id):
            raise RunlakeError(
                f"checkpoint folder {self.dir} now belongs to {self._owner_text(manifest)}, which took "
                f"it over after this run ({self.run.id}) opened it; step {step} was not saved and "
                f"none of that run's files were touched")
        member(self.dir, name, "this save")  # refuse to rename over a link or directory
        os.replace(tmp, self.dir / name)
        fsync_dir(self.dir)
        sha = writer.sha.hexdigest()
        entries = [e for e in manifest["checkpoints"] if e["file"] != name]
        entries.append({"file": name, "step": step, "sha256": sha, "bytes": writer.n, "metrics": metrics})
        entries.sort(key=lambda e: e["step"])
        keep = self._retained(entries, latest=name)
        manifest["checkpoints"] = [e for e in entries if e["file"] in keep]
        self._write_manifest(manifest)
        pointer = {"file": name, "step": step, "sha256": sha, "bytes": writer.n}
        write_atomic(self.dir / LATEST, json.dumps(pointer).encode())
        deleted = [e for e in entries if e["file"] not in keep]
        for e in deleted:
            (self.dir / e["file"]).unlink(missing_ok=True)
        return deleted, name in self._best(entries, 1)

    def _write_manifest(self, manifest: dict) -> None:
        if self._run_id is not None:
            manifest.update(run_id=self._run_id, run_name=getattr(self.run, "name", None),
                            project=getattr(self.run, "project", None))
        out = {k: manifest[k] for k in _OWNER if manifest.get(k) is not None}
        out["checkpoints"] = manifest["checkpoints"]
        write_atomic(self.dir / MANIFEST, json.dumps(out, indent=1).encode())

    def _uri(self, name: str) -> str:
        return str(self.dir.resolve() / name)

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
        """The checkpoint named by the ``latest`` pointer, or None when there is none.

        Raises:
            RunlakeError: the pointer is not a pointer to a checkpoint file of this folder.
        """
        where = f"checkpoint pointer {self.dir / LATEST}"
        pointer = read_json(self.dir / LATEST, "pointer", "delete it to start fresh")
        if pointer is None:
            return None
        entry = self._entry(pointer, where, "delete it to start fresh")
        return self._info(entry)

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
            RunlakeError: the file is missing, is not a regular file of this folder, or its
                sha256 does not match.
        """
        return self._load(self.latest(), map_location, weights_only, verify)

    def load_best(self, map_location: Any = None, *, weights_only: bool = True, verify: bool = True) -> Any:
        """Load the best kept checkpoint by ``metric`` (None when there is none)."""
        return self._load(self.best(), map_location, weights_only, verify)

    def _load(self, info: CheckpointInfo | None, map_location, weights_only: bool, verify: bool) -> Any:
        import torch

        if info is None:
            return None
        try:
            with open_member(info.path) as f:
                if verify:
                    digest = sha256_of(f)
                    if digest != info.sha256:
                        raise RunlakeError(
                            f"checkpoint {info.path} has sha256 {digest}, expected {info.sha256}: the "
                            f"file changed after it was written; restore it or load another one")
                    f.seek(0)
                return torch.load(f, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise RunlakeError(f"checkpoint {info.path} named by {self.dir} is missing; was the "
                               f"directory edited by hand?") from None

    # -------------------------------------------------------------- internals

    def _info(self, e: dict) -> CheckpointInfo:
        return CheckpointInfo(e["file"], e["step"], e["sha256"], e["bytes"], e["metrics"], self.dir / e["file"])

    def _entry(self, e: Any, where: str, fix: str) -> dict:
        """A validated manifest entry or pointer (its file checked by :func:`member`)."""
        if not isinstance(e, dict):
            raise RunlakeError(f"{where} has {e!r:.120} where an object was expected; {fix}")
        member(self.dir, e.get("file"), where)
        step, sha, size, metrics = e.get("step"), e.get("sha256"), e.get("bytes", 0), e.get("metrics", {})
        if not (_is_int(step) and step >= 0 and isinstance(sha, str) and _SHA_RE.match(sha)
                and _is_int(size) and isinstance(metrics, dict)
                and all(isinstance(k, str) and _is_num(v) for k, v in metrics.items())):
            raise RunlakeError(f"{where} has a malformed entry {json.dumps(e)[:200]}; {fix}")
        metrics = {k: float("nan") if v is None else float(v) for k, v in metrics.items()}
        return {"file": e["file"], "step": step, "sha256": sha, "bytes": size, "metrics": metrics}

    def _read_manifest(self, adopt: bool = False) -> dict:
        """The validated manifest: owner fields and the entries whose file still exists.

        With ``adopt``, complete files a killed save renamed but never recorded are added, so
        retention sees them.
        """
        where = f"checkpoint manifest {self.dir / MANIFEST}"
        fix = "delete it to rebuild it from the checkpoint files"
        raw = read_json(self.dir / MANIFEST, "manifest", fix)
        raw = {"checkpoints": []} if raw is None else raw
        if not isinstance(raw, dict) or not isinstance(raw.get("checkpoints", []), list) or any(
                raw.get(k) is not None and not isinstance(raw[k], str) for k in _OWNER):
            raise RunlakeError(f"{where} is not a runlake manifest (an object with a 'checkpoints' "
                               f"list and string run_id/run_name/project); {fix}")
        entries = [self._entry(e, where, fix) for e in raw.get("checkpoints", [])]
        manifest = {k: raw.get(k) for k in _OWNER}
        manifest["checkpoints"] = [e for e in entries if is_regular(self.dir / e["file"])]
        if adopt:
            self._adopt_orphans(manifest["checkpoints"])
        return manifest

    def _adopt_orphans(self, entries: list[dict]) -> None:
        known = {e["file"] for e in entries}
        for path in sorted(self.dir.iterdir()):
            m = CKPT_RE.match(path.name)
            if not m or path.name in known:
                continue
            if not is_regular(path):
                warnings.warn(f"runlake: {path} is named like a checkpoint but is not a regular file; "
                              f"ignored", RunlakeWarning, stacklevel=4)
                continue
            entries.append({"file": path.name, "step": int(m.group(1)), "sha256": file_sha256(path),
                            "bytes": path.stat().st_size, "metrics": {}})
        entries.sort(key=lambda e: e["step"])

    def _remove_stale_temps(self) -> None:
        for path in self.dir.iterdir():
            m = TMP_RE.match(path.name)
            if m and not path.is_dir() and not pid_alive(int(m.group(1))):
                path.unlink(missing_ok=True)
