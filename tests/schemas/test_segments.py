"""Segment framing: frame boundaries found without decompressing; torn and damaged bytes."""

from __future__ import annotations

import os

import pytest
import zstandard

from runlake.schemas import (
    FRAME_MAGIC,
    check_name,
    frame_length,
    iter_frame_spans,
    segment_key,
    segment_name,
    segment_seq,
)


def _frames(*payloads: bytes, checksum: bool = True) -> list[bytes]:
    c = zstandard.ZstdCompressor(level=3, write_checksum=checksum)
    return [c.compress(p) for p in payloads]


PAYLOADS = [
    b"",  # empty frame
    b'{"a":1}\n' * 3,
    b"x" * 300_000,  # RLE blocks
    os.urandom(400_000),  # raw (incompressible) blocks, several of them
    b"".join(b'{"k":%d}\n' % i for i in range(50_000)),  # compressed multi-block
]


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("payload", PAYLOADS, ids=["empty", "small", "rle", "raw", "multiblock"])
def test_frame_length_is_exact(payload, checksum):
    """The walked length equals the frame's real length for every block type."""
    (frame,) = _frames(payload, checksum=checksum)
    assert frame_length(frame + b"tail", 0) == len(frame)
    assert zstandard.ZstdDecompressor().decompress(frame[: frame_length(frame, 0)]) == payload


def test_every_truncation_point_is_a_torn_tail():
    """Cutting a frame anywhere yields a torn tail, never a frame or an exception."""
    good, last = _frames(b"a" * 100 + b"\n", b"".join(b'{"k":%d}\n' % i for i in range(2000)))
    for cut in range(0, len(last)):
        spans = list(iter_frame_spans(good + last[:cut]))
        assert spans[0].status == "frame" and spans[0].end == len(good)
        if cut:
            assert [s.status for s in spans[1:]] == ["torn"]


def test_garbage_is_skipped_and_reading_resyncs_on_the_next_frame():
    """Garbage between frames is one span; the frames after it are still found."""
    a, b = _frames(b"one\n", b"two\n")
    buf = b"JUNKJUNK" + a + b"\x00\x01garbage" + b
    statuses = [(s.status, buf[s.offset : s.end] if s.status == "frame" else None) for s in iter_frame_spans(buf)]
    assert statuses == [("garbage", None), ("frame", a), ("garbage", None), ("frame", b)]


def test_sealed_segment_resyncs_past_a_damaged_length():
    """In a sealed segment a frame whose block size was corrupted does not hide later frames."""
    a, b, c = _frames(b"one\n" * 10, os.urandom(1000), b"three\n")
    damaged = bytearray(b)
    damaged[9] |= 0x1F  # inflate the first block's size field (its high byte)
    buf = a + bytes(damaged) + c
    spans = list(iter_frame_spans(buf, sealed=True))
    assert spans[0].status == "frame" and spans[-1].status == "frame"
    assert buf[spans[-1].offset : spans[-1].end] == c
    assert list(iter_frame_spans(buf, sealed=False))[-1].status == "torn"


def test_checksum_catches_a_flipped_bit():
    """A flipped payload bit keeps the frame's shape but fails decompression."""
    (frame,) = _frames(b"".join(b'{"k":%d}\n' % i for i in range(1000)))
    flipped = bytearray(frame)
    flipped[len(frame) // 2] ^= 0x10
    (span,) = iter_frame_spans(bytes(flipped))
    assert span.status == "frame"
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompress(bytes(flipped))


def test_skippable_frames_are_frames():
    """Skippable frames (metadata) are stepped over like any other frame."""
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    (frame,) = _frames(b"x\n")
    assert [s.status for s in iter_frame_spans(skippable + frame)] == ["frame", "frame"]
    assert FRAME_MAGIC == frame[:4]


def test_segment_names_and_keys(tmp_path):
    """Open and sealed names share one ledger key; sequence numbers parse back."""
    open_path = tmp_path / "p" / "r" / "w" / segment_name(7, sealed=False)
    sealed_path = tmp_path / "p" / "r" / "w" / segment_name(7, sealed=True)
    assert segment_key(open_path, tmp_path) == segment_key(sealed_path, tmp_path) == "p/r/w/000007.jsonl.zst"
    assert segment_seq(open_path.name) == segment_seq(sealed_path.name) == 7
    assert segment_seq("notes.txt") is None


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "/abs", ".hidden", "", "a" * 129, "x\x00y", "a..b", "sp ace", "é"])
def test_names_that_would_escape_the_root_are_refused(name):
    """Project, run and writer names can never leave the storage root."""
    with pytest.raises(ValueError, match="under the storage root"):
        check_name(name, "project")


@pytest.mark.parametrize("name", ["digits", "mlp-lr3e-4", "run_2026.11.22", "A", "x" * 128])
def test_ordinary_names_are_accepted(name):
    """Everyday names pass unchanged."""
    assert check_name(name, "project") == name
