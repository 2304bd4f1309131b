"""Console capture (emitter/capture.py): stdout/stderr teed into ``log`` events while live."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import pytest

import runlake
from runlake.emitter.capture import CAPTURE_ENV, TRUNCATED_CAUSE, capture_setting
from runlake.emitter.testing import capture, of_kind
from runlake.emitter.values import MAX_TEXT_CHARS
from runlake.schemas.errors import ConfigError, RunlakeWarning

QUIET = dict(console=False, system_interval=0, capture_logging=False)


@contextlib.contextmanager
def fake_terminal():
    """sys.stdout/sys.stderr as in-memory UTF-8 text streams (what the terminal would get),
    inside the test's body: pytest sets its own streams again between setup and call."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved


def _console(events, stream: str | None = None) -> list:
    wanted = ("console.stdout", "console.stderr") if stream is None else (f"console.{stream}",)
    return [e for e in of_kind(events, "log") if e.logger in wanted]


def _messages(events, stream: str | None = None) -> list[str]:
    return [e.message for e in _console(events, stream)]


def _script(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(code))
    return path


def _store_logs(root: Path) -> list[tuple]:
    from runlake.ingest import ingest
    from runlake.store import read_store

    ingest(root)
    with read_store(root=root) as con:
        logs = con.execute("SELECT logger, level, levelno, message, rank FROM logs "
                           "WHERE logger LIKE 'console.%' ORDER BY ts").fetchall()
        runs = con.execute("SELECT status FROM runs").fetchall()
    return logs, [r[0] for r in runs]


# -- real processes ---------------------------------------------------------------------------
TRAIN = """
import sys, time
import runlake
run = runlake.init("p", root=sys.argv[1], console=False, system_interval=0, flush_interval=0.05)
for step in range(3):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
    print(f"epoch {step} loss {1.0 / (step + 1):.3f}")
for pct in (0, 50, 100):  # a tqdm-style bar redrawn in place
    sys.stderr.write(f"\\rtrain: {pct:3d}%|" + "#" * (pct // 10))
    sys.stderr.flush()
sys.stderr.write("\\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"caf\\xe9 \\xff\\xfe bytes\\n")
sys.stdout.buffer.flush()
def explode():
    raise ValueError("bad batch 7")
explode()
"""


