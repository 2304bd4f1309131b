"""Every `runlake ...` command that README.md, docs/*.md (fenced shell blocks) and the demo's
"Try next" block show runs as a subprocess against a real demo store: exit code 0, no
traceback.

The commands are read from the docs when the tests are collected, so a command added to a
doc is tested without touching this file. They run verbatim except for the named
placeholders in :data:`RUN_PLACEHOLDERS` and the adjustments in :func:`_adjust` (each says
why); a placeholder this file does not know fails its test with the command's own error,
which is the signal to add it here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

sys.path.insert(0, str(Path(__file__).parent))
from _foreign_stores import write_foreign_stores  # noqa: E402  (the stores docs/migrate.md imports)

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
RUNLAKE = str(Path(sys.executable).with_name("runlake"))

# Placeholder -> (index into the demo's runs, by "id" or by "name"). The README's RUN/RUN1..
# are ids (what the demo prints); the docs' example names are resolved by name.
RUN_PLACEHOLDERS = {
    "RUN": (0, "id"), "RUN1": (0, "id"), "RUN2": (1, "id"), "RUN3": (2, "id"),
    "RUN_A": (0, "id"), "RUN_B": (1, "id"),
    "my-run": (3, "name"), "run-a": (0, "name"), "run-b": (1, "name"), "run-c": (2, "name"),
    "sweep-lr1e-3-s0": (0, "name"), "sweep-lr1e-3-s1": (1, "name"), "sweep-lr3e-3-s0": (2, "name"),
}
OPTIONAL_REPEAT = "[RUN...]"  # usage notation for "more runs may follow": dropped
# Commands that change the store run after the read-only ones (an import adds runs whose
# names would make the name placeholders ambiguous).
MUTATING = ("import",)


WHOLE_SCRIPT = "whole-script"
"""A fence whose info string says this (```` ```bash whole-script ````) is a script meant to
be pasted whole (it starts its own servers): tests/s3/test_scaleout_example.py runs it
verbatim as one script, so its lines are not run one by one here."""


def _fences(text: str):
    """(first line number, language, body) of each fenced block but whole scripts."""
    for m in re.finditer(r"^```([\w-]*)([^\n]*)\n(.*?)^```", text, re.S | re.M):
        if WHOLE_SCRIPT in m.group(2).split():
            continue
        yield text.count("\n", 0, m.start(3)) + 1, m.group(1).lower(), m.group(3)


def documented_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` for every ``runlake`` command line in the docs' shell blocks."""
    found = []
    for doc in DOCS:
        for first, lang, body in _fences(doc.read_text(encoding="utf-8")):
            if lang not in SHELL_FENCES:
                continue
            lines = body.replace("\\\n", " ").splitlines()
            for offset, line in enumerate(lines):
                line = re.sub(r"^\s*\$\s+", "", line)
                try:
                    argv = shlex.split(line, comments=True)
                except ValueError:
                    continue  # not shell (a diagram or prose inside an untagged fence)
                if argv[-1:] == ["&"]:
                    argv = argv[:-1]  # "run in the background": the watch case below
                if argv[:1] == ["runlake"]:
                    found.append((f"{doc.relative_to(REPO)}:{first + offset}", argv))
    return sorted(found, key=lambda c: c[1][1:2] in [[m] for m in MUTATING])


DOC_COMMANDS = documented_commands()
UI = [c for c in DOC_COMMANDS if c[1][1:2] == ["ui"]]
OTHER = [c for c in DOC_COMMANDS if c[1][1:2] != ["ui"]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`runlake demo` in an empty folder, as a user runs it; its output and its runs."""
    cwd = tmp_path_factory.mktemp("documented")
    done = subprocess.run([RUNLAKE, "demo"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=_env())
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    listed = subprocess.run([RUNLAKE, "runs", "--json", "--limit", "0"], cwd=cwd,
                            capture_output=True, text=True, timeout=60, env=_env())
    assert listed.returncode == 0, listed.stderr
    runs = sorted(json.loads(listed.stdout), key=lambda r: (r["started_at"], r["run_id"]))
    # The TensorBoard logdir the docs import from, written by runlake's own export.
    first = runs[0]["run_id"]
    made = subprocess.run([RUNLAKE, "export", "tensorboard", first, "-o", "tb_logs"], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=_env())
    assert made.returncode == 0, made.stderr
    (cwd / "runs").mkdir()  # the docs' `--root runs/`: a folder no run has written to yet
    write_foreign_stores(cwd)  # docs/migrate.md imports ./mlruns and trackio/my-project.db
    return {"cwd": cwd, "stdout": done.stdout, "runs": runs}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLAKE_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint_step(demo, run_ref: str) -> str:
    """A checkpoint step the run really has (the docs' 2000 is an example value)."""
    done = subprocess.run([RUNLAKE, "sql", "SELECT r.run_id, r.name, c.step FROM checkpoints c "
                           "JOIN runs r USING (run_id) ORDER BY c.step", "--json"],
                          cwd=demo["cwd"], capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 0, done.stderr
    steps = [r["step"] for r in json.loads(done.stdout) if run_ref in (r["run_id"], r["name"])]
    assert steps, f"run {run_ref} has no checkpoints in the demo store"
    return str(steps[len(steps) // 2])


def _adjust(demo, argv: list[str]) -> list[str]:
    """The documented argv with placeholders filled in; every other change is listed here."""
    out = []
    for token in argv:
        if token == OPTIONAL_REPEAT:
            continue
        if token in RUN_PLACEHOLDERS:
            index, field = RUN_PLACEHOLDERS[token]
            run = demo["runs"][index % len(demo["runs"])]
            token = run["run_id"] if field == "id" else run["name"]
        out.append(token)
    if out[1:3] == ["lineage", "run"] and "--checkpoint" in out:
        # An example step number, not a placeholder: use a checkpoint the run has.
        i = out.index("--checkpoint")
        out[i + 1] = _checkpoint_step(demo, out[3])
    if out[1] == "ui":
        # Several dashboards start at once and other tests may hold 8501: a free port each.
        if "--port" in out:
            i = out.index("--port")
            out[i + 1] = str(_free_port())
        else:
            out += ["--port", str(_free_port())]
    return [RUNLAKE, *out[1:]]


def _long_running(argv: list[str]) -> bool:
    """Commands documented to run until Ctrl-C."""
    return "--watch" in argv or "--follow" in argv or "-f" in argv[2:]


def _writes(argv: list[str]) -> bool:
    """Commands that open the store for writing: they run one at a time."""
    return argv[1] in ("ingest", "import") or (argv[1] == "anomalies" and "--refresh" in argv)


def _idle(pid: int) -> bool:
    """The process's main thread is asleep in a timed wait (its poll loop), per /proc."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return state == "S" and ("sleep" in wchan or "futex" in wchan)


def _interrupt_when_idle(proc: subprocess.Popen, limit: float = 60) -> None:
    """Press Ctrl-C (SIGINT) once the command sits in its poll loop: asleep for 0.6 s in a
    row, so the interrupt does not land in the middle of its imports."""
    deadline, quiet_since = time.monotonic() + limit, None
    while time.monotonic() < deadline and proc.poll() is None:
        if _idle(proc.pid):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 0.6:
                break
        else:
            quiet_since = None
        time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)


def _execute(demo, argv: list[str]) -> tuple[int, str, str]:
    """Run one command to its end (Ctrl-C for the long-running ones): (code, stdout, stderr).

    A long-running command must still be running when Ctrl-C comes and then exit 0 (or
    130, the shell's code for an interrupted command).
    """
    cwd = demo["cwd"]
    if not _long_running(argv):
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180, env=_env())
        return done.returncode, done.stdout, done.stderr
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        _interrupt_when_idle(proc)
        early = proc.poll() is not None
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if early:
        return proc.returncode or 1, out, "exited before Ctrl-C\n" + err
    return 0 if proc.returncode == 130 else proc.returncode, out, err


@pytest.fixture(scope="module")
def results(demo):
    """Every documented command and every "Try next" command but the dashboards, run once:
    store writers one at a time, then the readers four at a time, then the commands that
    run until Ctrl-C, then the import (it adds runs). ``where -> (argv, code, out, err)``."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [(w, _adjust(demo, a)) for w, a in OTHER]
    cases += [(f"demo Try next #{i}", [RUNLAKE, *a[1:]])
              for i, a in enumerate(_try_next(demo)) if a[1] != "ui"]
    mutating = [c for c in cases if c[1][1] in MUTATING]
    long = [c for c in cases if _long_running(c[1]) and c not in mutating]
    writers = [c for c in cases if _writes(c[1]) and c not in mutating and c not in long]
    readers = [c for c in cases if c not in mutating + long + writers]
    out = {}
    for where, argv in writers:
        out[where] = (argv, *_execute(demo, argv))
    with ThreadPoolExecutor(4) as pool:
        for (where, argv), res in zip(readers, pool.map(lambda c: _execute(demo, c[1]), readers)):
            out[where] = (argv, *res)
    for where, argv in long + mutating:
        out[where] = (argv, *_execute(demo, argv))
    return out


def _check(where: str, argv: list[str], code: int, out: str, err: str) -> None:
    shown = f"{where}: {shlex.join(argv)}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"
    assert code == 0, shown
    assert "Traceback" not in err and "Traceback" not in out, shown


def test_the_docs_and_the_demo_show_commands(demo):
    """The parser finds the documented commands (a parser that found none would pass all)."""
    subcommands = {argv[1] for _, argv in DOC_COMMANDS}
    assert {"ingest", "runs", "sql", "compare", "lineage", "report", "ui", "export"} <= subcommands
    assert len(_try_next(demo)) >= 6


def _try_next(demo) -> list[list[str]]:
    """The commands of the demo's "Try next" block, program name replaced by this venv's."""
    block = demo["stdout"].split("Try next:", 1)[1]
    commands = []
    for line in block.splitlines():
        if line.startswith("  ") and line.strip():
            argv = shlex.split(line)
            commands.append(["runlake", *argv[1:]])
    return commands


def test_demo_try_next_commands_run(demo, results):
    """Every command the demo prints under "Try next" works as printed (its `ui` is
    started and stopped with the documented dashboards)."""
    ran = [k for k in results if k.startswith("demo Try next")]
    assert len(ran) == len([a for a in _try_next(demo) if a[1] != "ui"])
    for where in ran:
        _check(where, *results[where])


@pytest.mark.parametrize("where,argv", OTHER, ids=[w for w, _ in OTHER])
def test_documented_command_runs(results, where, argv):
    """A command shown in the docs runs (exit 0, no traceback)."""
    _check(where, *results[where])


def test_documented_dashboards_start(demo):
    """Each documented `runlake ui` (and the demo's) serves the dashboard: started together,
    each answers Streamlit's health check, then Ctrl-C stops it cleanly."""
    cases = [(w, _adjust(demo, a)) for w, a in UI]
    cases += [("demo Try next", _adjust(demo, a)) for a in _try_next(demo) if a[1] == "ui"]
    assert cases
    procs = [(w, a, subprocess.Popen(a, cwd=demo["cwd"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env()))
             for w, a in cases]
    try:
        deadline = time.monotonic() + 120
        for where, argv, proc in procs:
            url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/_stcore/health"
            while True:
                assert proc.poll() is None, f"{where}: {shlex.join(argv)} exited: {proc.communicate()}"
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{where}: {shlex.join(argv)} never served"
                time.sleep(0.3)
        results = []
        for where, argv, proc in procs:
            proc.send_signal(signal.SIGINT)
        for where, argv, proc in procs:
            out, err = proc.communicate(timeout=60)
            results.append((where, argv, proc.returncode, out, err))
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for where, argv, code, out, err in results:
        _check(where, argv, 0 if code in (130, -signal.SIGINT) else code, out, err)
