"""Lightning's ModelCheckpoint as the store sees it: every save, every deletion, late hparams."""

from __future__ import annotations

import hashlib
import json

import pytest

L = pytest.importorskip("lightning")

import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from runlake.lightning import RunlakeLogger  # noqa: E402
from runlake.schemas.errors import RunlakeWarning  # noqa: E402

VAL = [0.5, 0.3, 0.2]  # val/loss per epoch: each epoch a new best, replacing the previous


class _Scripted(L.LightningModule):
    """A tiny regressor whose validation loss follows VAL, so top-k decisions are known."""

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def on_train_start(self):
        self.logger.log_hyperparams({"late": 1})  # after the run started: a log event

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.tensor(VAL[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)  # 8 steps/epoch


def _fit(tmp_path, ckpt):
    root = tmp_path / "root"
    logger = RunlakeLogger("lit", "ck", root=root, console=False, system_interval=0)
    trainer = L.Trainer(max_epochs=3, logger=logger, callbacks=[ckpt], log_every_n_steps=2,
                        enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    with pytest.warns(RunlakeWarning, match="hyperparameters logged after"):
        trainer.fit(_Scripted(), _loader(), _loader())
    logger.experiment.finish()
    return root


def _rows(store_rows, root):
    rows = store_rows(root, "SELECT uri, step, sha256, tags, metrics FROM checkpoints ORDER BY ts")
    return [(uri.rsplit("/", 1)[-1], step, sha, tags, json.loads(m or "{}"))
            for uri, step, sha, tags, m in rows]


def _live(rows):
    """Per file, its newest row unless that row is a deletion: what should be on disk."""
    newest = {}
    for name, step, sha, tags, _ in rows:
        newest[name] = None if "deleted" in tags else sha
    return {name: sha for name, sha in newest.items() if sha is not None}


def _on_disk(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.ckpt")}


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_every_save_and_deletion_of_top_k_and_last_is_recorded(tmp_path, store_rows):
    """save_top_k=1 + save_last: last.ckpt once per save, each replaced best marked deleted."""
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val/loss", save_top_k=1, save_last=True)
    root = _fit(tmp_path, ckpt)
    rows = _rows(store_rows, root)
    saves = [(n, s, m.get("epoch")) for n, s, _, t, m in rows if "deleted" not in t]
    assert saves == [("epoch=0-step=8.ckpt", 8, 0), ("last.ckpt", 8, 0), ("epoch=1-step=16.ckpt", 16, 1),
                     ("last.ckpt", 16, 1), ("epoch=2-step=24.ckpt", 24, 2), ("last.ckpt", 24, 2)]
    lasts = [sha for n, _, sha, t, _ in rows if n == "last.ckpt"]
    assert len(set(lasts)) == 3  # three different files under one name
    names = dict.fromkeys(r[0] for r in rows if r[0].startswith("epoch="))
    best = {n: next(r for r in rows if r[0] == n) for n in names}  # each file's save row
    assert all(set(r[3]) == {"best", "top_k"} for r in best.values())
    assert [r[4]["val/loss"] for r in best.values()] == pytest.approx(VAL)
    deleted = [(n, s, sha) for n, s, sha, t, _ in rows if "deleted" in t]
    assert deleted == [(n, r[1], r[2]) for n, r in best.items()][:2]
    assert _live(rows) == _on_disk(tmp_path / "ck")
    [(level, logger, message)] = store_rows(
        root, "SELECT level, logger, message FROM logs WHERE message LIKE '%hyperparameters%'")
    assert (level, logger) == ("WARNING", "runlake.lightning") and '{"late": 1}' in message


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_deletion_after_the_last_save_is_seen_at_finalize(tmp_path, store_rows):
    """Without a monitor, save_top_k=1 removes the previous file after the final save too."""
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=1)
    root = _fit(tmp_path, ckpt)
    rows = _rows(store_rows, root)
    assert [(n, s) for n, s, _, t, _ in rows if "deleted" not in t] == [
        ("epoch=0-step=8.ckpt", 8), ("epoch=1-step=16.ckpt", 16), ("epoch=2-step=24.ckpt", 24)]
    assert [(n, s) for n, s, _, t, _ in rows if "deleted" in t] == [
        ("epoch=0-step=8.ckpt", 8), ("epoch=1-step=16.ckpt", 16)]
    assert _live(rows) == _on_disk(tmp_path / "ck")
