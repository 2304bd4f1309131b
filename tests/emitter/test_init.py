"""init(): option validation, ids from the environment, ranks, the module-level API."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import runlake
from runlake.emitter.environment import new_run_id


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"project": "../escape"}, runlake.RootError, "invalid project"),
    ({"project": "a/b"}, runlake.RootError, "invalid project"),
    ({"run_id": ".."}, runlake.RootError, "invalid run_id"),
    ({"run_id": "x" * 200}, runlake.RootError, "invalid run_id"),
    ({"fsync": "always"}, runlake.ConfigError, "fsync must be one of"),
    ({"flush_interval": 0}, runlake.ConfigError, "flush_interval must be > 0"),
    ({"rotate_bytes": -1}, runlake.ConfigError, "rotate_bytes"),
    ({"total_steps": "many"}, runlake.ConfigError, "total_steps"),
    ({"name": "two\nlines"}, runlake.ConfigError, "name must be"),
    ({"config": {"f": object()}}, runlake.ConfigError, "not JSON-able"),
    ({"config": [1, 2]}, runlake.ConfigError, "config must be a mapping"),
])
def test_bad_options_fail_fast_with_clear_errors(root, kwargs, error, fragment):
    """Each bad option raises the documented error class with a helpful message."""
    with pytest.raises(error, match=fragment):
        runlake.init(root=root, console=False, **kwargs)
    assert runlake.current_run() is None


def test_non_strict_config_stores_str_of_odd_values(rl, root, quiet):
    """strict=False: a non-JSON config value is stored as its str(); NaN as a string."""

    class Opaque:
        def __str__(self):
            return "opaque!"

    config = {"o": Opaque(), "s": {1, 2}, "n": float("nan"), "p": root / "x"}
    with runlake.init("p", root=root, strict=False, config=config, **quiet) as run:
        pass
    cfg = rl.read_run(run.dir)[0].config
    assert cfg == {"o": "opaque!", "s": [1, 2], "n": "nan", "p": str(root / "x")}


def test_run_id_from_env_and_rank_from_torchrun(rl, root, quiet, monkeypatch):
    """$TORCHELASTIC_RUN_ID names the run; RANK/WORLD_SIZE give rank and writer id."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-42")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with runlake.init("p", root=root, **quiet) as run:
        pass
    assert run.id == "job-42" and run.name == "job-42"
    assert (run.rank, run.world_size) == (1, 2)
    assert re.fullmatch(r"r0001-a000-[0-9a-f]{8}", run.writer)
    start = rl.read_run(run.dir)[0]
    assert (start.rank, start.world_size, start.local_rank) == (1, 2, 1)


def test_runlake_run_id_wins_and_none_is_ignored(root, quiet, monkeypatch):
    """$RUNLAKE_RUN_ID beats torchrun's; TORCHELASTIC_RUN_ID=none is ignored."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with runlake.init("p", root=root, **quiet) as run:
        assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run.id)
    monkeypatch.setenv("RUNLAKE_RUN_ID", "mine")
    with runlake.init("p", root=root, **quiet) as run:
        assert run.id == "mine"


def test_new_run_ids_sort_by_time():
    """Generated ids sort in start order."""
    assert new_run_id(1_000_000) < new_run_id(2_000_000)


def test_root_from_env(tmp_path, monkeypatch, quiet):
    """Without root=, $RUNLAKE_DIR is the storage root."""
    monkeypatch.setenv("RUNLAKE_DIR", str(tmp_path / "envroot"))
    with runlake.init("p", **quiet) as run:
        pass
    assert run.root == (tmp_path / "envroot").absolute()
    assert run.dir.is_dir()


def test_module_level_api_acts_on_the_current_run(rl, root, quiet):
    """runlake.log/log_data/alert/finish use current_run(); without one, log raises."""
    with pytest.raises(runlake.RunStateError, match="runlake.init"):
        runlake.log({"x": 1.0})
    run = runlake.init("p", root=root, **quiet)
    assert runlake.current_run() is run
    runlake.log({"x": 1.0})
    runlake.log_data(["a"])
    runlake.alert("hi")
    runlake.finish()
    assert runlake.current_run() is None
    assert rl.kinds(rl.read_run(run.dir)) == ["run_start", "metrics", "data", "alert", "run_end"]


def test_import_stays_light(tmp_path):
    """import runlake + a whole run never imports duckdb, polars, pyarrow, streamlit, torch."""
    code = f"""
import sys, runlake
run = runlake.init("p", root={str(tmp_path)!r}, console=2, system_interval=0.01)
run.log({{"loss": 1.0}}); run.log_data(["a"]); run.finish()
heavy = [m for m in ("duckdb", "polars", "pyarrow", "streamlit", "torch", "numpy", "pandas")
         if m in sys.modules]
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_connect_needs_a_store(tmp_path):
    """runlake.connect() without an ingested store explains what to do."""
    with pytest.raises(runlake.StoreError, match="runlake ingest"):
        runlake.connect(root=tmp_path)
