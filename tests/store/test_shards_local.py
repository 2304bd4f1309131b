"""Sharded ingest into one local lake: two shard processes at once load exactly what one
unsharded DuckDB-file ingest loads, from segments real emitter processes wrote; a shard
SIGKILLed at the lake's kill points or at random moments loses and doubles nothing; two
processes of one shard never both load; bad ``--shard`` values and a shard count that
disagrees with the lake's are one-line errors (exit 2)."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from runlake.ingest.discover import discover
from runlake.ingest.shard import Shard, parse_shard, shard_of
from runlake.schemas.errors import ConfigError

from . import _lake_util as u
from . import _shard_util as s


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """Segments from real emitter processes (4 runs, one with 2 ranks), and what an
    unsharded DuckDB-file ingest of them holds."""
    return u.reference(tmp_path_factory, s.write_with_emitters)


@pytest.fixture
def root(template, tmp_path) -> Path:
    shutil.copytree(template[0], tmp_path / "root")
    return tmp_path / "root"


def _clean_passes(root: Path) -> None:
    from runlake.ingest import ingest

    for shard in ("1/2", "2/2"):
        ingest(root, shard=shard)


def _cli(capsys, *args: str) -> tuple[int, str]:
    """``runlake ingest ARGS`` as the console script runs it: exit code and stderr."""
    from runlake.cli import main

    code = main(["ingest", "-q", *args])
    return code, capsys.readouterr().err


def _no_doubles(root: Path, ref: dict) -> None:
    if not (root / "runlake-lake" / "_runlake" / "lake.json").exists():
        return  # killed before the lake was made
    lake = u.lake_rows(root)
    for table in ("metrics", "logs", "alerts", "ingest_frames"):
        assert not (lake[table] - ref[table]), f"{table}: rows not in the reference"


# -- the shard rule -----------------------------------------------------------------------
@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1/0", "1", "-1/2", "1/2/3", ""])
def test_bad_shard_values_are_refused(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_shard_values_parse():
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(" 1 / 1 ").app == "shard-1-of-1"


def test_bad_shard_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    for text in ("0/2", "3/2", "a/b", "1/0"):
        code, err = _cli(capsys, "--root", str(tmp_path), "--shard", text)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--shard '{text}'" in err
    assert not list(tmp_path.iterdir())  # nothing made


def test_each_run_has_one_shard_whatever_the_process():
    """Stable across processes (no hash seed) and every shard count: one owner per run."""
    code = ("import sys; from runlake.ingest.shard import shard_of; "
            "print([shard_of(f'run-{i}', n) for n in (1, 2, 3, 7) for i in range(50)])")
    import subprocess

    outs = {subprocess.run([s.PYTHON, "-c", code], env=s.env(PYTHONHASHSEED=str(seed)),
                           capture_output=True, text=True).stdout for seed in (1, 2)}
    assert outs == {str([shard_of(f"run-{i}", n) for n in (1, 2, 3, 7) for i in range(50)])
                    + "\n"}
    for n in (1, 2, 3, 7):
        owners = [[i for i in range(1, n + 1) if Shard(i, n).owns(f"run-{r}")]
                  for r in range(50)]
        assert all(len(o) == 1 for o in owners)
        assert len({o[0] for o in owners}) == n  # 50 runs reach every shard


def test_discovery_never_lists_other_shards_runs(tmp_path):
    """A shard does not even list another shard's run folders: a linked writer folder in a
    run of shard 2 is refused by unsharded discovery, unseen by shard 1's, which finds
    exactly its own runs' segments."""
    u.write_segments(tmp_path, runs=6, garbage=False)
    runs = [f"run-{i:02d}" for i in range(6)]
    theirs = next(r for r in runs if shard_of(r, 2) == 2)
    (tmp_path / "proj" / theirs / "linked").symlink_to(tmp_path / "proj" / runs[0])
    _segs, refused = discover(tmp_path)
    assert [r.run_id for r in refused] == [theirs]
    segs, refused = discover(tmp_path, Shard(1, 2).owns)
    assert not refused
    assert {x.run_id for x in segs} == {r for r in runs if shard_of(r, 2) == 1}
    segs2, refused2 = discover(tmp_path, Shard(2, 2).owns)
    assert [r.run_id for r in refused2] == [theirs]
    assert len(segs) + len(segs2) == len(_segs)