def test_real_script_lines_bar_bytes_and_traceback_reach_the_store(tmp_path):
    """A training script's prints, a \\r progress bar, non-UTF-8 bytes and the traceback of its
    uncaught exception: the terminal gets every byte unchanged, the store's logs table gets
    the lines (bar: its last state), the bytes with U+FFFD, the traceback whole as one ERROR
    row, and the run is failed."""
    root = tmp_path / "lake"
    proc = subprocess.run([sys.executable, str(_script(tmp_path, TRAIN)), str(root)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert b"epoch 2 loss 0.333\ncaf\xe9 \xff\xfe bytes\n" in proc.stdout  # unchanged
    assert b"\rtrain:  50%|#####\rtrain: 100%|##########\n" in proc.stderr
    assert b"ValueError: bad batch 7" in proc.stderr  # the interpreter still printed it
    logs, statuses = _store_logs(root)
    out = [m for lg, _, _, m, _ in logs if lg == "console.stdout"]
    assert out == ["epoch 0 loss 1.000", "epoch 1 loss 0.500", "epoch 2 loss 0.333",
                   "caf\ufffd \ufffd\ufffd bytes"]
    err = [(lvl, n, m) for lg, lvl, n, m, _ in logs if lg == "console.stderr"]
    assert err[0] == ("INFO", 20, "train: 100%|##########")
    assert len(err) == 2
    level, levelno, tb = err[1]
    assert (level, levelno) == ("ERROR", 40)
    assert tb.startswith("Traceback (most recent call last):\n")
    assert 'in explode\n    raise ValueError("bad batch 7")' in tb
    assert tb.endswith("ValueError: bad batch 7")
    assert statuses == ["failed"]


def test_sigkill_loses_only_lines_not_yet_drained(tmp_path):
    """Lines printed before the last drain survive a SIGKILL with no flush() or finish():
    the writer drains the console every flush interval on its own."""
    root = tmp_path / "lake"
    script = _script(tmp_path, """
        import sys, time
        import runlake
        run = runlake.init("p", root=sys.argv[1], console=False, system_interval=0,
                           flush_interval=0.05, heartbeat_interval=3600)
        print(run.dir, flush=True)
        for i in range(100):
            print(f"line {i}")
        sys.stdout.flush()
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE,
                            text=True)
    try:
        run_dir = Path(proc.stdout.readline().strip())
        from runlake.ingest import ingest
        from runlake.store import read_store

        deadline = time.monotonic() + 60
        seen: list[str] = []
        while time.monotonic() < deadline and "line 99" not in seen:
            time.sleep(0.1)
            ingest(root)
            with read_store(root=root) as con:
                seen = [r[0] for r in con.execute(
                    "SELECT message FROM logs WHERE logger = 'console.stdout' ORDER BY ts"
                ).fetchall()]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert seen == [str(run_dir)] + [f"line {i}" for i in range(100)]
    logs, statuses = _store_logs(root)
    assert [m for *_, m, _ in logs] == seen  # nothing else, nothing twice
    assert statuses != ["finished"]


def test_every_rank_captures_into_the_one_run(tmp_path):
    """Two ranks of one run each capture their own prints; the rank is in each row."""
    root = tmp_path / "lake"
    script = _script(tmp_path, """
        import os, sys, runlake
        run = runlake.init("p", root=sys.argv[1], run_id="r1", console=False, system_interval=0)
        print(f"hello from rank {os.environ['RANK']}")
        run.finish()
    """)
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
        subprocess.run([sys.executable, str(script), str(root)], env=env, check=True,
                       capture_output=True, timeout=120)
    logs, _ = _store_logs(root)
    assert sorted((m, r) for *_, m, r in logs) == [("hello from rank 0", 0),
                                                   ("hello from rank 1", 1)]


def test_fork_child_detaches(tmp_path):
    """In a forked child the streams are the originals again (nothing piles up unread), and
    the child's prints never reach the parent's run."""
    with fake_terminal() as streams:
        read_fd, write_fd = os.pipe()
        with capture() as events:
            run = runlake.init("p", **QUIET)
            print("parent before")
            pid = os.fork()
            if pid == 0:  # the child
                try:
                    print("child line")
                    report = {"stdout_restored": sys.stdout is streams[0],
                              "stderr_restored": sys.stderr is streams[1]}
                    os.write(write_fd, json.dumps(report).encode())
                finally:
                    os._exit(0)
            os.close(write_fd)
            report = json.loads(os.read(read_fd, 1000))
            os.waitpid(pid, 0)
            os.close(read_fd)
            print("parent after")
            run.finish()
        assert report == {"stdout_restored": True, "stderr_restored": True}
        assert _messages(events) == ["parent before", "parent after"]


    # -- in-process behaviour ----------------------------------------------------------------------
def test_tee_writes_through_and_finish_restores():
    """Every write reaches the original stream unchanged; finish() puts the original back."""
    with fake_terminal() as streams:
        out, err = streams
        with capture() as events:
            run = runlake.init("p", **QUIET)
            assert sys.stdout is not out and sys.stderr is not err
            print("one", "two", sep=" | ")
            sys.stdout.write("no newline yet ")
            sys.stdout.writelines(["and", " done\n"])
            print("to stderr", file=sys.stderr)
            print()  # an empty line: not recorded
            run.finish()
        assert sys.stdout is out and sys.stderr is err
        assert out.buffer.getvalue() == b"one | two\nno newline yet and done\n\n"
        assert err.buffer.getvalue() == b"to stderr\n"
        assert _messages(events, "stdout") == ["one | two", "no newline yet and done"]
        assert _messages(events, "stderr") == ["to stderr"]
        assert {(e.level, e.levelno) for e in _console(events)} == {("INFO", 20)}


def test_non_str_write_raises_like_the_original():
    """A write the stream refuses raises the original's error and captures nothing."""
    with fake_terminal() as streams:
        with capture() as events:
            run = runlake.init("p", **QUIET)
            with pytest.raises(TypeError):
                sys.stdout.write(b"bytes to a text stream")
            with pytest.raises(TypeError):
                sys.stderr.write(3)
            print(b"ok", file=sys.stderr)  # print() converts; write() never does
            run.finish()
        assert _messages(events) == ["b'ok'"]
        assert streams[0].buffer.getvalue() == b"" and streams[1].buffer.getvalue() == b"b'ok'\n"


def test_attributes_are_the_original_streams(tmp_path, monkeypatch):
    """flush, isatty, fileno, encoding, errors and the rest come from the original stream."""
    with fake_terminal() as streams:
        with open(tmp_path / "out.txt", "w", encoding="latin-1") as f:
            monkeypatch.setattr(sys, "stdout", f)
            with capture():
                run = runlake.init("p", **QUIET)
                tee = sys.stdout
                assert tee is not f
                assert tee.fileno() == f.fileno() and tee.isatty() == f.isatty()
                assert (tee.encoding, tee.errors, tee.name) == ("latin-1", f.errors, f.name)
                print("\xe9t\xe9", flush=True)
                assert (tmp_path / "out.txt").read_bytes() == b"\xe9t\xe9\n"  # flush reached f
                run.finish()


def test_buffer_bytes_are_captured_with_replacement():
    """Bytes written to .buffer are captured, decoded with errors='replace'; a UTF-8
    character split across two writes is decoded whole."""
    with fake_terminal() as streams:
        with capture() as events:
            run = runlake.init("p", **QUIET)
            sys.stdout.buffer.write(b"\xff\xfe ok \xc3")
            sys.stdout.buffer.write(b"\xa9\n")
            run.finish()
        assert streams[0].buffer.getvalue() == b"\xff\xfe ok \xc3\xa9\n"
        assert _messages(events) == ["\ufffd\ufffd ok \xe9"]


def test_carriage_returns_keep_the_last_redraw():
    """tqdm redraws its bar with \\r: a line keeps the text after its last \\r; \\r\\n is a
    line end; a bar redrawn many times without a newline does not pile up."""
    with fake_terminal():
        with capture() as events:
            run = runlake.init("p", **QUIET)
            for i in range(10_000):
                sys.stderr.write(f"\r{i:5d}/10000")
            run.flush()
            sys.stderr.write("\r10000/10000\n")
            sys.stdout.write("windows line\r\n")
            run.finish()
        assert _messages(events, "stderr") == ["10000/10000"]
        assert _messages(events, "stdout") == ["windows line"]


def test_printed_tracebacks_are_one_event_each():
    """A traceback printed while live (traceback.print_exc, chained causes included) is one
    ERROR event; the lines around it stay lines."""
    with fake_terminal():
        with capture() as events:
            run = runlake.init("p", **QUIET)
            print("before", file=sys.stderr)
            try:
                try:
                    {}["missing"]
                except KeyError as exc:
                    raise RuntimeError("lookup failed") from exc
            except RuntimeError:
                traceback.print_exc()
            print("after", file=sys.stderr)
            run.finish()
        logs = _console(events, "stderr")
        assert [e.level for e in logs] == ["INFO", "ERROR", "INFO"]
        tb = logs[1].message
        assert tb.startswith("Traceback (most recent call last):") and tb.endswith(
            "RuntimeError: lookup failed")
        assert "KeyError: 'missing'" in tb and "direct cause of the following exception" in tb
        assert tb.count("Traceback (most recent call last):") == 2


def test_exception_leaving_with_run_records_its_traceback():
    """The exception that ends the run (leaving `with run:`) is recorded whole, once."""
    with fake_terminal():
        with capture() as events:
            with pytest.raises(ZeroDivisionError):
                with runlake.init("p", **QUIET):
                    print("working")
                    1 / 0
        logs = _console(events)
        assert [(e.logger, e.level) for e in logs] == [("console.stdout", "INFO"),
                                                      ("console.stderr", "ERROR")]
        assert logs[1].message.startswith("Traceback") and logs[1].message.endswith(
            "ZeroDivisionError: division by zero")


def test_huge_lines_are_truncated_and_counted():
    """A line past the cap is cut (with the marker) and counted; so is an endless line with
    no newline, whose rest is dropped up to its newline."""
    with fake_terminal(), capture() as events:
        with pytest.warns(RunlakeWarning, match="longer than 65,536 characters were truncated"):
            run = runlake.init("p", **QUIET)
            print("x" * (MAX_TEXT_CHARS + 10))
            sys.stdout.write("y" * (MAX_TEXT_CHARS + 1))
            run.flush()
            sys.stdout.write("y" * 1000 + "\nnext\n")
            run.finish()
        messages = _messages(events)
        assert len(messages) == 3 and messages[2] == "next"
        assert messages[0].startswith("x" * MAX_TEXT_CHARS) and "10 more characters" in messages[0]
        assert messages[1].startswith("y" * MAX_TEXT_CHARS) and "1 more characters" in messages[1]
        assert run.dropped[TRUNCATED_CAUSE] == 2


def test_step_of_the_lines():
    """A line carries the run's step at the time it is drained (flush() drains)."""
    with fake_terminal():
        with capture() as events:
            run = runlake.init("p", **QUIET)
            run.log({"x": 1.0}, step=5)
            print("at five")
            run.flush()
            run.log({"x": 1.0}, step=9)
            print("at nine")
            run.finish()
        assert [(e.message, e.step) for e in _console(events)] == [("at five", 5), ("at nine", 9)]


def test_progress_block_and_writer_warnings_are_not_captured():
    """What the writer thread prints (the console progress block) reaches stderr but is
    never captured, so it cannot feed itself."""
    with fake_terminal() as streams:
        with capture() as events:
            run = runlake.init("p", console=0.01, system_interval=0, capture_logging=False,
                               flush_interval=0.01)
            deadline = time.monotonic() + 30
            while b"[runlake" not in streams[1].buffer.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            print("mine", file=sys.stderr)
            run.finish()
        assert b"[runlake" in streams[1].buffer.getvalue()
        assert _messages(events) == ["mine"]


def test_someone_replacing_the_stream_after_us_is_left_alone():
    """redirect_stdout (or pytest's capsys) after init(): their stream gets the text and we
    do not capture it; finish() inside their block leaves their stream in place, and ours,
    restored by them afterwards, is a plain pass-through."""
    with fake_terminal() as streams:
        out, _ = streams
        with capture() as events:
            run = runlake.init("p", **QUIET)
            tee = sys.stdout
            with contextlib.redirect_stdout(io.StringIO()) as theirs:
                print("redirected")
                run.finish()
                assert sys.stdout is theirs
            assert sys.stdout is tee  # they put back what they found
            print("after finish")
        assert theirs.getvalue() == "redirected\n"
        assert out.buffer.getvalue() == b"after finish\n"
        assert _messages(events) == []


def test_two_runs_lines_go_to_the_newest_live_run():
    """With two live runs a line lands in the newest one only (like logging records); after
    it finishes the older gets them again; the last finish restores the streams."""
    with fake_terminal() as streams:
        out, err = streams
        with capture() as events:
            a = runlake.init("p", "a", **QUIET)
            print("to a")
            b = runlake.init("p", "b", **QUIET)
            print("to b")
            b.finish()
            print("to a again")
            assert sys.stdout is not out
            a.finish()
        assert sys.stdout is out and sys.stderr is err
        by_run = {}
        for e in _console(events):
            by_run.setdefault(e.run_id, []).append(e.message)
        assert by_run == {a.id: ["to a", "to a again"], b.id: ["to b"]}


def test_opt_out(monkeypatch):
    """capture_console=False, or RUNLAKE_CAPTURE_CONSOLE=0, leaves the streams untouched;
    an explicit True wins over the variable; a bad value is a clear ConfigError."""
    with fake_terminal() as streams:
        with capture() as events:
            with runlake.init("p", capture_console=False, **QUIET):
                assert sys.stdout is streams[0]
                print("not captured")
            monkeypatch.setenv(CAPTURE_ENV, "0")
            with runlake.init("p", **QUIET):
                assert sys.stdout is streams[0]
            with runlake.init("p", capture_console=True, **QUIET):
                print("captured")
        assert _messages(events) == ["captured"]
        monkeypatch.setenv(CAPTURE_ENV, "maybe")
        with pytest.raises(ConfigError, match="RUNLAKE_CAPTURE_CONSOLE='maybe'.*set it to 0"):
            runlake.init("p", **QUIET)
        with pytest.raises(ConfigError, match="capture_console must be"):
            capture_setting("yes")
        assert capture_setting(None, {}) is True


def test_a_failure_at_the_end_never_costs_the_run_its_end():
    """If building the last events fails, stop() still restores the streams, reports the
    failure through the run's callback and returns nothing instead of raising."""
    from runlake.emitter.capture import ConsoleCapture

    def broken_envelope():
        raise RuntimeError("no envelope")

    failures = []
    with fake_terminal() as (out, err):
        cap = ConsoleCapture(broken_envelope, lambda: None,
                             lambda cause, message, n: failures.append((cause, message)))
        cap.start(None)
        print("a line")
        assert cap.stop("Traceback (most recent call last):\nValueError: x") == []
        assert sys.stdout is out and sys.stderr is err
    assert failures == [("console_error",
                         "console capture failed at the end: RuntimeError('no envelope')")]
