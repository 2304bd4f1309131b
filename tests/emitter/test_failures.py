"""After init(), storage failures never crash training: warned once, counted, retried."""

from __future__ import annotations

import shutil
import warnings

import runlake


def test_writer_dir_replaced_by_a_file_counts_drops_and_recovers(rl, root, quiet):
    """Writes fail while the writer dir is a regular file; training continues; later flushes
    succeed once it is a directory again, and run_end reports the drops."""
    run = runlake.init("p", root=root, flush_interval=60, **quiet)
    run.log({"x": 0.0})
    assert run.flush() is True
    wdir = run.dir / run.writer
    moved = run.dir / "moved-away"
    wdir.rename(moved)
    wdir.write_bytes(b"not a directory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(1, 11):
            run.log({"x": float(i)})
        assert run.flush() is False
        run.log({"x": 11.0})
        assert run.flush() is False
    assert run.dropped == {"io_error": 11}
    assert len([w for w in caught if "runlake" in str(w.message)]) == 1
    wdir.unlink()  # storage comes back: the writer starts a new segment in a new directory
    run.log({"x": 12.0})
    assert run.flush() is True
    run.finish()
    back = []
    for path in sorted(wdir.iterdir()):  # the directory was recreated with a new segment
        back += rl.read_file_events(path)[0]
    assert [p.name for p in sorted(wdir.iterdir())] == ["000001.jsonl.zst"]
    assert [e.values["x"] for e in rl.of_kind(back, "metrics")] == [12.0]
    assert rl.of_kind(back, "run_end")[0].dropped == {"io_error": 11}
    old = rl.read_file_events(next(moved.iterdir()))[0]
    assert [e.values["x"] for e in rl.of_kind(old, "metrics")] == [0.0]


def test_run_dir_removed_mid_run_is_recreated(rl, root, quiet):
    """rm -rf of the run dir: the unlinked segment is noticed and a fresh one is opened."""
    run = runlake.init("p", root=root, flush_interval=60, **quiet)
    run.log({"x": 0.0})
    run.flush()
    shutil.rmtree(run.dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.log({"x": 1.0})
        assert run.flush() is False  # the batch that found the segment gone is counted
        run.log({"x": 2.0})
        assert run.flush() is True
    run.finish()
    assert run.dropped == {"io_error": 1}
    assert [e.values["x"] for e in rl.of_kind(rl.read_run(run.dir), "metrics")] == [2.0]


def test_unwritable_root_is_refused_at_init(tmp_path):
    """A root that is a file cannot be used: RootError at init, before training starts."""
    bad = tmp_path / "file"
    bad.write_text("x")
    import pytest

    with pytest.raises(runlake.RootError, match="storage root"):
        runlake.init("p", root=bad / "sub", console=False)
    with pytest.raises(runlake.RootError, match="not a directory|storage root"):
        runlake.init("p", root=bad, console=False)