# -- two shards at once -------------------------------------------------------------------
@pytest.mark.slow
def test_two_shards_at_once_equal_one_unsharded_ingest(root, template):
    """Two `runlake ingest --shard I/2` processes started together (both creating the lake)
    load, between them, every row once: the same multisets, state tables included, as one
    unsharded DuckDB-file ingest; each shard committed only its own runs."""
    procs = [s.shard_pass(root, shard) for shard in ("1/2", "2/2")]
    for p in procs:
        _out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
    assert u.lake_rows(root) == template[1]
    import duckdb

    lake = root / "runlake-lake"
    con = duckdb.connect()
    owners = con.execute(
        f"SELECT run_id, list(DISTINCT _app) FROM read_parquet('{lake}/runs/*.parquet') "
        f"GROUP BY run_id").fetchall()
    assert {r: apps for r, apps in owners} == {
        r: [f"shard-{shard_of(r, 2)}-of-2"] for r in s.RUNS}
    assert json.loads((lake / "_runlake" / "shards.json").read_text())["shards"] == 2
    _clean_passes(root)  # nothing new: nothing added
    assert u.lake_rows(root) == template[1]


# -- kills ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("point", ["before:_commits@3", "after:ingest_ledger@4",
                                   "recover:metrics", "compact:runs"])
def test_shard_killed_at_a_kill_point_while_the_other_runs(root, template, point):
    """Shard 1 SIGKILLed at one of the lake's kill points while shard 2 ingests; then both
    run again: every row once. ``recover:`` is reached by a second killed pass."""
    first = "after:metrics@3" if point.startswith("recover:") else point
    due = 2 if point.startswith("compact:") else None
    victim = s.shard_pass(root, "1/2", kill_at=first, due_files=due)
    other = s.shard_pass(root, "2/2", due_files=due)  # compacting its own files meanwhile
    err = victim.communicate(timeout=180)[1]
    assert victim.returncode == -signal.SIGKILL, err[-2000:]
    if point.startswith("recover:"):
        again = s.shard_pass(root, "1/2", kill_at=point)
        err = again.communicate(timeout=180)[1]
        assert again.returncode == -signal.SIGKILL, err[-2000:]
    err = other.communicate(timeout=180)[1]
    assert other.returncode == 0, err[-2000:]
    _no_doubles(root, template[1])
    _clean_passes(root)
    assert u.lake_rows(root) == template[1]


@pytest.mark.slow
def test_shards_sigkilled_at_random_moments(root, template):
    """Both shards run; one of them (chosen at random) is SIGKILLed at a random moment and
    restarted, several times; then clean passes: nothing lost, nothing doubled."""
    rng = random.Random(11)
    procs = {shard: s.shard_pass(root, shard) for shard in ("1/2", "2/2")}
    for _ in range(4):
        time.sleep(rng.uniform(1.0, 4.0))
        shard = rng.choice(sorted(procs))
        procs[shard].kill()
        procs[shard].communicate(timeout=60)
        _no_doubles(root, template[1])
        procs[shard] = s.shard_pass(root, shard)
    for p in procs.values():
        err = p.communicate(timeout=180)[1]
        assert p.returncode == 0, err[-2000:]
    _clean_passes(root)
    assert u.lake_rows(root) == template[1]


# -- one shard, two processes ----------------------------------------------------------------
def test_second_process_of_a_shard_waits_then_names_the_holder(root, template, capsys):
    """While a process holds shard 1/2, another `--shard 1/2` waits --wait seconds, exits 2
    with one line naming the holder's host and pid, and loads nothing; once the holder is
    SIGKILLed (the lease dies with it) the shard runs."""
    import socket

    holder = s.hold_shard(root / "runlake-lake", "shard-1-of-2")
    try:
        started = time.monotonic()
        code, err = _cli(capsys, "--root", str(root), "--shard", "1/2", "--wait", "0.3")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and err.count("\n") == 1, err
    assert f"pid {holder.pid}" in err and socket.gethostname() in err
    assert "shard-1-of-2" in err and waited >= 0.3
    loaded = u.lake_rows(root)  # the lake was made (before the lease), nothing loaded
    assert not loaded["metrics"] and not loaded["ingest_ledger"]
    _clean_passes(root)
    assert u.lake_rows(root) == template[1]


