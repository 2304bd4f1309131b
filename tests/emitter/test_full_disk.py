"""A full disk mid-run: training goes on, the drop is counted and warned once, the
segments keep whole frames only, and what was written before and after loads exactly."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

JOB = Path(__file__).with_name("_full_disk_job.py")


def _tmpfs_command(mnt: Path, out: Path) -> list[str]:
    """Mount a 1 MiB tmpfs in a private mount namespace, train on it, copy the root out."""
    script = ('set -e; mount -t tmpfs -o size=1m tmpfs "$1"; '
              '"$4" "$5" tmpfs "$1/lake" "$1/filler" > "$2/summary.json" 2> "$2/stderr.txt"; '
              'cp -a "$1/lake" "$2/lake"')
    userns = [] if os.geteuid() == 0 else ["-U", "-r"]
    return ["unshare", *userns, "-m", "bash", "-c", script, "_", str(mnt), str(out), "",
            sys.executable, str(JOB)]


def _can_mount_tmpfs(tmp: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    mnt = tmp / "probe"
    mnt.mkdir()
    userns = [] if os.geteuid() == 0 else ["-U", "-r"]
    probe = subprocess.run(["unshare", *userns, "-m", "mount", "-t", "tmpfs", "tmpfs", str(mnt)],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("mode", ["tmpfs", "rlimit"])
def test_full_disk_mid_run_loses_only_what_could_not_be_written(tmp_path, mode):
    from runlake.ingest import ingest
    from runlake.store import read_store

    out = tmp_path / "out"
    out.mkdir()
    if mode == "tmpfs":
        if not _can_mount_tmpfs(tmp_path):
            pytest.skip("cannot mount a tmpfs here (no root and no user namespaces)")
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        done = subprocess.run(_tmpfs_command(mnt, out), capture_output=True, text=True, timeout=120)
        stderr = (out / "stderr.txt").read_text() if (out / "stderr.txt").exists() else ""
        assert done.returncode == 0, done.stderr + stderr
        summary = json.loads((out / "summary.json").read_text())
    else:
        done = subprocess.run([sys.executable, str(JOB), "rlimit", str(out / "lake"), "-"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        stderr, summary = done.stderr, json.loads(done.stdout)

    assert summary["ok"] == [True, False, True]  # the middle flush could not be written
    assert summary["dropped"]["io_error"] >= 100  # its 100 metrics events, counted
    assert stderr.count("runlake: cannot write events") == 1, stderr  # warned once

    # the failed frame was cut back: one segment, sealed, whole frames only
    segments = sorted(p.name for p in (out / "lake").glob("disk/*/*/*"))
    assert segments == ["000000.jsonl.zst"], segments
    report = ingest(out / "lake")
    assert not report.problems, report.problems  # no torn frame between good ones
    with read_store(out / "lake" / "runlake.duckdb") as con:
        rows = con.execute("SELECT step, key, value FROM metrics").fetchall()
        status, dropped = con.execute(
            "SELECT r.status, w.dropped FROM runs r JOIN writers w USING (run_id)").fetchone()
    expected = {(s, f"k{k}", math.sin(s * 1.1 + k)) for s in [*range(100), *range(200, 300)]
                for k in range(10)}
    assert set(rows) == expected and len(rows) == len(expected)
    assert status == "finished"
    assert json.loads(dropped)["io_error"] == summary["dropped"]["io_error"]
