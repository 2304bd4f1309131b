"""A real store for the dashboard tests: runs written by the real emitter, loaded by the
real ingest, scanned by the real anomaly detectors; an AppTest factory over it; and the
real-server helpers (``runlake ui`` as a subprocess, headless Chromium) as the ``ui``
fixture."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"

# (project, name, group, config, tags, spike step or None, finish status or None = running).
# The running run is written by a child process that stays alive until the session ends, as
# a training job would: a run left live in the pytest process would become every later
# test's current run.
SPECS = [
    ("vision", "alpha", "lr-sweep", {"lr": 0.1, "seed": 1, "model": {"width": 64}}, ["baseline"], 120, "finished"),
    ("vision", "beta", "lr-sweep", {"lr": 0.01, "seed": 1, "model": {"width": 64}}, ["sweep"], None, "finished"),
    ("vision", "beta-s2", "lr-sweep", {"lr": 0.01, "seed": 2, "model": {"width": 64}}, ["sweep"], None, "finished"),
    ("nlp", "delta", None, {"lr": 0.003, "seed": 1, "model": {"width": 256}}, ["lm"], None, "failed"),
    ("vision", "gamma", "lr-sweep", {"lr": 0.1, "seed": 2, "model": {"width": 128}}, ["sweep"], None, None),
]
STEPS = 200


def loss_at(step: int, lr: float, spike: int | None) -> float:
    value = 2.0 * math.exp(-step * lr / 5) + 0.1
    return value * 40 if spike is not None and step == spike else value


def write_run(root, spec) -> "runlake.Run":
    """Write one SPECS run with the real emitter; finish it unless its status is None."""
    import runlake

    project, name, group, config, tags, spike, status = spec
    logger = logging.getLogger("trainer")
    logger.setLevel(logging.INFO)
    run = runlake.init(project, name, root=root, config=config, tags=tags, group=group,
                       total_steps=400 if status is None else STEPS, console=False,
                       flush_interval=0.2)
    for step in range(STEPS):
        run.log({"loss": loss_at(step, config["lr"], spike), "acc": step / STEPS}, step=step)
        if step % 50 == 0:
            run.log_data([f"img-{i}" for i in range(step // 5, step // 5 + 10)], split="train",
                         step=step, augment={"flip": step % 100 == 0})
    run.log_data(["img-3", "img-77", "img-900"], split="eval", step=STEPS)
    logger.info("epoch done for %s", name)
    logger.warning("learning rate %s may be high for %s", config["lr"], name)
    logger.error("dataloader worker restarted in %s", name)
    if status is None:
        run.flush()
    else:
        run.finish(status=status)
    return run


# The child that writes the running run: prints its id once flushed, then lives (heartbeating)
# until its stdin closes.
LIVE_WRITER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from conftest import write_run
run = write_run(sys.argv[2], json.loads(sys.argv[3]))
print(run.id, flush=True)
sys.stdin.read()
run.finish()
"""


def build_store(root: Path) -> dict:
    """Write the SPECS runs with the real emitter, ingest them, detect anomalies."""
    from runlake.ingest import ingest

    ids, live = {}, []
    for spec in SPECS:
        if spec[-1] is None:
            child = subprocess.Popen(
                [sys.executable, "-c", LIVE_WRITER, str(Path(__file__).parent), str(root),
                 json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            ids[spec[1]] = child.stdout.readline().strip()
            assert ids[spec[1]], "the live writer died before writing its run"
            live.append(child)
        else:
            ids[spec[1]] = write_run(root, spec).id
    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
    _detect(db)
    return {"db": db, "root": root, "ids": ids, "live": live, "names": [s[1] for s in SPECS]}


def _detect(db: Path) -> None:
    """Run the anomaly detectors over the store (they store their findings)."""
    from runlake.analysis import anomalies

    detect = getattr(anomalies, "detect", None)
    if detect is None:
        pytest.fail("runlake.analysis.anomalies.detect is missing")
    detect(db=db)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """The shared read-only test store (built once per session)."""
    built = build_store(tmp_path_factory.mktemp("store"))
    yield built
    for child in built["live"]:
        child.communicate(timeout=60)


@pytest.fixture
def app(store, monkeypatch):
    """``app(view, **query_params)`` → an AppTest of the real app on the test store, run."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RUNLAKE_DB", str(store["db"]))

    def make(view: str | None = None, run: bool = True, **params: str):
        at = AppTest.from_file(str(APP), default_timeout=60)
        if view:
            at.query_params["view"] = view
        at.query_params.update(params)
        return at.run() if run else at

    return make


@pytest.fixture
def app_script() -> Path:
    """The dashboard entry script."""
    return APP


@pytest.fixture
def page_text():
    """``page_text(at)`` → all visible text of an AppTest page."""
    return texts


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def texts(at) -> str:
    """All visible text of an AppTest page (markdown, captions, titles, alerts, tables)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success", "code", "text"):
        parts += [str(e.value) for e in at.get(kind)]
    for frame in at.dataframe:
        parts.append(frame.value.to_string())
    return "\n".join(parts)


# --- a real server and a real browser ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def wait_healthy(proc: subprocess.Popen, port: int, what: str, timeout: float = 60) -> None:
    """Block until the Streamlit server on ``port`` answers /_stcore/health with ok."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise AssertionError(f"{what} did not answer /_stcore/health within {timeout:.0f} s")


def start_ui(db: Path, port: int, *extra: str) -> subprocess.Popen:
    """Start ``runlake ui`` on a free port; return the process once /_stcore/health is ok."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlake.cli", "ui", "--db", str(db), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    wait_healthy(proc, port, "runlake ui")
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of ``proc`` (SIGKILL after 10 s)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def listening_addresses(pid: int) -> set[str]:
    """The IP addresses that ``pid`` (and its children) listen on."""
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {c.laddr.ip for p in procs for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once with these arguments."""
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
        dom = chromium("--dump-dom", url).stdout
        done = f">{title}</span>" in dom and 'data-test-script-state="notRunning"' in dom
        if done or time.monotonic() > deadline:
            return dom


@pytest.fixture(scope="session")
def ui():
    """The real-server helpers: ``start_ui``, ``stop``, ``wait_healthy``, ``load_dom``,
    ``chromium``, ``listening_addresses``, ``free_port`` and ``CHROMIUM`` (its path)."""
    return types.SimpleNamespace(
        start_ui=start_ui, stop=stop, wait_healthy=wait_healthy, load_dom=load_dom,
        chromium=chromium, listening_addresses=listening_addresses, free_port=free_port,
        CHROMIUM=CHROMIUM)
