# A plain PyTorch loop written the W&B way: config access, define_metric with a step metric
# and a glob, commit=False, explicit steps, summary, Image/Histogram/Table, watch, alert.
# The tests run it with the real wandb (offline) and with `import runlake.wandb as wandb`.
import sys

import numpy as np
import torch

import wandb

torch.manual_seed(0)
run = wandb.init(project="torch-loop", name="baseline", job_type="train", tags=["cpu"],
                 notes="tiny regression", config={"lr": 0.05, "epochs": 3, "batches": 4,
                                                   "model": {"width": 16}})
cfg = wandb.config
model = torch.nn.Sequential(torch.nn.Linear(8, cfg.model["width"]), torch.nn.ReLU(),
                            torch.nn.Linear(cfg["model"]["width"], 1))
opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
wandb.watch(model, log="all", log_freq=2)
run.config.update({"optimizer": "sgd"})
cfg.batch_size = 16

wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch", summary="min,max")
wandb.define_metric("train/loss", summary="min,last")

x = torch.randn(64, 8)
y = x.sum(1, keepdim=True)
best = float("inf")
for epoch in range(cfg.epochs):
    for b in range(cfg.batches):
        xb, yb = x[b * 16:(b + 1) * 16], y[b * 16:(b + 1) * 16]
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        wandb.log({"lr": opt.param_groups[0]["lr"]}, commit=False)
        wandb.log({"train/loss": loss.item(), "train/grad_norm": torch.tensor(0.5 + b)})
    with torch.no_grad():
        val = torch.nn.functional.mse_loss(model(x), y).item()
    best = min(best, val)
    wandb.log({"val/loss": val, "epoch": epoch})
    run.summary["best_val"] = best
pred = model(x).detach().numpy().ravel()
wandb.log({"pred_hist": wandb.Histogram(pred, num_bins=16),
           "sample": wandb.Image(np.linspace(0, 1, 48).reshape(4, 4, 3), caption="a sample"),
           "preds": wandb.Table(columns=["i", "pred"], data=[[i, float(p)] for i, p in
                                                           enumerate(pred[:5])])})
wandb.log({"late": 1.0}, step=run.step + 5)
wandb.log({"ignored": 2.0}, step=1)  # below the current step: W&B warns and drops it
wandb.alert(title="done", text=f"best val {best:.3f}")
wandb.finish(exit_code=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
