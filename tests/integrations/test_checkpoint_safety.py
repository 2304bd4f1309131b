"""CheckpointManager trusts nothing it reads: names escaping the folder, links, other runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import warnings

import pytest
import torch

import runlake
from runlake.emitter.testing import capture, of_kind
from runlake.schemas.errors import ConfigError, RunlakeError, RunlakeWarning
from runlake.torch import CheckpointManager


def _init(tmp_path, name="r", **kw):
    return runlake.init("ck", name, root=tmp_path / "root", console=False, system_interval=0,
                        capture_logging=False, online_checks=False, **kw)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def victim(tmp_path):
    """A file outside the checkpoint folder that nothing may delete or load."""
    path = tmp_path / "victim"
    path.write_bytes(b"precious")
    return path


def _escape_names(tmp_path, victim):
    ck = tmp_path / "ck"
    os.symlink(victim, ck / "ckpt-000000000.pt")  # a link named like a checkpoint
    return {
        "dotdot": "../victim",
        "absolute": str(victim),
        "subfolder": "sub/ckpt-000000000.pt",
        "symlink": "ckpt-000000000.pt",
    }


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "subfolder", "symlink"])
def test_manifest_naming_a_file_outside_the_folder_is_refused(tmp_path, victim, kind):
    """Retention never deletes (and open never hashes) a manifest entry outside the folder."""
    mgr = CheckpointManager(None, tmp_path / "ck", keep_last=1, keep_best=0)
    mgr.save({"w": torch.zeros(2)}, 5)
    (tmp_path / "ck" / "sub").mkdir()
    name = _escape_names(tmp_path, victim)[kind]
    entry = {"file": name, "step": 0, "sha256": _sha(victim), "bytes": victim.stat().st_size, "metrics": {}}
    _edit(tmp_path / "ck" / "manifest.json", lambda m: m["checkpoints"].insert(0, entry))
    with pytest.raises(RunlakeError, match="refusing"):
        mgr.save({"w": torch.ones(2)}, 6)  # retention would delete the older entry
    with pytest.raises(RunlakeError, match="refusing"):
        CheckpointManager(None, tmp_path / "ck", keep_last=1, keep_best=0)
    assert victim.read_bytes() == b"precious"
    assert not list((tmp_path / "ck").glob("ckpt-000000006.pt"))


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_latest_pointer_outside_the_folder_is_not_loaded(tmp_path, kind):
    """A `latest` naming another folder's checkpoint (valid sha256 and all) is refused."""
    other = CheckpointManager(None, tmp_path / "other")
    theirs = other.save({"w": torch.full((3,), 7.0)}, 0)
    mine = CheckpointManager(None, tmp_path / "ck")
    mine.save({"w": torch.zeros(3)}, 1)
    name = {"dotdot": "../other/ckpt-000000000.pt", "absolute": str(theirs.path),
            "symlink": "ckpt-000000009.pt"}[kind]
    if kind == "symlink":
        os.symlink(theirs.path, tmp_path / "ck" / name)
    _edit(tmp_path / "ck" / "latest", lambda p: p.update(file=name, sha256=theirs.sha256, step=9))
    with pytest.raises(RunlakeError, match="refusing"):
        mine.load_latest()


def test_symlinked_manifest_and_special_files_are_refused(tmp_path):
    """manifest.json as a link is refused; a FIFO named like a checkpoint is ignored, never read."""
    ck = tmp_path / "ck"
    CheckpointManager(None, ck).save({"w": torch.zeros(1)}, 0)
    os.mkfifo(ck / "ckpt-000000007.pt")
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("opening the folder blocked on a FIFO"))
    signal.alarm(20)
    try:
        with pytest.warns(RunlakeWarning, match="not a regular file"):
            mgr = CheckpointManager(None, ck)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert [c.step for c in mgr.checkpoints] == [0]
    elsewhere = tmp_path / "elsewhere.json"
    os.replace(ck / "manifest.json", elsewhere)
    os.symlink(elsewhere, ck / "manifest.json")
    with pytest.raises(RunlakeError, match="symbolic link"):
        mgr.checkpoints


@pytest.mark.parametrize("manifest", [
    [], {"checkpoints": {}}, {"checkpoints": ["ckpt-000000000.pt"]}, {"run_id": 5, "checkpoints": []},
    {"checkpoints": [{"file": "ckpt-000000000.pt", "step": "0", "sha256": "0" * 64}]},
    {"checkpoints": [{"file": "ckpt-000000000.pt", "step": 0, "sha256": "x"}]},
])
def test_malformed_manifest_is_a_clear_error(tmp_path, manifest):
    """A manifest of the wrong shape is a RunlakeError saying how to fix it, not a KeyError."""
    ck = tmp_path / "ck"
    CheckpointManager(None, ck).save({"w": torch.zeros(1)}, 0)
    (ck / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunlakeError, match="delete it to rebuild"):
        CheckpointManager(None, ck)


def test_negative_step_is_refused(tmp_path):
    """A negative step would name a file the manager could never read back."""
    with pytest.raises(ConfigError, match="step"):
        CheckpointManager(None, tmp_path).save({"w": torch.zeros(1)}, -1)


