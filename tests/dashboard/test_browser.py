"""`runlake ui` as a real server, loaded in headless Chromium; its listening address."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from runlake.dashboard.selection import VIEWS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(store, ui):
    port = ui.free_port()
    proc = ui.start_ui(store["db"], port)
    if os.path.exists(CHROMIUM):  # warm up: the first script run imports polars, altair, ...
        ui.load_dom(f"http://127.0.0.1:{port}/?view=runs&refresh=off", "Runs")
    yield proc, port
    ui.stop(proc)


def test_ui_binds_to_loopback_by_default(server, ui):
    """Without --host the server listens on 127.0.0.1 only."""
    proc, _ = server
    assert ui.listening_addresses(proc.pid) == {"127.0.0.1"}


def test_ui_warns_loudly_for_a_public_host(tmp_path, port):
    """A non-loopback --host prints a warning naming the exposure before starting."""
    # 192.0.2.1 (TEST-NET-1) is never assigned here, so nothing is actually exposed.
    proc = subprocess.run(
        [sys.executable, "-m", "runlake.cli", "ui", "--db", str(tmp_path / "x.duckdb"),
         "--host", "192.0.2.1", "--port", str(port)],
        capture_output=True, text=True, timeout=60,
    )
    assert "WARNING" in proc.stderr and "NO authentication" in proc.stderr
    assert "192.0.2.1" in proc.stderr


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
@pytest.mark.parametrize("view", list(VIEWS))
def test_view_in_headless_chromium(server, store, tmp_path, ui, view):
    """Each view loads in a real browser: its title, no exception text, a non-blank page."""
    from PIL import Image, ImageStat

    _, port = server
    ids = store["ids"]
    # refresh=off: live fragments would keep the script running, and the DOM never settles
    url = (f"http://127.0.0.1:{port}/?view={view}&runs={ids['alpha']},{ids['beta']}&key=loss"
           f"&refresh=off")
    dom = ui.load_dom(url, VIEWS[view])
    assert f">{VIEWS[view]}</span>" in dom, dom[-2000:]
    for bad in ("Traceback", "stException", "stAlertContentError"):
        assert bad not in dom, f"{bad} on {view}"
    shot = tmp_path / f"{view}.png"
    deadline = time.monotonic() + 60
    while True:  # until the page left its loading skeleton (pixel variance ~2)
        ui.chromium(f"--screenshot={shot}", url)
        variance = ImageStat.Stat(Image.open(shot).convert("L")).var[0]
        if variance > 50 or time.monotonic() > deadline:
            break
    assert variance > 50, f"screenshot {shot} is blank (pixel variance {variance:.1f})"
