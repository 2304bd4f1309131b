"""SIGKILL of ingest mid-pass leaves no duplicates; one ingest per root at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from runlake.ingest import ingest
from runlake.ingest.lock import IngestLock
from runlake.schemas.errors import StoreBusyError

# The killed ingest: a real pass in a child process; each chunk's commit is followed by a
# pause (wrapped here, in the child only) so the SIGKILL reliably lands mid-pass.
_PASS = ("import sys, time; from pathlib import Path; from runlake.ingest import loader; "
         "from runlake.store import duck, locate, open_backend; "
         "from runlake.ingest.lock import IngestLock; root = Path(sys.argv[1]); "
         "real = duck.DuckBackend.commit; "
         "duck.DuckBackend.commit = lambda self, chunk: (real(self, chunk), time.sleep(0.1)); "
         "lock = IngestLock(root).__enter__(); "
         "loader.run_pass(root, open_backend(locate(root)), chunk_points=10_000)")


@pytest.mark.slow
def test_sigkill_during_a_pass_then_rerun_has_no_duplicates(seg_root, make_writer, query):
    """Kill -9 an ingest that is committing chunk after chunk; a re-run completes exactly once."""
    steps, keys = 20_000, 10
    for r in range(2):
        w = make_writer(f"run-{r}").start()
        for step in range(steps):
            w.metrics(step, {f"k{k}": step + k / 10 for k in range(keys)})
            if step % 2000 == 1999:
                w.flush()
        w.end().flush()
        w.seal()
    total = 2 * steps * keys
    db = seg_root / "runlake.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", _PASS, str(seg_root)])
    partial = 0
    while partial == 0 and proc.poll() is None:  # wait for the first chunk's commit
        time.sleep(0.01)
        if db.exists():
            partial = query(db, "SELECT count(*) FROM ingest_ledger")[0][0]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    partial = query(db, "SELECT count(*) FROM metrics")[0][0]
    assert 0 < partial < total, partial  # killed mid-pass, after some commits
    loaded = query(db, "SELECT coalesce(sum(events), 0) FROM ingest_ledger")[0][0]
    report = ingest(seg_root)
    assert report.points == total - partial
    assert query(db, "SELECT count(*), count(DISTINCT (run_id, step, key)) FROM metrics") == [
        (total, total)]
    assert query(db, "SELECT sum(events) FROM ingest_ledger")[0][0] == 2 * (steps + 2)
    assert loaded <= 2 * (steps + 2)


def test_second_ingest_is_refused_clearly(seg_root, make_writer):
    """While one ingest holds the root, another waits briefly then says who holds it."""
    make_writer().start().flush()
    with IngestLock(seg_root):
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="another `runlake ingest` is running") as err:
            ingest(seg_root)
        assert time.monotonic() - started >= 2.5
        assert str(os.getpid()) in str(err.value)
    assert ingest(seg_root).segments == 1


def test_lock_dies_with_its_process(seg_root):
    """A SIGKILLed lock holder never blocks the next ingest."""
    code = ("import sys, time; from pathlib import Path; from runlake.ingest.lock import IngestLock;"
            " IngestLock(Path(sys.argv[1])).__enter__(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(seg_root)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()
    proc.wait()
    assert ingest(seg_root).segments == 0
