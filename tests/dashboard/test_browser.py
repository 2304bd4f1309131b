"""`runlake ui` as a real server, loaded in headless Chromium; its listening address."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from runlake.dashboard.selection import VIEWS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def start_ui(db: Path, port: int, *extra: str) -> subprocess.Popen:
    """Start ``runlake ui`` on a free port; return the process once /_stcore/health is ok."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlake.cli", "ui", "--db", str(db), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"runlake ui exited {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise AssertionError("the dashboard did not answer /_stcore/health within 60 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def server(store):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_ui(store["db"], port)
    if os.path.exists(CHROMIUM):  # warm up: the first script run imports polars, altair, ...
        load_dom(f"http://127.0.0.1:{port}/?view=runs&refresh=off", "Runs")
    yield proc, port
    stop(proc)


def listening_addresses(pid: int) -> set[str]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {c.laddr.ip for p in procs for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def test_ui_binds_to_loopback_by_default(server):
    """Without --host the server listens on 127.0.0.1 only."""
    proc, _ = server
    assert listening_addresses(proc.pid) == {"127.0.0.1"}


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


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
         "--window-size=1400,1000", *args],
        capture_output=True, text=True, timeout=90,
    )


def load_dom(url: str, title: str, wait_s: float = 90) -> str:
    """The DOM once the view drew its title and the script finished (or the last try).

    Chromium's virtual time runs ahead while the page waits on the websocket, so a view
    whose first run is still importing and querying shows its loading skeleton: retry.
    """
    deadline = time.monotonic() + wait_s
    while True:
        dom = _chromium("--dump-dom", url).stdout
        done = f">{title}</span>" in dom and 'data-test-script-state="notRunning"' in dom
        if done or time.monotonic() > deadline:
            return dom


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
@pytest.mark.parametrize("view", list(VIEWS))
def test_view_in_headless_chromium(server, store, tmp_path, view):
    """Each view loads in a real browser: its title, no exception text, a non-blank page."""
    from PIL import Image, ImageStat

    _, port = server
    ids = store["ids"]
    # refresh=off: live fragments would keep the script running, and the DOM never settles
    url = (f"http://127.0.0.1:{port}/?view={view}&runs={ids['alpha']},{ids['beta']}&key=loss"
           f"&refresh=off")
    dom = load_dom(url, VIEWS[view])
    assert f">{VIEWS[view]}</span>" in dom, dom[-2000:]
    for bad in ("Traceback", "stException", "stAlertContentError"):
        assert bad not in dom, f"{bad} on {view}"
    shot = tmp_path / f"{view}.png"
    deadline = time.monotonic() + 60
    while True:  # until the page left its loading skeleton (pixel variance ~2)
        _chromium(f"--screenshot={shot}", url)
        variance = ImageStat.Stat(Image.open(shot).convert("L")).var[0]
        if variance > 50 or time.monotonic() > deadline:
            break
    assert variance > 50, f"screenshot {shot} is blank (pixel variance {variance:.1f})"
