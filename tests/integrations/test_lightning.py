"""RunlakeLogger + RunlakeProgress in a real (tiny, CPU) Lightning fit."""

from __future__ import annotations

import pytest

L = pytest.importorskip("lightning")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from runlake.lightning import RunlakeLogger, RunlakeProgress  # noqa: E402


class _Regressor(L.LightningModule):
    def __init__(self, lr: float = 0.05, width: int = 8):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_fit_records_metrics_hparams_checkpoints_and_progress(tmp_path, store_rows):
    """A fit produces one run: hparams as config, metrics at global steps, checkpoints, perf."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    root = tmp_path / "root"
    logger = RunlakeLogger("lit", "tiny", root=root, tags=["lightning"], console=False, system_interval=0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val/loss", save_last=True)
    trainer = L.Trainer(max_epochs=2, logger=logger, callbacks=[ckpt, RunlakeProgress(every=4)],
                        log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    trainer.fit(_Regressor(), _loader(), _loader())
    run = logger.experiment
    assert logger.version == run.id and logger.save_dir == str(root)
    assert run.total_steps == 16
    run.finish()
    [(name, cfg_lr, cfg_width, tags, status)] = store_rows(
        root, "SELECT name, config->>'lr', config->>'width', tags, status FROM runs")
    assert (name, cfg_lr, cfg_width, tags, status) == ("tiny", "0.05", "8", ["lightning"], "finished")
    steps = store_rows(root, "SELECT step, epoch FROM metrics WHERE key = 'train/loss' ORDER BY step")
    assert [s for s, _ in steps] == [1, 3, 5, 7, 9, 11, 13, 15] and {e for _, e in steps} == {0, 1}
    assert store_rows(root, "SELECT count(*) FROM metrics WHERE key = 'val/loss'") == [(2,)]
    assert store_rows(root, "SELECT count(*) > 0 FROM metrics WHERE key = 'perf/samples_per_s' AND value > 0") == [(True,)]
    ck = store_rows(root, "SELECT tags, sha256 IS NOT NULL FROM checkpoints ORDER BY ts")
    assert ck and all(has_sha for _, has_sha in ck) and any("best" in t for t, _ in ck)


def test_identity_does_not_start_the_run(tmp_path):
    """name/version/save_dir are known before any run exists (ModelCheckpoint asks early)."""
    logger = RunlakeLogger("lit", root=tmp_path, run_id="fixed-id-1")
    assert (logger.name, logger.version, logger.save_dir) == ("lit", "fixed-id-1", str(tmp_path))
    assert logger._run is None and not (tmp_path / "lit").exists()