def test_manifest_records_the_owning_run(tmp_path):
    """The manifest names the run (id, name, project) that owns the folder, from the first open."""
    run = _init(tmp_path, "owner")
    CheckpointManager(run, tmp_path / "ck")
    manifest = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    assert (manifest["run_id"], manifest["run_name"], manifest["project"]) == (run.id, "owner", "ck")
    run.finish()


def test_fresh_run_on_another_runs_folder_is_refused_resume_and_take_over_work(tmp_path, make_model):
    """Another run's folder: refused; resuming that run loads it; take_over=True adopts it."""
    a = _init(tmp_path, "a")
    trained = make_model(seed=1)
    CheckpointManager(a, tmp_path / "ck").save(trained, 4)
    a.finish()
    b = _init(tmp_path, "b")
    with pytest.raises(RunlakeError, match=f"belongs to run {a.id}.*take_over=True"):
        CheckpointManager(b, tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "manifest.json").read_text())["run_id"] == a.id
    with pytest.warns(RunlakeWarning, match="takes over"):
        taken = CheckpointManager(b, tmp_path / "ck", take_over=True)
    fresh = make_model(seed=2)
    fresh.load_state_dict(taken.load_latest())
    assert all(torch.equal(p, q) for p, q in zip(fresh.parameters(), trained.parameters()))
    assert json.loads((tmp_path / "ck" / "manifest.json").read_text())["run_id"] == b.id
    b.finish()
    c = _init(tmp_path, "c", resume=b.id)  # a resume is the same run: no refusal, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunlakeWarning)
        assert CheckpointManager(c, tmp_path / "ck").latest().step == 4
    c.finish()


def test_two_live_runs_sharing_a_folder_never_clobber_each_other(tmp_path):
    """The second run is refused at open; after a take-over the first one's save is refused."""
    a, b = _init(tmp_path, "a"), _init(tmp_path, "b")
    mine = CheckpointManager(a, tmp_path / "ck")
    with pytest.raises(RunlakeError, match=f"belongs to run {a.id}"):
        CheckpointManager(b, tmp_path / "ck")
    with pytest.warns(RunlakeWarning):
        theirs = CheckpointManager(b, tmp_path / "ck", take_over=True)
    info = theirs.save({"w": torch.ones(1)}, 3)
    with pytest.raises(RunlakeError, match=f"took it over.*step 3 was not saved"):
        mine.save({"w": torch.zeros(1)}, 3)
    assert _sha(info.path) == info.sha256 and theirs.load_latest()["w"].item() == 1.0
    assert not list((tmp_path / "ck").glob(".*tmp*"))
    a.finish()
    b.finish()


def test_unowned_folder_with_checkpoints_warns_once_then_is_owned(tmp_path):
    """Checkpoints saved with run=None (or by an older runlake) are adopted with a warning."""
    CheckpointManager(None, tmp_path / "ck").save({"w": torch.zeros(1)}, 0)
    run = _init(tmp_path)
    with pytest.warns(RunlakeWarning, match="recorded for no run"):
        CheckpointManager(run, tmp_path / "ck")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunlakeWarning)
        CheckpointManager(run, tmp_path / "ck")
    run.finish()


def test_other_ranks_check_the_owner_too(tmp_path):
    """A rank other than 0 of a different run is refused as well (it would load the weights)."""
    a = _init(tmp_path, "a")
    CheckpointManager(a, tmp_path / "ck")

    class Rank1:
        id, name, rank = "someone-else", "x", 1

    with pytest.raises(RunlakeError, match="belongs to run"):
        CheckpointManager(Rank1(), tmp_path / "ck")
    a.finish()


def test_retention_deletions_are_recorded(tmp_path):
    """Each file retention deletes gets a `checkpoint` event tagged `deleted` (its sha256)."""
    with capture() as events:
        run = _init(tmp_path)
        mgr = CheckpointManager(run, tmp_path / "ck", keep_last=1, keep_best=0)
        saved = [mgr.save({"w": torch.full((1,), float(s))}, s) for s in range(3)]
        run.finish()
    cks = of_kind(events, "checkpoint")
    deleted = [(e.step, e.sha256, e.uri) for e in cks if "deleted" in e.tags]
    assert deleted == [(s.step, s.sha256, str(s.path.resolve())) for s in saved[:2]]
    assert [e.step for e in cks if "deleted" not in e.tags] == [0, 1, 2]


def test_deletion_marks_are_not_listed_as_checkpoints_in_lineage(tmp_path, store_rows):
    """`lineage item` lists each saved checkpoint once, not again for its deletion mark."""
    from runlake.analysis import item_runs
    from runlake.store import read_store

    run = _init(tmp_path)
    run.log_data(["a"], step=0)
    mgr = CheckpointManager(run, tmp_path / "ck", keep_last=1, keep_best=0)
    for step in (1, 2):
        mgr.save({"w": torch.zeros(1)}, step)
    run.finish()
    assert store_rows(tmp_path / "root", "SELECT count(*) FROM checkpoints") == [(3,)]
    with read_store(tmp_path / "root" / "runlake.duckdb") as con:
        [listed] = item_runs(con, "a")["checkpoints"].to_list()
    assert [c["step"] for c in listed] == [1, 2]
