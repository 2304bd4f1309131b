"""Dashboard benchmark at scale: 10,000 runs x 1,000 steps x 20 keys (200M points).

    .venv/bin/python bench/bench_dashboard.py [--runs 10000 --steps 1000 --keys 20] [--repeat 3]

Builds once (cached under /tmp/runlake-bench-ui; ``bench/dashboard_store.py`` says how and
why: rows generated in DuckDB in the order ingest leaves them, ~3 min for 200M points on
this 2-core machine) a store of RUNS x STEPS x KEYS, then times the real app through
Streamlit's ``AppTest`` (server time: the script run, store reads and chart specs; no
browser), median of --repeat, ``st.cache_data`` cleared before each cold run:

* Runs view, cold (target <= 1 s) and warm (a rerun served from the caches); baseline:
  the raw SQL it needs (``SELECT * FROM runs``);
* Runs view sorted by a metric summary (``?sort=train/loss:min``: one aggregation over
  every point of that key; no target, it is on demand);
* workspace: the Charts view with 50 runs and 20 panels (every section open; target
  <= 2 s); baseline: one SQL query bucketing those 20 keys x 50 runs;
* a grouped panel of 1,000 runs (``?group=lr``, one key; target <= 1 s);
* the Hyperparameters view over the 500 newest runs (cold);
* idle refresh: ``data.change_token`` with nothing new (target <= 50 ms) and the number of
  store reads in a rerun with nothing new (target 0);
* memory: RSS of a real ``runlake ui`` server (and its children) after Chromium loaded the
  Runs view, the workspace and the grouped panel (target <= 1 GB).

Prints medians, ratios against the baselines, and the verdicts.

``--first-render`` measures instead what a person sees on a first visit: time to first
render of the Runs view in headless Chromium (``/usr/bin/chromium``, a fresh profile each
time, so nothing is cached), over the DevTools protocol, on a demo-sized store (``--db``,
or the store of ``runlake demo`` built once under /tmp/runlake-bench-demo). Each repeat
starts a fresh server and reports, until the runs table shows its first cells (target
<= 3 s from the first request):

* from process start: the browser asks as soon as /_stcore/health answers;
* from the first request: the browser asks ``--open-after`` seconds after health (a
  person opening the printed link), with a fresh profile (a first visit ever);
* the same with a browser that visited the dashboard before (one profile kept across
  repeats: its HTTP and code caches are warm, as for a returning user);

for ``runlake ui`` (imports warmed while the server starts) against the baseline of a plain
``python -m streamlit run dashboard/app.py`` with the same options (what ``runlake ui``
ran before).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_store import build_store, key_names  # noqa: E402

CACHE = Path("/tmp/runlake-bench-ui")



def _wait_healthy(server, port: int, poll_s: float, limit_s: float = 120) -> None:
    """Until the Streamlit server (a Popen) on ``port`` answers its health check (an error
    if it exits or stays silent for ``limit_s``)."""
    import urllib.request

    deadline = time.monotonic() + limit_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the dashboard server on port {port} did not start")
            time.sleep(poll_s)

def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- first render in a real browser ------------------------------------------------------

DEMO = Path("/tmp/runlake-bench-demo")
TABLE_SHOWN = """(() => { const g = document.querySelector('[data-testid="stDataFrame"]');
  return !!(g && g.getBoundingClientRect().height > 50
            && document.querySelector('[data-testid^="glide-cell-"]')); })()"""


def demo_store() -> Path:
    """The store of ``runlake demo`` (5 runs of real CPU training), built once."""
    import subprocess

    db = DEMO / "runlake.duckdb"
    if not db.exists():
        subprocess.run([sys.executable, "-m", "runlake.cli", "demo", "--root", str(DEMO)],
                       check=True, stdout=subprocess.DEVNULL)
    return db


class Browser:
    """Headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        import json
        import re
        import subprocess
        import urllib.request

        from websockets.sync.client import connect  # streamlit's server stack brings it

        self.proc = subprocess.Popen(
            ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,1000",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        port = None
        while port is None:
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/",
                              self.proc.stderr.readline())
            port = match and match.group(1)
        pages = []
        while not pages:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 << 20)
        self.calls = 0

    def call(self, method: str, **params):
        import json

        self.calls += 1
        self.ws.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == self.calls:
                return reply.get("result", {})

    def until(self, expression: str, timeout: float = 60) -> float:
        """Seconds until ``expression`` is true in the page (polled every 20 ms)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            got = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            if got.get("result", {}).get("value"):
                return time.perf_counter() - t0
            time.sleep(0.02)
        raise TimeoutError(f"not true within {timeout} s: {expression[:60]}")

    def close(self) -> None:
        import signal

        self.ws.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def first_render(db: Path, launcher: str, open_after: float, profile: Path) -> tuple[float, float]:
    """``(health, table)``: seconds from process start until /_stcore/health answers, and
    from the browser's request (``open_after`` s after health) until the table shows."""
    import signal
    import socket
    import subprocess
    import urllib.request

    from runlake.cli._ui import streamlit_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = streamlit_command(db, "127.0.0.1", port)
    if launcher == "streamlit":
        argv[1:3] = ["-m", "streamlit"]  # the plain server: nothing warmed
    browser = Browser(profile)  # started first: its own start-up is not counted
    t0 = time.perf_counter()
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait_healthy(server, port, 0.02)
        health = time.perf_counter() - t0
        time.sleep(open_after)
        t1 = time.perf_counter()
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/?view=runs")
        browser.until(TABLE_SHOWN)
        return health, time.perf_counter() - t1
    finally:
        browser.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def first_render_main(db: Path, repeat: int, open_after: float) -> int:
    import tempfile

    print(f"store: {db}; median of {repeat}; load average {os.getloadavg()[0]:.1f}")
    head = ("launcher", "health", "start->table", "request->table", "returning browser")
    print(f"{head[0]:12s} {head[1]:>8s} {head[2]:>13s} {head[3]:>15s} {head[4]:>18s}")
    launchers = ("runlake-ui", "streamlit")
    rows: dict[str, list] = {launcher: [] for launcher in launchers}
    with tempfile.TemporaryDirectory() as tmp:
        for launcher in launchers:  # the earlier visit of the returning browser
            first_render(db, launcher, open_after, Path(tmp) / f"{launcher}-kept")
        for i in range(repeat):  # interleaved, so the VM's load drifts over both alike
            for launcher in launchers:
                health, table = first_render(db, launcher, 0.0, Path(tmp) / f"{launcher}{i}a")
                _, later = first_render(db, launcher, open_after, Path(tmp) / f"{launcher}{i}b")
                _, again = first_render(db, launcher, open_after, Path(tmp) / f"{launcher}-kept")
                rows[launcher].append((health, health + table, later, again))
                print(f"  {launcher:10s} {health:7.2f}s {health + table:12.2f}s {later:14.2f}s "
                      f"{again:17.2f}s", flush=True)
    results = {launcher: [statistics.median(c) for c in zip(*r)] for launcher, r in rows.items()}
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    for launcher, (health, start, request, again) in results.items():
        print(f"{launcher:12s} {health:7.2f}s {start:12.2f}s {request:14.2f}s {again:17.2f}s"
              f"  (medians)")
    ok = results["runlake-ui"][2] <= 3.0
    print(f"first request -> runs table <= 3 s with runlake ui: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


def server_rss(db: Path, urls: list[str]) -> float:
    """GB resident in a real ``runlake ui`` (with its children) once Chromium loaded every
    url in turn (each until its script finished)."""
    import signal
    import socket
    import subprocess
    import tempfile
    import urllib.request

    import psutil

    from runlake.cli._ui import streamlit_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(streamlit_command(db, "127.0.0.1", port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_healthy(server, port, 0.1)
        with tempfile.TemporaryDirectory() as tmp:
            browser = Browser(Path(tmp))
            try:
                for url in urls:
                    browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/{url}")
                    time.sleep(1.0)
                    browser.until("!!document.querySelector('[data-test-script-state=\"notRunning\"]')"
                                  " && !document.querySelector('[data-testid=\"stSkeleton\"]')", 300)
            finally:
                browser.close()
        procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 1e9
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the real-server RSS")
    parser.add_argument("--first-render", action="store_true",
                        help="time to first render in headless Chromium instead")
    parser.add_argument("--db", type=Path, help="store for --first-render (default: the demo's)")
    parser.add_argument("--open-after", type=float, default=3.0,
                        help="seconds after health before the 'first request' visit")
    args = parser.parse_args(argv)
    if args.first_render:
        return first_render_main(args.db or demo_store(), args.repeat, args.open_after)

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import runlake.dashboard.data as data_mod
    from runlake.dashboard import APP, data
    from runlake.store import read_store

    db = CACHE / f"bench-{args.runs}x{args.steps}x{args.keys}.duckdb"
    built = build_store(db, args.runs, args.steps, args.keys)
    os.environ["RUNLAKE_DB"] = str(db)
    keys = key_names(args.keys)
    newest = [f"run{r:05d}" for r in range(args.runs - 1, -1, -1)]
    chart_runs = newest[: min(50, args.runs)]
    group_runs = newest[: min(1000, args.runs)]
    sections = ",".join(sorted({k.split("/")[0] for k in keys}))
    workspace = dict(runs=",".join(chart_runs), keys=",".join(keys), sections=sections,
                     refresh="off")
    grouped = dict(runs=",".join(group_runs), keys=keys[0], group="lr", refresh="off")

    def app(view: str, **params: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=600)
        at.query_params.update({"view": view, "refresh": "off", **params})
        return at

    def check(at: AppTest, what: str) -> AppTest:
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert at.get(what), f"{what} missing"
        return at

    def cold(view: str, what: str, **params: str):
        def run() -> None:
            st.cache_data.clear()
            st.cache_resource.clear()
            data._last.clear()
            check(app(view, **params).run(), what)
        return run

    warm_runs = check(app("runs").run(), "dataframe")

    def runs_warm() -> None:
        check(warm_runs.run(), "dataframe")

    def runs_sql() -> None:
        with read_store(db) as con:
            con.execute("SELECT * FROM runs ORDER BY started_at DESC").fetchall()

    def workspace_sql() -> None:
        ids = ", ".join(f"'{r}'" for r in chart_runs)
        ks = ", ".join(f"'{k}'" for k in keys)
        with read_store(db) as con:
            con.execute(f"""
                SELECT run_id, key, step * 500 // {args.steps} AS b, min(value), max(value),
                       arg_max(value, step) FROM metrics
                WHERE key IN ({ks}) AND run_id IN ({ids}) GROUP BY ALL""").fetchall()

    def tick() -> None:
        data.change_token(db)

    # store reads during a rerun with nothing new: every read opens the store through data
    reads = {"n": 0}
    real = data_mod.read_store

    def counting(*a, **k):
        reads["n"] += 1
        return real(*a, **k)

    idle = check(app("runs").run(), "dataframe")
    data_mod.read_store = counting
    try:
        idle.run()
    finally:
        data_mod.read_store = real

    rows = [
        ("Runs view, cold cache", cold("runs", "dataframe"), runs_sql, 1.0),
        ("Runs view, warm rerun (cached)", runs_warm, runs_sql, None),
        ("Runs view sorted by train/loss:min, cold", cold("runs", "dataframe", sort=keys[0] + ":min"),
         runs_sql, None),
        (f"Workspace: {len(keys)} panels x {len(chart_runs)} runs, cold",
         cold("charts", "vega_lite_chart", **workspace), workspace_sql, 2.0),
        (f"Grouped panel of {len(group_runs)} runs (group=lr), cold",
         cold("charts", "vega_lite_chart", **grouped), workspace_sql, 1.0),
        ("Hyperparameters view, 500 newest runs, cold", cold("params", "vega_lite_chart"),
         runs_sql, None),
        ("Idle tick: change_token(), nothing new", tick, runs_sql, 0.05),
    ]
    print(f"\nstore: {db} ({args.runs} runs x {args.steps} steps x {args.keys} keys = "
          f"{args.runs * args.steps * args.keys / 1e6:.0f}M points; "
          f"{'built in %.0f s' % built if built else 'reused'}); median of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'measurement':52s} {'median':>10s} {'baseline':>10s} {'ratio':>7s} {'target':>9s}")
    ok = True
    for name, fn, base, target in rows:
        t = median_time(fn, args.repeat)
        b = median_time(base, args.repeat)
        verdict = "" if target is None else ("ok" if t <= target else "MISSED")
        ok &= verdict != "MISSED"
        tgt = "" if target is None else f"<= {target * 1000:.0f}ms"
        print(f"{name:52s} {t * 1000:8.1f}ms {b * 1000:8.1f}ms {t / b:7.3f}x {tgt:>9s} {verdict}",
              flush=True)
    print(f"{'Store reads in a rerun with nothing new':52s} {reads['n']:>10d} {'':>10s} {'':>7s} "
          f"{'0':>9s} {'ok' if reads['n'] == 0 else 'MISSED'}")
    ok &= reads["n"] == 0
    if not args.no_memory:
        from urllib.parse import urlencode

        rss = server_rss(db, ["?view=runs&refresh=off",
                              "?" + urlencode({"view": "charts", **workspace}),
                              "?" + urlencode({"view": "charts", **grouped})])
        print(f"{'App server RSS after Runs, workspace, grouped panel':52s} {rss:8.2f}GB "
              f"{'':>10s} {'':>7s} {'<= 1 GB':>9s} {'ok' if rss <= 1.0 else 'MISSED'}")
        ok &= rss <= 1.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
