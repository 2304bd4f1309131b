"""The first page load does not pay for the app's imports: `runlake ui` loads them while
the server waits for its first browser (timings: bench/bench_dashboard.py --first-render)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from runlake.dashboard._serve import WARM_MODULES, warm

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_runlake_ui_loads_the_heavy_modules_before_any_browser_connects(tmp_path, ui):
    """With no session connected, the server process of `runlake ui` has loaded pandas,
    pyarrow, polars and DuckDB (their native libraries are mapped into it)."""
    port = ui.free_port()
    proc = ui.start_ui(tmp_path / "s.duckdb", port)
    try:
        wanted = ("pandas/_libs", "pyarrow/", "polars", "duckdb")
        deadline = time.monotonic() + 90
        while True:
            missing = [w for w in wanted if w not in _mapped(proc.pid)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not missing, f"not loaded before the first session: {missing}"
    finally:
        ui.stop(proc)


def test_every_view_is_warmed():
    """Every view module (and the modules they share) is on the warm-up list."""
    views = {f"runlake.dashboard.{p.stem}" for p in DASHBOARD.glob("view_*.py")}
    shared = {"runlake.dashboard.data", "runlake.dashboard.widgets", "runlake.dashboard.selection"}
    assert views | shared <= set(WARM_MODULES)


def test_warm_reports_what_it_could_not_import():
    """A module that fails to import only costs the warm-up; it is reported, not raised."""
    assert warm(("json", "runlake_no_such_module")) == ["runlake_no_such_module"]
