"""The default data folder: it never shadows the package, and a v0.1 ``./runlake`` store is
still found (with a notice) until the user moves it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from runlake.schemas.segments import DEFAULT_ROOT, LEGACY_ROOT, STORE_FILE

RUNLAKE = str(Path(sys.executable).with_name("runlake"))

SCRIPT = textwrap.dedent("""
    import runlake
    run = runlake.init(project="p", name="n")
    run.log({"loss": 1.0}, step=0)
    run.finish()
""")


def _clean_env(monkeypatch):
    monkeypatch.delenv("RUNLAKE_DIR", raising=False)
    monkeypatch.delenv("RUNLAKE_DB", raising=False)


def test_script_next_to_its_data_folder_keeps_importing_runlake(tmp_path, monkeypatch):
    """A training script run twice from its own folder (the data folder now beside it) imports
    the package both times: ``./runlake`` used to shadow it on the second run."""
    _clean_env(monkeypatch)
    (tmp_path / "train.py").write_text(SCRIPT)
    for _ in range(2):
        done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / DEFAULT_ROOT / "p").is_dir()
    assert not (tmp_path / LEGACY_ROOT).exists()
    ingest = subprocess.run([RUNLAKE, "ingest"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    assert (tmp_path / DEFAULT_ROOT / STORE_FILE).is_file()


def test_legacy_store_is_still_read_with_a_notice(tmp_path, monkeypatch):
    """An existing ``./runlake/runlake.duckdb`` (v0.1 default) is used, with a notice naming
    the new folder; once ``./runlake-data`` exists, it wins."""
    _clean_env(monkeypatch)
    (tmp_path / "train.py").write_text(SCRIPT.replace('runlake.init(', 'runlake.init(root="runlake", '))
    done = subprocess.run([sys.executable, "-P", "train.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert subprocess.run([RUNLAKE, "ingest", "--root", LEGACY_ROOT], cwd=tmp_path,
                          capture_output=True, timeout=120).returncode == 0
    runs = subprocess.run([RUNLAKE, "runs", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert runs.returncode == 0, runs.stderr
    assert '"n"' in runs.stdout
    assert f"./{LEGACY_ROOT}" in runs.stderr and DEFAULT_ROOT in runs.stderr
    (tmp_path / DEFAULT_ROOT).mkdir()
    fresh = subprocess.run([RUNLAKE, "runs"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    assert fresh.returncode == 2 and "runlake ingest" in fresh.stderr, fresh.stderr
