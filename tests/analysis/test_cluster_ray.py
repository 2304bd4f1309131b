"""A cluster engine reads the lake: Ray Data's runs table and curve equal DuckDB's exactly,
on a lake made by `runlake ingest --lake` from real emitter runs (and on an s3:// lake on a
real moto S3 server), and a chunk an ingester was SIGKILLed in the middle of stays
invisible to Ray as it does to DuckDB."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

from runlake.analysis import cluster  # noqa: E402
from runlake.analysis._common import records  # noqa: E402
from runlake.analysis.curves import downsample  # noqa: E402
from runlake.store import connect  # noqa: E402
from runlake.store._lake_layout import KILL_ENV  # noqa: E402
from runlake.store.spec import TABLES  # noqa: E402

pytestmark = pytest.mark.slow

TRAIN = Path(__file__).resolve().parents[1] / "ingest" / "_train.py"
STEPS, KEYS = 300, 3
JSON_COLUMNS = [c.name for c in TABLES["runs"].columns if c.duck == "JSON"]


def _env(**extra: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNLAKE_")}
    return {**base, **extra}


def _train(root: Path, name: str, run_id: str | None = None, **env: str) -> subprocess.Popen:
    args = [sys.executable, str(TRAIN), str(root), name, str(STEPS), str(KEYS), "0"]
    return subprocess.Popen([*args, *([run_id] if run_id else [])], env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _emit(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]


def _ingest(root: Path | str, **env: str) -> subprocess.CompletedProcess:
    lake = [] if str(root).startswith("s3://") else ["--lake"]  # an s3 root's store is a lake
    return subprocess.run([sys.executable, "-m", "runlake.cli", "ingest", "--root", str(root),
                           *lake, "-q"], env=_env(**env), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs, 127.0.0.1) for the module, shut down after it."""
    with cluster.local_cluster(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Three runs by real emitter processes (one of two ranks), ingested into a lake."""
    root = tmp_path_factory.mktemp("cluster") / "root"
    _emit([_train(root, "alpha", "alpha"), _train(root, "beta"),
           *[_train(root, "gamma", "gamma", RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r))
             for r in range(2)]])
    proc = _ingest(root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


def _lake(root: Path | str):
    return f"{root}/runlake-lake" if isinstance(root, str) else root / "runlake-lake"


def _moto():
    """tests/s3/_server.py's MotoServer (a real moto S3 server on 127.0.0.1)."""
    path = Path(__file__).resolve().parents[1] / "s3" / "_server.py"
    spec = importlib.util.spec_from_file_location("_runlake_s3_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MotoServer


@pytest.fixture(scope="module")
def s3_root(tmp_path_factory):
    """Two real emitter runs on an s3:// root of a moto server, ingested into its lake;
    the server's AWS settings in this process's environment while the module runs."""
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    with _moto()() as server:
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        try:
            root = f"s3://{server.new_bucket()}/runs"
            spool = str(tmp_path_factory.mktemp("spool"))
            _emit([_train(root, f"s{i}", RUNLAKE_SPOOL=spool, **server.env) for i in range(2)])
            proc = _ingest(root, **server.env)
            assert proc.returncode == 0, proc.stderr[-2000:]
            yield root
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _duck_runs(lake: Path) -> list[dict]:
    con = connect(db=lake)
    try:
        return records(con, "SELECT * FROM runs ORDER BY run_id")
    finally:
        con.close()


def _duck_curve(lake: Path, run_ids, key: str, buckets: int) -> list[tuple]:
    con = connect(db=lake)
    try:
        df = downsample(con, run_ids, key, points=4 * buckets)
    finally:
        con.close()
    return _points(df.rows())


def _points(rows) -> list[tuple]:
    """(run_id, x, value) with floats as their repr (bit-exact; NaN equals NaN)."""
    return sorted((r, repr(float(x)), repr(float(v))) for r, x, v in rows)


def _ray_runs(lake: Path) -> list[dict]:
    out = cluster.runs_table(lake).to_pylist()
    for row in out:
        for c in JSON_COLUMNS:  # the DuckDB view casts JSON text to JSON: compare parsed
            row[c] = None if row[c] is None else json.loads(row[c])
    return out


def _parsed(rows: list[dict]) -> list[dict]:
    return [{k: (json.loads(v) if k in JSON_COLUMNS and v is not None else v)
             for k, v in r.items()} for r in rows]


def _ray_curve(lake: Path, run_ids, key: str, buckets: int) -> list[tuple]:
    tbl = cluster.curve(lake, run_ids, key, buckets)
    return _points(zip(*(tbl[c].to_pylist() for c in ("run_id", "x", "value"))))


def test_runs_table_equals_duckdb(ray_cluster, root):
    """Ray's runs table (visible rows, latest per run_id) is DuckDB's runs view, row for row."""
    duck = _parsed(_duck_runs(_lake(root)))
    assert len(duck) == 3 and {"alpha", "gamma"} < {r["run_id"] for r in duck}
    assert _ray_runs(_lake(root)) == duck


@pytest.mark.parametrize("key, buckets, run_ids", [
    ("k0", 10, None),                  # NaNs in k0; 300 points -> 10 buckets per run
    ("k1", 100, ["alpha", "gamma"]),   # Inf in k1; alpha: one bucket per point, gamma 2 ranks
])
def test_curve_equals_duckdb_downsample(ray_cluster, root, key, buckets, run_ids):
    """Ray's min/max bucket curve is analysis.curves.downsample's result, bit for bit
    (non-finite points kept, the lowest rank only, span over all ranks)."""
    duck = _duck_curve(_lake(root), run_ids, key, buckets)
    assert any(v in ("nan", "inf") for _r, _x, v in duck)  # the non-finite path is covered
    assert len({r for r, _x, _v in duck}) == (3 if run_ids is None else 2)
    assert _ray_curve(_lake(root), run_ids, key, buckets) == duck


def test_half_written_chunk_is_invisible_to_ray(ray_cluster, root, tmp_path):
    """An ingest SIGKILLed just before its `_commits` row left rows of a new run and a new
    version of an existing run's row in every table: Ray shows none of them, as DuckDB."""
    killed = tmp_path / "root"
    shutil.copytree(root, killed)
    lake = _lake(killed)
    before_runs = _ray_runs(lake)
    before_curve = _ray_curve(lake, None, "k0", 10)
    _emit([_train(killed, "alpha", "alpha"), _train(killed, "delta", "delta")])
    proc = _ingest(killed, **{KILL_ENV: "before:_commits@1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    vis = cluster.visibility(lake)
    from deltalake import DeltaTable

    raw = DeltaTable(str(lake / "runs")).to_pyarrow_table()
    hidden = [(a, c) for a, c in zip(raw["_app"].to_pylist(), raw["_chunk"].to_pylist())
              if c > vis.chunks.get(a, 0)]
    assert hidden  # the half chunk is on disk: the filter has something to hide
    assert "delta" in raw["run_id"].to_pylist()

    assert _ray_runs(lake) == _parsed(_duck_runs(lake)) == before_runs
    assert _ray_curve(lake, None, "k0", 10) == _duck_curve(lake, None, "k0", 10) == before_curve
    metrics = cluster.read_visible(vis, "metrics", columns=["run_id"]).count()
    con = connect(db=lake)
    try:
        assert metrics == records(con, "SELECT count(*) AS n FROM metrics")[0]["n"]
    finally:
        con.close()

    # the portable SQL given to Spark/Trino users hides the same rows (run here by DuckDB
    # over the raw Delta table, half chunk included)
    import duckdb

    con = duckdb.connect()
    con.register("runs_raw", DeltaTable(str(lake / "runs"), version=vis.versions["runs"])
                 .to_pyarrow_dataset())
    sql = cluster.visible_sql("runs", vis, source="runs_raw") + " ORDER BY run_id"
    assert _parsed(records(con, sql)) == before_runs


def test_s3_lake_through_ray_equals_duckdb(ray_cluster, s3_root):
    """An s3:// lake (moto server): Ray reads it with storage_options from
    schemas.objects and gives DuckDB's runs table and curve."""
    lake = _lake(s3_root)
    assert cluster.visibility(lake).storage_options["AWS_ALLOW_HTTP"] == "true"
    duck = _parsed(_duck_runs(lake))
    assert len(duck) == 2 and {r["status"] for r in duck} == {"finished"}
    assert _ray_runs(lake) == duck
    assert _ray_curve(lake, None, "k0", 10) == _duck_curve(lake, None, "k0", 10)