@pytest.mark.slow
def test_two_processes_of_one_shard_never_double(root, template):
    """Two processes of each shard started at once: one loads, the other waits for it and
    then finds nothing new; every row once."""
    procs = [s.shard_pass(root, shard, wait_s=120) for shard in ("1/2", "1/2", "2/2", "2/2")]
    for p in procs:
        _out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    assert u.lake_rows(root) == template[1]


# -- the shard count -------------------------------------------------------------------------
def test_shard_count_mismatch_is_one_line_exit_2(tmp_path, capsys):
    u.write_segments(tmp_path, runs=3, steps=50, garbage=False)
    assert _cli(capsys, "--root", str(tmp_path), "--shard", "2/2")[0] == 0
    lake = tmp_path / "runlake-lake"
    before = u.lake_rows(tmp_path)
    for args, said in ((("--shard", "1/3"), "not 3"), ((), "not unsharded ingest"),
                       (("--lake",), "not unsharded ingest")):
        code, err = _cli(capsys, "--root", str(tmp_path), *args)
        assert code == 2 and err.count("\n") == 1, err
        assert str(lake) in err and "2 shards" in err and said in err
    assert u.lake_rows(tmp_path) == before  # nothing loaded by the refused ones


@pytest.mark.slow
def test_unsharded_lake_goes_sharded_without_doubles(root, template):
    """A lake ingested unsharded (app runlake-ingest, killed after 5 chunks) and then by
    two shards continuing the same runs' segments: the shards' state rows (ledger offsets
    included) are the latest, because their chunks are numbered above the unsharded app's,
    so a further pass reads nothing twice."""
    killed = u.ingest_subprocess(root, kill_at="after:_commits@5", chunk_points=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _clean_passes(root)
    assert u.lake_rows(root) == template[1]
    _clean_passes(root)
    assert u.lake_rows(root) == template[1]


# -- per-shard compaction and watch ------------------------------------------------------------
def _files_of(lake: Path, table: str, app: str) -> set[str]:
    import pyarrow as pa

    from runlake.store._lake_layout import open_table

    adds = pa.table(open_table(lake / table).get_add_actions(flatten=True)).to_pylist()
    return {a["path"] for a in adds if a["min._app"] == a["max._app"] == app}


def test_a_shard_compacts_only_its_own_files(root, template, monkeypatch):
    """Shard 1's compaction (due after 2 small files here) rewrites its own files, state
    tables included, and leaves every file of shard 2 as it was."""
    import runlake.store._lake_compact as compact
    from runlake.ingest.loader import run_pass
    from runlake.ingest.shard import sharded_backend

    def one(shard: Shard) -> None:
        with sharded_backend(root, None, shard) as backend:
            run_pass(root, backend, chunk_points=100, owns=shard.owns)

    monkeypatch.setattr(compact, "DUE_FILES", 10**6)  # shard 2 keeps its small files
    one(Shard(2, 2))
    lake = root / "runlake-lake"
    theirs = {t: _files_of(lake, t, "shard-2-of-2") for t in ("metrics", "writers", "ingest_ledger")}
    assert all(len(f) > 2 for f in theirs.values()), {t: len(f) for t, f in theirs.items()}
    monkeypatch.setattr(compact, "DUE_FILES", 2)
    one(Shard(1, 2))
    for table, files in theirs.items():
        assert _files_of(lake, table, "shard-2-of-2") == files, table
        assert len(_files_of(lake, table, "shard-1-of-2")) <= 2, table  # compacted
    assert u.lake_rows(root) == template[1]


def test_watch_of_a_shard_loads_its_runs(root, template):
    """`ingest --watch --shard 1/2` (the function): passes until stopped, only its runs."""
    import threading

    from runlake.ingest import watch

    stop, seen = threading.Event(), []

    def on_pass(report):
        seen.append(set(report.runs))
        if len(seen) >= 2:
            stop.set()

    assert watch(root, interval=0.05, stop=stop, on_pass=on_pass, shard="1/2") >= 2
    ours = {r for r in s.RUNS if shard_of(r, 2) == 1}
    assert seen[0] == ours
    got = u.lake_rows(root)["runs"]
    assert {row[0] for row in got} == ours
