"""The dashboard's pure pieces: host check, URL focus, zoom resolution, status text, curves."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import polars as pl
import pytest

from runlake.cli._ui import is_loopback, streamlit_command
from runlake.dashboard.view_anomalies import worst_first
from runlake.dashboard.view_charts import curves, zoom_points
from runlake.dashboard.view_runs import filter_runs, status_text
from runlake.dashboard.widgets import RUN_SCHEMA, human_duration


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False)],
)
def test_is_loopback(host, loopback):
    """Only loopback addresses and `localhost` count as local."""
    assert is_loopback(host) is loopback


def test_streamlit_command_binds_host_and_passes_db(tmp_path):
    """The server argv names the app, the address, headless mode and the store after `--`."""
    argv = streamlit_command(tmp_path / "s.duckdb", "127.0.0.1", 8600)
    assert argv[:4] == [sys.executable, "-m", "runlake.dashboard._serve", "run"]
    assert Path(argv[4]).name == "app.py" and Path(argv[4]).exists()
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "8600"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"
    assert argv[-3:] == ["--", "--db", str(tmp_path / "s.duckdb")]


def test_streamlit_command_passes_the_root_to_the_app(tmp_path):
    """`runlake ui --root R --db X`: the app gets R too (the Media view reads blobs under the
    root, which need not be the store's folder)."""
    from runlake.dashboard.data import script_args

    argv = streamlit_command(tmp_path / "elsewhere" / "s.duckdb", "127.0.0.1", 8600, tmp_path / "root")
    args = script_args(argv[argv.index("--") + 1:])
    assert (args.db, args.root) == (str(tmp_path / "elsewhere" / "s.duckdb"), str(tmp_path / "root"))


@pytest.mark.parametrize(
    ("points", "lo", "hi", "last", "expected"),
    [
        (1000, None, None, 10_000, 1000),      # no zoom
        (1000, 0, 1_000, 10_000, 10_000),          # a tenth of the run: 10x the points
        (1000, 9_000, None, 10_000, 10_000),    # open-ended range
        (1000, 0, 10, 1_000_000, 20_000),       # capped
        (1000, 50, 40, 100, 1000),              # empty range: unchanged
        (1000, 0, 500, None, 1000),             # unknown length: unchanged
    ],
)
def test_zoom_points(points, lo, hi, last, expected):
    """A zoomed step range asks for proportionally more points, within the cap."""
    assert zoom_points(points, lo, hi, last) == expected


@pytest.mark.parametrize(
    ("status", "age", "expected"),
    [("finished", 5.0, "finished"), ("running", 4.2, "running · 4s ago"),
     ("running", 30.0, "running · 30s ago"), ("running", 600.0, "running? silent 10m 00s"),
     ("running", None, "running"), ("crashed", 900.0, "crashed")],
)
def test_status_text(status, age, expected):
    """Running runs show their heartbeat age; a long silence is flagged."""
    assert status_text(status, age) == expected


@pytest.mark.parametrize(("seconds", "text"), [(None, ""), (float("nan"), ""), (0, "0s"), (59.6, "1m 00s"),
                                               (3725, "1h 02m"), (90000, "1d 01h")])
def test_human_duration(seconds, text):
    """Durations print compactly at the right unit."""
    assert human_duration(seconds) == text


def test_filter_runs_combines_filters():
    """Filters intersect; a run without tags never matches a tag filter."""
    runs = pl.DataFrame(
        [
            {"run_id": "a1", "project": "p", "name": "alpha", "group_name": None, "status": "running", "tags": ["x"]},
            {"run_id": "b2", "project": "p", "name": "beta", "group_name": "g", "status": "failed", "tags": None},
            {"run_id": "c3", "project": "q", "name": "Alpine", "group_name": None, "status": "running", "tags": ["x", "y"]},
        ],
        schema={k: RUN_SCHEMA[k] for k in ("run_id", "project", "name", "group_name", "status", "tags")},
    )
    assert filter_runs(runs, text="ALP")["run_id"].to_list() == ["a1", "c3"]
    assert filter_runs(runs, tags=["x"], projects=["q"])["run_id"].to_list() == ["c3"]
    assert filter_runs(runs, tags=["y", "x"], statuses=["running"])["run_id"].to_list() == ["a1", "c3"]
    assert filter_runs(runs, text="g")["run_id"].to_list() == ["b2"]


def test_curves_drop_nonfinite_smooth_and_clip():
    """Non-finite points leave the plot, smoothing is bias corrected, the range clips x."""
    raw = pl.DataFrame({"run_id": ["r"] * 5, "x": [0.0, 1, 2, 3, 4],
                        "value": [1.0, math.nan, 3.0, math.inf, 5.0]})
    out = curves(raw, {"r": "proj/r"}, smoothing=0.0, x="step")
    assert out["x"].to_list() == [0.0, 2.0, 4.0] and set(out["run"]) == {"proj/r"}
    smooth = curves(raw, {}, smoothing=0.5, x="step")
    assert smooth["smoothed"][0] == pytest.approx(1.0)  # bias corrected: not pulled to 0
    assert 1.0 < smooth["smoothed"][2] < 5.0
    clipped = curves(raw, {}, smoothing=0.0, x="step", x_range=(1, 3))
    assert clipped["x"].to_list() == [2.0]
    logged = curves(pl.DataFrame({"run_id": ["r"] * 3, "x": [0.0, 1, 2], "value": [-1.0, 0.0, 2.0]}),
                    {}, smoothing=0.0, x="step", log_y=True)
    assert logged["value"].to_list() == [2.0]


def test_anomalies_worst_first_across_runs():
    """Critical findings of any run come before warnings and infos; then run, then step."""
    found = pl.DataFrame({
        "severity": ["info", "warning", "critical", "warning", "critical"],
        "run": ["a", "a", "b", "b", "a"],
        "step_start": [5, 1, 9, None, 3],
    })
    ordered = worst_first(found)
    assert list(zip(ordered["severity"], ordered["run"], ordered["step_start"])) == [
        ("critical", "a", 3), ("critical", "b", 9), ("warning", "a", 1),
        ("warning", "b", None), ("info", "a", 5)]
