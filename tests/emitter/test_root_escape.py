"""The emitter never writes outside the storage root: linked project/run/writer folders are
refused, a link planted at a segment's name is never followed, and every name that becomes
a folder passes one rule (schemas.segments.check_name)."""

from __future__ import annotations

import pytest

import runlake
from runlake.emitter.sink import FileSink
from runlake.schemas.codec import ENCODER
from runlake.schemas.events import Log
from runlake.schemas.segments import check_name


def _tree(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("level", ["project", "run"])
def test_init_refuses_a_linked_folder_and_writes_nothing_outside(root, tmp_path, quiet, level):
    """init() with root/<project> (or its run folder) linked elsewhere fails clearly."""
    outside = tmp_path / "outside"
    outside.mkdir()
    if level == "project":
        root.mkdir()
        (root / "proj").symlink_to(outside, target_is_directory=True)
    else:
        (root / "proj").mkdir(parents=True)
        (root / "proj" / "run-1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(runlake.RootError, match="symbolic link") as info:
        runlake.init("proj", root=root, run_id="run-1", **quiet)
    assert "refusing to write through" in str(info.value) and "\n" not in str(info.value)
    assert _tree(outside) == []
    assert runlake.current_run() is None


def _sink(root, **kw) -> FileSink:
    return FileSink(root / "proj" / "run-1" / "r0000-a000-x", root=root, fsync="never", **kw)


def _write(sink: FileSink, text: str) -> None:
    ev = Log(1, "run-1", "r0000-a000-x", 0, 1, 0, level="INFO", message=text)
    sink.write([ev], ENCODER.encode_lines([ev]))


def test_link_planted_at_the_next_segment_name_is_not_followed(root, tmp_path):
    """A link (or file) at the next segment's name is skipped; its target stays untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    sink = _sink(root, rotate_bytes=1)  # every write seals its segment
    _write(sink, "first")
    wdir = sink.dir
    (wdir / "000001.jsonl.zst.open").symlink_to(victim)
    (wdir / "000002.jsonl.zst").symlink_to(victim)
    _write(sink, "second")
    sink.close()
    assert victim.read_bytes() == b"precious"
    assert [p.name for p in sink.sealed] == ["000000.jsonl.zst", "000003.jsonl.zst"]
    assert not (wdir / "000003.jsonl.zst").is_symlink()


def test_run_folder_swapped_for_a_link_mid_run_is_a_counted_failure(root, tmp_path):
    """A folder replaced by a link while the run writes: writes fail (the writer counts the
    drop), nothing lands outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    sink = _sink(root)
    _write(sink, "before")
    run_dir = root / "proj" / "run-1"
    run_dir.rename(root / "proj" / "moved")
    run_dir.symlink_to(outside, target_is_directory=True)
    for _ in range(2):  # the vanished segment, then the refused new one
        with pytest.raises(OSError):
            _write(sink, "after")
    with pytest.raises(OSError, match="symbolic link"):
        _write(sink, "after")
    assert _tree(outside) == []


def test_writer_folder_link_refused_by_a_fresh_sink(root, tmp_path):
    """A FileSink given the root refuses a writer folder that is a link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "proj" / "run-1").mkdir(parents=True)
    (root / "proj" / "run-1" / "r0000-a000-x").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError, match="refusing to write through"):
        _sink(root).open()
    assert _tree(outside) == []


@pytest.mark.parametrize("name", [
    "abc\n", "abc\r", "a\tb", "a\x00b", "a\x7f", "..", "a/b", "a\\b", ".hidden", "-dash",
    "", "x" * 129, "a..b", "sp ace", "é", "000001.jsonl.zst", "x.open", "runlake.duckdb",
    "runlake.duckdb.wal", "ABC.JSONL.ZST",
])
def test_folder_names_are_checked_in_one_place(root, quiet, name):
    """Every bad folder name is refused by check_name and by init(project=/run_id=)."""
    with pytest.raises(ValueError, match="under the storage root"):
        check_name(name, "project")
    with pytest.raises(runlake.RootError, match="invalid project"):
        runlake.init(name, root=root, **quiet)
    if name:  # run_id="" means "none given": a new id is made
        with pytest.raises(runlake.RootError, match="invalid run_id"):
            runlake.init("proj", root=root, run_id=name, **quiet)
    assert not (root / "proj").exists()


def test_run_id_from_the_environment_is_checked_too(root, quiet, monkeypatch):
    """$RUNLAKE_RUN_ID goes through the same rule (a trailing newline from a shell file)."""
    monkeypatch.setenv("RUNLAKE_RUN_ID", "job-42\n")
    with pytest.raises(runlake.RootError, match="invalid run_id 'job-42\\\\n'"):
        runlake.init("proj", root=root, **quiet)
