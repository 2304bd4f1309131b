# Lightning + W&B as Lightning's docs write it: a WandbLogger given to the Trainer, metrics
# from self.log(); the tests change only the import line to
# `import runlake.wandb as wandb; wandb.install()` (WandbLogger imports wandb itself).
import torch
from torch.utils.data import DataLoader, TensorDataset

import wandb
import lightning as L
from lightning.pytorch.loggers import WandbLogger


class Regressor(L.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def on_train_epoch_end(self):
        wandb.log({"epoch_marker": float(self.current_epoch)}, commit=False)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
x = torch.randn(64, 8)
data = TensorDataset(x, x.sum(1, keepdim=True))
wandb_logger = WandbLogger(project="lightning-demo", log_model=False)
wandb_logger.experiment.config["batch_size"] = 16
trainer = L.Trainer(max_epochs=2, logger=wandb_logger, log_every_n_steps=1,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu", devices=1)
trainer.fit(Regressor(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
wandb.finish()
