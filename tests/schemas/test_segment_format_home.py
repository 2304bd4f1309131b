"""The segment format has one home (schemas/segments.py): every writer frames with its one
compressor, every reader decompresses through its one guarded reader."""

from __future__ import annotations

import os
import re
import tracemalloc
from pathlib import Path

import pytest

import runlake
from runlake.emitter.resume import read_events, resume_point
from runlake.ingest.decode import FrameDecoder
from runlake.schemas.codec import ENCODER, decode_lines
from runlake.schemas.events import Metrics
from runlake.schemas.segments import (
    FrameError,
    frame_compressor,
    iter_frame_spans,
    parse_writer_id,
    segment_name,
    segment_seq,
)

REPO = Path(__file__).resolve().parents[2]


def _frames(path: Path) -> list[bytes]:
    buf = path.read_bytes()
    spans = list(iter_frame_spans(buf, sealed=True))
    assert spans and all(s.status == "frame" for s in spans)
    return [buf[s.offset:s.end] for s in spans]


def _segments(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if segment_seq(p.name) is not None)


def _assert_emitter_framing(frames: list[bytes]) -> None:
    """Each frame is exactly what the one compressor makes of its content."""
    reader = FrameDecoder()
    for frame in frames:
        content = reader.decompress(frame)
        assert frame_compressor().compress(content) == frame


def test_emitter_frames_come_from_the_one_compressor(tmp_path):
    """A real run's segment frames are byte for byte frame_compressor()'s output."""
    run = runlake.init("p", root=tmp_path, console=0, system_interval=0)
    for step in range(300):
        run.log({"loss": 1.0 / (step + 1), "lr": 0.1 * step}, step=step)
    run.finish()
    frames = [f for seg in _segments(run.dir) for f in _frames(seg)]
    assert frames
    _assert_emitter_framing(frames)


def test_tensorboard_import_writes_frames_and_writer_ids_as_the_emitter(tmp_path):
    """The TensorBoard import frames and encodes like the emitter (same compressor settings,
    metrics packed into blocks) and names its writers with the emitter's writer-id layout."""
    pytest.importorskip("tensorboard")
    from runlake.emitter.integrations.tensorboard import EventFileWriter
    from runlake.ingest.tensorboard import import_tensorboard

    w = EventFileWriter(tmp_path / "tb" / "exp")
    for step in range(400):
        w.scalars(step, {"train/loss": 1.0 / (step + 1), "train/acc": step / 400}, 1e9 + step)
    w.close()
    (result,) = import_tensorboard(tmp_path / "tb", root=tmp_path / "root", ingest=False)
    assert result.status == "imported"
    (seg,) = _segments(tmp_path / "root" / "tensorboard" / result.run_id)
    assert seg.name == segment_name(0, sealed=True)
    assert parse_writer_id(seg.parent.name) == (0, 0)
    frames = _frames(seg)
    _assert_emitter_framing(frames)
    events, problems = decode_lines(FrameDecoder().decompress(frames[0]), unpack=False)
    assert not problems
    assert [e.__struct_config__.tag for e in events][:2] == ["run_start", "metrics_block"]


def _absurd(frame: bytes, size: int) -> bytes:
    """``frame`` with its header rewritten to declare ``size`` bytes of content."""
    fhd = frame[4]
    single = (fhd >> 5) & 1
    start = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    return (frame[:4] + bytes([(3 << 6) | (fhd & 0x3F)]) + frame[5:start]
            + size.to_bytes(8, "little") + frame[start + fcs:])


def _metrics_frame(steps: range) -> bytes:
    events = [Metrics(1, "run", "r0000-a000-0123abcd", s, 10**18 + s, 0, s, {"loss": 1.0})
              for s in steps]
    return frame_compressor().compress(ENCODER.encode_lines(events))


def test_a_frame_declaring_an_absurd_size_is_refused_by_resume_as_by_ingest(tmp_path):
    """A header declaring 2**62 bytes is refused before any allocation: ingest's decoder
    raises FrameError, resume skips the frame and reads the rest."""
    wdir = tmp_path / "p" / "run" / "r0000-a000-0123abcd"
    wdir.mkdir(parents=True)
    bad = _absurd(_metrics_frame(range(100, 110)), 1 << 62)
    (wdir / segment_name(0, sealed=True)).write_bytes(
        _metrics_frame(range(5)) + bad + _metrics_frame(range(5, 10)))
    with pytest.raises(FrameError, match="declares"):
        FrameDecoder().decompress(bad)
    tracemalloc.start()
    try:
        steps = [e.step for e in read_events(wdir)]
        point = resume_point(wdir.parent, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert steps == list(range(10))
    assert point.last_step == 9 and point.attempt == 1
    assert peak < 16 << 20


_ZSTD_USE = re.compile(r"^\s*(import|from)\s+zstandard\b|\bzstandard\.\w|Zstd(De)?[Cc]ompressor\(")
_HOME = "schemas/segments.py"


def _sources():
    for folder, dirs, files in os.walk(REPO):  # links are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("tests", "build")
                         and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(folder, name)


def test_zstandard_is_used_only_in_the_segment_module():
    """Outside tests, only schemas/segments.py imports or calls zstandard: every other
    writer and reader of frames (emitter, resume, ingest, TensorBoard import, benches) goes
    through it."""
    offenders = []
    for path in _sources():
        rel = path.relative_to(REPO).as_posix()
        if rel == _HOME:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _ZSTD_USE.search(line.split("#", 1)[0]):
                offenders.append(f"{rel}:{no}: {line.strip()}")
    assert offenders == [], "zstandard used outside " + _HOME
