"""docs/scale-out.md's worked example, pasted whole into bash as a reader would.

Every fence marked ```` ```bash whole-script ```` in the docs is run verbatim as one script
(the documented-commands test skips them line by line), with two adjustments a reader's
machine does not need: the moto port is a free one (5055 may be taken on a shared CI
machine) and HOME is a temporary folder (the spool's default lies under ~/.cache).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from ._server import free_port

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
DOC_PORT = "5055"


def whole_scripts() -> list[tuple[str, str]]:
    found = []
    for doc in sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"^```bash[^\n]*\bwhole-script\b[^\n]*\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{doc.relative_to(REPO)}:{line}", m.group(1)))
    return found


SCRIPTS = whole_scripts()


def test_the_scale_out_doc_has_its_worked_example():
    assert any(where.startswith("docs/scale-out.md") for where, _ in SCRIPTS)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("where,script", SCRIPTS, ids=[w for w, _ in SCRIPTS])
def test_whole_script_runs(where, script, tmp_path):
    script = script.replace(DOC_PORT, str(free_port()))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RUNLAKE_"))}
    env["HOME"] = str(tmp_path)
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=580)
    finally:  # the script's background moto server, if it stopped before `kill $MOTO`
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shown = f"{where}\nstdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}"
    assert proc.returncode == 0, shown
    assert "Traceback" not in err + out, shown
    if where.startswith("docs/scale-out.md"):
        # what the doc says it prints: three finished runs, 4,000 points each, Ray's rows
        assert out.count("finished") >= 3, shown
        assert len(re.findall(r"\b4000\b", out)) >= 3, shown
        # the run ids decide the shards: together the two ingesters load all 12,000 points
        loaded = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) metric points", out)]
        assert sum(loaded[:2]) == 12_000, shown
        assert "shard-1-of-2" in out or "shard-2-of-2" in out, shown
