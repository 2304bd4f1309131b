"""`runlake ingest --rebuild` rebuilds either store from the segments, swaps it in
atomically, keeps the old one, and loses nothing when killed midway."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

pytest.importorskip("deltalake")

from runlake.analysis.anomalies import detect  # noqa: E402
from runlake.ingest import ingest  # noqa: E402
from runlake.store import locate  # noqa: E402
from runlake.store.rebuild import REFRESH_ANOMALIES, old_path, temp_sibling  # noqa: E402
from runlake.store.spec import TABLES  # noqa: E402

from ._h3_roots import RUNLAKE, cli, damage, store_rows, write_run  # noqa: E402

FROM_SEGMENTS = [t for t, spec in TABLES.items() if spec.kind != "derived"]


@pytest.fixture(params=["duckdb", "lake"])
def root(request, tmp_path):
    """A root with two runs and a damaged segment, ingested into the store ``param``,
    with anomalies stored."""
    root = tmp_path / "root"
    root.mkdir()
    write_run(root, "a")
    write_run(root, "b", steps=120)
    damage(root)
    ingest(root, kind=request.param)
    assert detect(root=root) > 0
    return root


def test_rebuild_gives_the_same_rows_and_keeps_the_old_store(root):
    """Every table from segments has the same rows after a rebuild (ingest-time stamps
    aside); the old store is kept as <name>.old, unchanged; the report says how to
    recompute anomalies; more segments then load once."""
    location = locate(root)
    before = store_rows(location, ingest_times=False)
    exact = store_rows(location)
    report = ingest(root, rebuild=True)
    assert report.points == sum(before["metrics"].values())
    assert any(REFRESH_ANOMALIES in n for n in report.notes), report.notes
    assert locate(root) == location
    after = store_rows(location, ingest_times=False)
    for t in FROM_SEGMENTS:
        assert after[t] == before[t], t
    assert not after["anomalies"]  # derived: recomputed on request
    kept = old_path(location.path)
    assert kept.exists() and not temp_sibling(location.path, "rebuild").exists()
    assert store_rows(type(location)(location.kind, kept, root)) == exact
    write_run(root, "c", steps=40)
    assert ingest(root).rows["metrics"] == 3 * 40
    assert ingest(root).frames == 0


def test_rebuild_on_the_command_line_says_what_it_did(root):
    """`runlake ingest --rebuild` prints where the old store is and the anomalies command."""
    out = cli("ingest", "--root", root, "--rebuild").stdout
    assert "rebuilt" in out and ".old" in out and REFRESH_ANOMALIES in out, out
    assert "metric points" in out


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_sigkill_during_rebuild_loses_nothing(root, delay):
    """A rebuild killed at any moment leaves the old store readable with every row, or the
    complete new one; the next rebuild removes what the killed one left."""
    location = locate(root)
    before = store_rows(location, ingest_times=False)
    exact = store_rows(location)
    proc = subprocess.Popen([*RUNLAKE, "ingest", "--root", str(root), "--rebuild"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    now = store_rows(location)
    if not old_path(location.path).exists():  # killed before the swap: untouched
        assert now == exact
    else:
        for t in FROM_SEGMENTS:
            assert store_rows(location, ingest_times=False)[t] == before[t], t
    cli("ingest", "--root", root, "--rebuild")
    after = store_rows(location, ingest_times=False)
    for t in FROM_SEGMENTS:
        assert after[t] == before[t], t
    assert not temp_sibling(location.path, "rebuild").exists()
