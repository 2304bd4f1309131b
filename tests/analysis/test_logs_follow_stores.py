"""`runlake logs --follow` on both stores: a cursor in ingest order (the DuckDB file's row
ids, the lake's chunk numbers) returns exactly the lines committed after it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import runlake
from runlake.analysis.logs import query_logs
from runlake.ingest import ingest
from runlake.store import locate, read_store


def _run_logging(root, run_id, messages, *, resume=False):
    run = runlake.init("proj", "follow", root=root, run_id=run_id, resume=resume,
                       console=False, system_interval=0, online_checks=False)
    log = logging.getLogger("follow.test")
    for i, message in enumerate(messages):
        run.log({"loss": 1.0 / (i + 1)})
        log.warning(message)
    run.finish()
    return run.id


@pytest.mark.parametrize("kind", ["duckdb", "lake"])
def test_the_cursor_returns_only_lines_committed_after_it(tmp_path, kind):
    root = tmp_path / "root"
    run_id = _run_logging(root, None, ["first a", "first b"])
    ingest(root, kind=kind)
    with read_store(locate(root)) as con:
        before = query_logs(con, run_id, cursor=True)
    assert before["message"].to_list() == ["first a", "first b"]
    assert before["cursor"].null_count() == 0
    top = before["cursor"].max()

    _run_logging(root, run_id, ["second c"], resume=True)
    ingest(root, kind=kind)
    with read_store(locate(root)) as con:
        after = query_logs(con, run_id, cursor=True, after=top)
        again = query_logs(con, run_id, cursor=True)
    assert after["message"].to_list() == ["second c"]
    assert after["cursor"].min() > top
    assert again["message"].to_list() == ["first a", "first b", "second c"]


def test_runlake_logs_on_a_lake(tmp_path):
    """The CLI (which always asks for cursors) works on a lake, as on the DuckDB file."""
    root = tmp_path / "root"
    run_id = _run_logging(root, None, ["<b>markup</b> stays text", "plain"])
    ingest(root, kind="lake")
    out = subprocess.run([sys.executable, "-m", "runlake.cli", "logs", run_id, "--root",
                          str(root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "<b>markup</b> stays text" in out.stdout and "plain" in out.stdout
