"""Helpers of the object-storage emitter tests: start a training child, count its points.

Points are counted by decoding segments with the project's own reader
(``runlake.schemas.segments`` + ``decode_lines``), from the bucket and from a spool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from runlake.schemas import decode_lines
from runlake.schemas.events import Metrics, RunEnd
from runlake.schemas.objects import ObjectStore
from runlake.schemas.segments import FrameReader, iter_frame_spans

CHILD = Path(__file__).with_name("_emitter_child.py")


def child_env(s3_env: dict[str, str], spool: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RUNLAKE_"))}
    env.update(s3_env)
    env.update({"RUNLAKE_SPOOL": str(spool), "RUNLAKE_UPLOAD_INTERVAL": "0.2",
                "RUNLAKE_UPLOAD_WAIT": "20", "PYTHONWARNINGS": "default"})
    env.update(extra)
    return env


def start(cfg: dict, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[dict, str]:
    """Wait for the child; its final JSON line and its stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def decode(data: bytes, *, sealed: bool) -> list:
    """Events of a segment's whole frames; a sealed one must hold nothing else."""
    reader, events = FrameReader(), []
    for span in iter_frame_spans(data, 0, sealed=sealed):
        if span.status != "frame":
            assert not sealed, f"{span.status} bytes in a sealed segment: {span.reason}"
            continue
        got, problems = decode_lines(reader.decompress(data[span.offset:span.end]))
        assert not problems, problems
        events += got
    return events


def bucket_events(url: str) -> dict[str, list]:
    """Events of every object under ``url``, by key relative to it."""
    store = ObjectStore(url)
    return {o.rel: decode(store.get(o.rel), sealed=True) for o in store.list()}


def spool_events(spool: Path) -> dict[str, list]:
    """Events of every segment file in a spool (open ones: whole frames only), by key."""
    out = {}
    for path in spool.rglob("*.jsonl.zst*"):
        key = path.relative_to(spool).as_posix().removesuffix(".open")
        out[key] = decode(path.read_bytes(), sealed=not path.name.endswith(".open"))
    return out


def points(events_by_key: dict[str, list]) -> Counter:
    """``(writer, step)`` -> how many times it was stored."""
    return Counter((ev.writer, ev.step) for evs in events_by_key.values() for ev in evs
                   if isinstance(ev, Metrics))


def run_ends(events_by_key: dict[str, list]) -> list[RunEnd]:
    return [ev for evs in events_by_key.values() for ev in evs if isinstance(ev, RunEnd)]
