"""Shared helpers for emitter tests: read a run back from disk with the schemas' framing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zstandard

from runlake.schemas.codec import decode_lines
from runlake.schemas.segments import OPEN_SUFFIX, iter_frame_spans, segment_seq

REPO = Path(__file__).resolve().parents[2]


def segment_files(run_dir: Path) -> list[Path]:
    """Every segment file under a run dir, by writer then seq."""
    out = []
    for wdir in sorted(p for p in Path(run_dir).iterdir() if p.is_dir()):
        segs = [(segment_seq(p.name), p) for p in wdir.iterdir()]
        out += [p for s, p in sorted((s, p) for s, p in segs if s is not None)]
    return out


def read_file_events(path: Path) -> tuple[list, list]:
    """(events, spans) of one segment: whole frames decoded, torn/garbage spans reported."""
    buf = path.read_bytes()
    dctx = zstandard.ZstdDecompressor()
    events, spans = [], []
    for span in iter_frame_spans(buf, sealed=not path.name.endswith(OPEN_SUFFIX)):
        spans.append(span)
        if span.status == "frame":
            evs, problems = decode_lines(dctx.decompress(buf[span.offset : span.end]))
            assert not problems, problems
            events += evs
    return events, spans


def read_run(run_dir: Path) -> list:
    """All events of a run directory, in file order."""
    events = []
    for path in segment_files(run_dir):
        events += read_file_events(path)[0]
    return events


def kinds(events) -> list[str]:
    return [e.__struct_config__.tag for e in events]


def of_kind(events, kind: str) -> list:
    return [e for e in events if e.__struct_config__.tag == kind]


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def quiet() -> dict:
    """init() options that keep tests quiet and deterministic."""
    return dict(console=False, system_interval=0, capture_logging=False)


def run_script(code: str, *, env: dict | None = None, timeout: float = 60):
    """Start a Python subprocess running ``code`` (dedented); returns the Popen."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


class _Helpers:
    """Helpers handed to tests through the ``rl`` fixture (importlib mode: no conftest import)."""

    segment_files = staticmethod(segment_files)
    read_file_events = staticmethod(read_file_events)
    read_run = staticmethod(read_run)
    kinds = staticmethod(kinds)
    of_kind = staticmethod(of_kind)
    run_script = staticmethod(run_script)


@pytest.fixture
def rl() -> _Helpers:
    return _Helpers()
