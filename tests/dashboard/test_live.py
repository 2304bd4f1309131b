"""Live updates: a training subprocess logs while `runlake ingest --watch` runs; the app keeps
answering and shows the new steps (in AppTest, and in headless Chromium without a reload,
read over the DevTools protocol), and the idle change token stays put."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WRITER = textwrap.dedent("""
    import sys, time
    import runlake
    run = runlake.init("live", "trainer", root=sys.argv[1], config={"lr": 0.1},
                       total_steps=100000, flush_interval=0.1, console=False)
    print(run.id, flush=True)
    step = 0
    while True:
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(0.01)
""")


def _ingest_watch(root: Path, db: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "runlake.cli", "ingest", "--root", str(root), "--db", str(db),
           "--watch", "--interval", "0.2"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _last_step(at) -> int | None:
    """The ``step`` column of the trainer's row in the Runs table."""
    assert not at.exception, [e.value for e in at.exception]
    if not at.dataframe:
        return None
    table = at.dataframe[0].value
    rows = table[table["run"] == "trainer"]
    return None if rows.empty or rows.iloc[0]["step"] != rows.iloc[0]["step"] else int(rows.iloc[0]["step"])


@pytest.mark.slow
def test_app_shows_new_steps_while_ingest_watch_runs(tmp_path, monkeypatch, app_script, ui):
    """With a writer and `ingest --watch` running, successive app runs answer and see new steps."""
    from streamlit.testing.v1 import AppTest

    root, db = tmp_path / "lake", tmp_path / "lake" / "runlake.duckdb"
    root.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    watcher = _ingest_watch(root, db)
    try:
        run_id = writer.stdout.readline().strip()
        assert run_id, writer.stderr.read()
        monkeypatch.setenv("RUNLAKE_DB", str(db))
        at = AppTest.from_file(str(app_script), default_timeout=60)
        at.query_params["view"] = "runs"
        seen: list[int] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (len(set(seen)) < 3):
            at.run()
            step = _last_step(at)
            if step is not None:
                seen.append(step)
            time.sleep(0.5)
        assert len(set(seen)) >= 3, f"steps seen by successive runs: {seen}"
        assert seen == sorted(seen)
        assert watcher.poll() is None, "ingest --watch died: " + watcher.stderr.read().decode()

        charts = AppTest.from_file(str(app_script), default_timeout=60)
        charts.query_params.update({"view": "charts", "runs": run_id, "key": "loss"})
        charts.run()
        assert not charts.exception and charts.get("vega_lite_chart")
    finally:
        ui.stop(writer)
        ui.stop(watcher)


def test_change_token_is_stable_when_idle_and_moves_on_ingest(tmp_path):
    """The token only changes when ingest loaded something; an idle check costs no query."""
    import runlake
    from runlake.dashboard import data
    from runlake.ingest import ingest

    root, db = tmp_path / "lake", tmp_path / "lake" / "runlake.duckdb"
    assert data.change_token(db) == data.MISSING_STORE
    run = runlake.init("p", "r", root=root, console=False)
    run.log({"loss": 1.0}, step=0)
    run.flush()
    ingest(root=root, db=db)
    first = data.change_token(db)
    assert first != data.MISSING_STORE
    sig = data.file_signature(db)
    assert data.change_token(db) == first and data.file_signature(db) == sig
    ingest(root=root, db=db)  # nothing new: the token must not move
    assert data.change_token(db) == first
    run.log({"loss": 0.5}, step=1)
    run.finish()
    ingest(root=root, db=db)
    assert data.change_token(db) != first


# -- the same in a real browser: one page load, the Runs table's step cell moves by itself --

_STEP_OF_TRAINER = """(() => {
  const head = {};  // a table with tick boxes has no cell in grid column 0
  const shift = document.querySelector('[data-testid^="glide-cell-0-"]') ? 0 : 1;
  document.querySelectorAll('th[role=columnheader]').forEach(
      h => { head[h.textContent.trim()] = +h.getAttribute('aria-colindex') - 1 + shift; });
  const cell = {};
  document.querySelectorAll('[data-testid^="glide-cell-"]').forEach(e => {
      const [c, r] = e.dataset.testid.split('-').slice(2).map(Number);
      cell[c + ',' + r] = e.textContent.trim(); });
  if (!('step' in head) || !('run' in head)) return null;
  for (let r = 0; cell[head['run'] + ',' + r] !== undefined; r++)
      if (cell[head['run'] + ',' + r] === 'trainer') return cell[head['step'] + ',' + r] ?? null;
  return null;
})()"""


def _devtools_page(chromium: subprocess.Popen, url: str, deadline: float) -> str:
    """The DevTools websocket URL of the page chromium opened for ``url``."""
    import json
    import re
    import urllib.request

    port = None
    while port is None and time.monotonic() < deadline:
        line = chromium.stderr.readline()
        match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        port = match and match.group(1)
    assert port, "chromium did not open its DevTools port"
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.2)
    raise AssertionError("chromium has no page target")


def _watch_page(ws_url: str, expression: str, seconds: float) -> list:
    """Evaluate ``expression`` in the page twice a second (no reload); its values in order."""
    import json

    from websockets.sync.client import connect  # streamlit's server stack brings it

    values, msg_id = [], 0
    with connect(ws_url, max_size=64 << 20) as conn:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg_id += 1
            conn.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate",
                                  "params": {"expression": expression, "returnByValue": True}}))
            while True:
                reply = json.loads(conn.recv(timeout=30))
                if reply.get("id") == msg_id:
                    break
            # An error reply (no execution context: the page is still navigating or loading,
            # as happens on a loaded machine) is "no value yet"; the caller's assertions
            # still need several growing steps.
            values.append(reply.get("result", {}).get("result", {}).get("value"))
            time.sleep(0.5)
    return values


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="chromium is not installed")
def test_browser_page_shows_new_steps_without_reload(tmp_path, port, ui):
    """`runlake ui` in headless Chromium, Runs view loaded once with a 1 s live refresh: while
    a training process logs and `ingest --watch` loads, the trainer's step cell grows."""
    root, db = tmp_path / "lake", tmp_path / "lake" / "runlake.duckdb"
    root.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    watcher = _ingest_watch(root, db)
    server = subprocess.Popen([sys.executable, "-m", "runlake.cli", "ui", "--db", str(db),
                           "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/?view=runs&refresh=1"
    chromium = None
    try:
        assert writer.stdout.readline().strip(), writer.stderr.read()
        deadline = time.monotonic() + 90
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        chromium = subprocess.Popen(
            ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=1400,1000", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        ws_url = _devtools_page(chromium, url, deadline)
        values = _watch_page(ws_url, _STEP_OF_TRAINER, 40)
        steps = [int(v) for v in values if v not in (None, "")]
        assert len(set(steps)) >= 3, f"step cell over 40 s without reload: {values}"
        assert steps == sorted(steps)
    finally:
        for proc in (chromium, server, writer, watcher):
            if proc is not None:
                ui.stop(proc)
