"""Every view in a real browser on a store of 1,000 runs: screenshots non-blank, the
expected panel titles on the page, no exception.

The store is ``bench/dashboard_store.build_store`` (1,000 runs x 50 steps x 8 keys,
generated in DuckDB: a second); ``runlake ui`` serves it; one headless Chromium, driven
over the DevTools protocol (``bench/bench_dashboard.Browser``), visits each view.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import time
from pathlib import Path

import pytest

from runlake.dashboard.selection import VIEWS

BENCH = Path(__file__).resolve().parents[2] / "bench"
CHROMIUM = "/usr/bin/chromium"
RUNS = ("run00999", "run00994", "run00997")  # run00994 has a stored finding

# view -> text the page must show once drawn (panel, section and figure titles); the
# tables' cells are drawn on a canvas, so tables and charts are checked as elements
DRAWN = {"runs": '[data-testid="stDataFrame"]', "charts": ".vega-embed",
         "params": ".vega-embed", "sql": '[data-testid="stDataFrame"]'}
EXPECTED = {
    "runs": ["Columns, sort, filter and grouping", "1000 of 1000 runs", "3 selected"],
    "charts": ["train/loss", "val/loss"],
    "compare": ["Config diff", "Hyperparameter impact", "Best configuration"],
    "params": ["Parallel coordinates", "Metric vs parameter", "Importance"],
    "anomalies": ["Findings"],
    "lineage": ["Find an item"],
    "logs": ["Logs"],
    "media": ["These runs logged no media or histograms"],  # the big store has none
    "sql": ["Schema", "Example queries", "1 row(s)"],  # the linked query ran
}

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")]


@pytest.fixture(scope="module")
def big_server(tmp_path_factory, ui):
    sys.path.insert(0, str(BENCH))
    try:
        from dashboard_store import build_store
    finally:
        sys.path.remove(str(BENCH))
    db = tmp_path_factory.mktemp("big") / "runlake.duckdb"
    build_store(db, 1000, 50, 8, quiet=True)
    port = ui.free_port()
    proc = ui.start_ui(db, port)
    yield port
    ui.stop(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sys.path.insert(0, str(BENCH))
    try:
        from bench_dashboard import Browser
    finally:
        sys.path.remove(str(BENCH))
    b = Browser(tmp_path_factory.mktemp("profile"))
    b.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1,
           mobile=False)
    yield b
    b.close()


def _page(browser, needles: list[str], selector: str | None, timeout: float = 45) -> str:
    """The page's text once the script finished, every needle and the selector show (or
    the last text)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        got = browser.call("Runtime.evaluate", returnByValue=True, expression=(
            "[!!document.querySelector('[data-test-script-state=\"notRunning\"]') && "
            f"!!document.querySelector({(selector or 'body')!r}), "
            "document.body ? document.body.innerText : '']"))
        done, text = got.get("result", {}).get("value") or [False, ""]
        if done and all(n in text for n in needles):
            return text
        time.sleep(0.25)
    return text


@pytest.mark.parametrize("view", list(VIEWS))
def test_view_on_1000_runs_in_chromium(big_server, browser, tmp_path, view):
    """Each view of a 1,000-run store draws its titles, no exception, a non-blank page."""
    from PIL import Image, ImageStat

    extra = "&sql=SELECT%20count(*)%20AS%20n%20FROM%20runs" if view == "sql" else ""
    url = f"http://127.0.0.1:{big_server}/?view={view}&runs={','.join(RUNS)}&refresh=off{extra}"
    browser.call("Page.navigate", url=url)
    time.sleep(0.5)
    needles = [VIEWS[view], *EXPECTED[view]]
    text = _page(browser, needles, DRAWN.get(view))
    missing = [n for n in needles if n not in text]
    assert not missing, (missing, text[-1500:])
    if view in DRAWN:
        found = browser.call("Runtime.evaluate", returnByValue=True, expression=(
            f"document.querySelectorAll({DRAWN[view]!r}).length"))["result"]["value"]
        assert found, f"no {DRAWN[view]} on {view}"
    for bad in ("Traceback", "Error:", "StreamlitAPIException"):
        assert bad not in text, f"{bad} on {view}"
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / f"{view}.png").write_bytes(png)
    variance = ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).var[0]
    assert variance > 50, f"screenshot of {view} is blank (pixel variance {variance:.1f})"
