"""One log query (``runlake.analysis.logs.query_logs``) for `runlake logs` and the dashboard:
minimum level by number, level names in any case, custom levels, case-insensitive search."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import duckdb
import pytest

import runlake
from runlake.analysis.logs import LEVELS, query_logs
from runlake.ingest import ingest
from runlake.schemas.errors import ConfigError
from runlake.store import locate, read_store
from runlake.store.spec import ddl

LINES = [  # (levelno, levelname, logger, message)
    (5, "TRACE", "train.loop", "tensor shapes ok"),
    (10, "DEBUG", "train.loop", "batch 1 loaded"),
    (20, "INFO", "train", "Starting epoch 1"),
    (25, "NOTICE", "train.ckpt", "checkpoint written"),
    (30, "WARNING", "train", "Loss is NaN at step 3"),
    (40, "ERROR", "io.Disk", "disk full"),
    (50, "CRITICAL", "train", "giving up: nan everywhere"),
]


def _log(logger: logging.Logger, levelno: int, levelname: str, message: str) -> None:
    """A record with its own level name (as logging.addLevelName would give it), without
    changing the process's logging registry."""
    record = logger.makeRecord(logger.name, levelno, __file__, 0, message, (), None)
    record.levelname = levelname
    logger.handle(record)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A real run that logged LINES through Python logging, ingested: (root, db, run id)."""
    root = tmp_path_factory.mktemp("logs-root")
    run = runlake.init("proj", "logger", root=root, console=False, system_interval=0,
                       online_checks=False)
    for logger_name in {name for _, _, name, _ in LINES}:
        logging.getLogger(logger_name).setLevel(1)
    try:
        for step, (levelno, levelname, logger_name, message) in enumerate(LINES):
            run.log({"loss": 1.0}, step=step)
            _log(logging.getLogger(logger_name), levelno, levelname, message)
        run.finish()
    finally:
        for logger_name in {name for _, _, name, _ in LINES}:
            logging.getLogger(logger_name).setLevel(logging.NOTSET)
    ingest(root)
    return root, locate(root).path, run.id


def _messages(frame) -> list[str]:
    return list(frame["message"])


def _query(logged, **kw):
    root, _, run_id = logged
    with read_store(root=root) as con:
        return query_logs(con, run_id, **kw)


def test_every_line_by_default_oldest_first(logged):
    """No level: every line, custom levels below DEBUG included, in logging order."""
    assert _messages(_query(logged)) == [m for *_, m in LINES]


@pytest.mark.parametrize("name", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
def test_level_is_a_minimum_by_number(logged, name):
    """A level keeps the lines whose level number is at least its own."""
    expected = [m for n, _, _, m in LINES if n >= LEVELS[name]]
    assert _messages(_query(logged, level=name)) == expected


@pytest.mark.parametrize("spelling", ["warning", "WARNING", "Warning", "warn", " WARN ", 30, "30"])
def test_level_names_ignore_case_and_numbers_work(logged, spelling):
    """warning, WARN, Warning, 30 and "30" all mean the same minimum."""
    assert _messages(_query(logged, level=spelling)) == [m for n, *_, m in LINES if n >= 30]


def test_custom_levels_by_their_stored_number(logged):
    """A custom level a run logged is named like a standard one: NOTICE = 25, TRACE = 5."""
    assert _messages(_query(logged, level="notice")) == [m for n, *_, m in LINES if n >= 25]
    assert _messages(_query(logged, level="Trace")) == [m for *_, m in LINES]
    assert "tensor shapes ok" not in _messages(_query(logged, level="debug"))


def test_unknown_level_lists_the_valid_ones(logged):
    """An unknown level is a ConfigError naming the standard levels and the store's custom ones."""
    with pytest.raises(ConfigError) as err:
        _query(logged, level="verbose")
    text = str(err.value)
    assert "'verbose'" in text and "DEBUG, INFO, WARNING (WARN), ERROR, CRITICAL (FATAL)" in text
    assert "NOTICE, TRACE" in text


@pytest.mark.parametrize("text, expected", [
    ("nan", ["Loss is NaN at step 3", "giving up: nan everywhere"]),
    ("NAN", ["Loss is NaN at step 3", "giving up: nan everywhere"]),
    ("disk", ["disk full"]),
    ("IO.disk", ["disk full"]),            # the logger's name, any case
    ("CKPT", ["checkpoint written"]),
])
def test_search_ignores_case_in_message_and_logger(logged, text, expected):
    """The text search is a case-insensitive substring of the message or the logger name."""
    assert _messages(_query(logged, grep=text)) == expected


def test_limit_keeps_the_newest_lines(logged):
    """limit keeps the newest N, oldest first unless newest_first."""
    assert _messages(_query(logged, limit=2)) == [LINES[-2][3], LINES[-1][3]]
    assert _messages(_query(logged, limit=2, newest_first=True)) == [LINES[-1][3], LINES[-2][3]]
    with pytest.raises(ConfigError, match="limit"):
        _query(logged, limit=-1)


def test_a_line_without_a_level_number_is_ranked_by_its_name(tmp_path):
    """A stored line with no levelno (an old segment, an import) ranks by its standard name."""
    db = tmp_path / "plain.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(ddl("logs"))
        con.execute("INSERT INTO logs (run_id, rank, ts, level, levelno, message) VALUES "
                    "('r', 0, '2024-01-01 00:00:01', 'warning', NULL, 'w'), "
                    "('r', 0, '2024-01-01 00:00:02', 'Shout', NULL, 'unknown level, no number'), "
                    "('r', 0, '2024-01-01 00:00:03', 'INFO', NULL, 'i')")
        assert _messages(query_logs(con, "r", level="WARN")) == ["w"]
        assert _messages(query_logs(con, "r", level=0)) == ["w", "unknown level, no number", "i"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "runlake.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("level, text", [
    (None, None), ("warn", None), ("Notice", "E"), ("info", "NaN"), ("30", "TRAIN")])
def test_cli_and_dashboard_show_the_same_lines(logged, level, text):
    """`runlake logs` and the dashboard's data function give the same lines for the same
    level and search (the dashboard lists them newest first)."""
    from runlake.dashboard import data

    root, db, run_id = logged
    args = ["logs", run_id, "--root", root, "--json"]
    args += ["--level", level] if level is not None else []
    args += ["--grep", text] if text is not None else []
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    cli_lines = [(r["level"], r["logger"], r["message"]) for r in json.loads(proc.stdout)]
    shown = data.log_lines(str(db), ("t",), (run_id,), level, text or "", 10_000)
    dash_lines = [(r["level"], r["logger"], r["message"]) for r in shown.iter_rows(named=True)]
    assert cli_lines and cli_lines == dash_lines[::-1]


def test_cli_unknown_level_is_one_line_exit_2(logged):
    """`runlake logs --level verbose`: one line naming the valid levels, exit code 2."""
    root, _, run_id = logged
    proc = _cli("logs", run_id, "--root", root, "--level", "verbose")
    assert proc.returncode == 2
    assert "unknown log level 'verbose'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
