"""CheckpointManager: atomic saves, sha256, latest pointer, retention, safe loading."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import pytest
import torch

from runlake.emitter.testing import capture, of_kind
from runlake.schemas.errors import ConfigError, RunlakeError
from runlake.torch import CheckpointManager


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_and_load_latest_round_trip(tmp_path, make_model):
    """A saved state dict loads back equal; pointer and event carry the file's real sha256."""
    import runlake

    model = make_model()
    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        mgr = CheckpointManager(run, tmp_path / "ck")
        info = mgr.save(model, step=7, metrics={"val/loss": 0.5})
        run.finish()
    assert info.path.name == "ckpt-000000007.pt"
    assert info.sha256 == _sha(info.path) and info.bytes == info.path.stat().st_size
    pointer = json.loads((tmp_path / "ck" / "latest").read_text())
    assert pointer == {"file": info.path.name, "step": 7, "sha256": info.sha256, "bytes": info.bytes}
    state = mgr.load_latest()
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)
    [ev] = of_kind(events, "checkpoint")
    assert (ev.step, ev.sha256, ev.bytes, ev.metrics, sorted(ev.tags)) == (
        7, info.sha256, info.bytes, {"val/loss": 0.5}, ["best", "latest"])


@pytest.mark.parametrize(
    "keep_last,keep_best,mode,losses,expected",
    [
        (2, 1, "min", [5, 1, 4, 3, 2], [1, 3, 4]),       # best (step 1) survives, 2 newest kept
        (1, 1, "min", [1, 2, 3], [0, 2]),
        (1, 0, "min", [1, 2, 3], [2]),                   # no best kept: only the latest
        (2, 2, "max", [0.1, 0.9, 0.8, 0.2, 0.3], [1, 2, 3, 4]),
        (3, 1, "min", [1, 2], [0, 1]),                   # fewer than keep_last
        (1, 1, "min", [float("nan"), 3, 2], [2]),        # NaN never ranks as best
    ],
)
def test_retention_keeps_newest_and_best(tmp_path, keep_last, keep_best, mode, losses, expected):
    """Retention keeps exactly the keep_last newest plus keep_best best, deleting the rest."""
    mgr = CheckpointManager(None, tmp_path, keep_last=keep_last, keep_best=keep_best, mode=mode)
    for step, loss in enumerate(losses):
        mgr.save({"w": torch.tensor([float(step)])}, step, {"val/loss": loss})
    files = sorted(p.name for p in tmp_path.glob("ckpt-*.pt"))
    assert files == [f"ckpt-{s:09d}.pt" for s in expected]
    assert [c.step for c in mgr.checkpoints] == expected
    assert mgr.latest().step == len(losses) - 1


def test_best_survives_restart_and_load_best(tmp_path):
    """A new manager over the same dir keeps ranking with the saved manifest."""
    mgr = CheckpointManager(None, tmp_path, keep_last=1, keep_best=1)
    mgr.save({"s": torch.tensor(0.0)}, 0, {"val/loss": 0.1})
    mgr.save({"s": torch.tensor(1.0)}, 1, {"val/loss": 0.5})
    again = CheckpointManager(None, tmp_path, keep_last=1, keep_best=1)
    again.save({"s": torch.tensor(2.0)}, 2, {"val/loss": 0.4})
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-000000000.pt", "ckpt-000000002.pt"]
    assert again.load_best()["s"].item() == 0.0
    assert again.load_latest()["s"].item() == 2.0


def test_load_latest_is_none_on_fresh_dir(tmp_path):
    """Resume code can call load_latest() unconditionally: None when nothing was saved."""
    assert CheckpointManager(None, tmp_path / "new").load_latest() is None


def test_tampered_checkpoint_is_refused(tmp_path):
    """A checkpoint whose bytes changed after saving fails the sha256 check with a clear error."""
    mgr = CheckpointManager(None, tmp_path)
    info = mgr.save({"w": torch.zeros(10)}, 1)
    data = bytearray(info.path.read_bytes())
    data[-30] ^= 0xFF
    info.path.write_bytes(bytes(data))
    with pytest.raises(RunlakeError, match="sha256"):
        mgr.load_latest()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    """Loading never unpickles arbitrary objects unless weights_only=False is passed."""
    mgr = CheckpointManager(None, tmp_path)
    mgr.save({"w": torch.zeros(1), "evil": _Evil()}, 1)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        mgr.load_latest()


def test_non_zero_rank_does_not_write(tmp_path):
    """On ranks other than 0, save() is a no-op returning None and creates nothing."""

    class Rank1:
        rank = 1

    mgr = CheckpointManager(Rank1(), tmp_path / "ck")
    assert mgr.save({"w": torch.zeros(1)}, 1) is None
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("kwargs", [{"keep_last": 0}, {"keep_best": -1}, {"mode": "avg"}])
def test_bad_retention_arguments(tmp_path, kwargs):
    """Invalid retention settings raise ConfigError naming the argument."""
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        CheckpointManager(None, tmp_path, **kwargs)


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path, script):
    """Temp files from a dead writer are deleted on open; a live writer's are kept."""
    dead = script("_noop.py")  # a pid that has exited
    pid_dead = int(dead.stdout.strip())
    (tmp_path / f".ckpt-000000001.pt.tmp-{pid_dead}-abcd1234").write_bytes(b"partial")
    live = tmp_path / f".ckpt-000000002.pt.tmp-1-abcd1234"  # pid 1 is alive
    live.write_bytes(b"partial")
    CheckpointManager(None, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [live.name]


@pytest.mark.slow
def test_sigkill_during_save_never_leaves_a_broken_latest(tmp_path, script):
    """SIGKILL at random moments of a save loop: `latest` always names a complete file."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    for kill in range(3):
        proc = subprocess.Popen([sys.executable, str(here / "_ckpt_saver.py"), str(tmp_path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(0.4 + 0.37 * kill)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        pointer = json.loads((tmp_path / "latest").read_text())
        target = tmp_path / pointer["file"]
        assert _sha(target) == pointer["sha256"]
        # every file under a final name is complete and loads
        for path in tmp_path.glob("ckpt-*.pt"):
            state = torch.load(path, weights_only=True)
            assert state["big"].shape == (1_000_000,)
        # the next manager opens fine and resumes from the pointer
        mgr = CheckpointManager(None, tmp_path, keep_last=2)
        assert mgr.load_latest()["step"] == pointer["step"]
        assert not list(tmp_path.glob(".*.tmp-*"))  # the killed writer's temp file is gone
