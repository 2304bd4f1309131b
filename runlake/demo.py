"""`runlake demo`: real CPU training on scikit-learn's digits, logged end to end.

A small sweep of MLPs (one of them deliberately unstable) trains on the 8x8 digits that
scikit-learn ships. Each run logs metrics, per-item data lineage with augmentation
parameters, gradient statistics and histograms (``runlake.torch.watch``), per epoch an
image of validation digits and a short audio clip with quality scores (``run.log_media``),
and checkpoints with retention (``CheckpointManager``). One run is killed with SIGKILL
part-way (a real crash, in a child process) and resumed from its latest checkpoint as a
second attempt of the same run.
Then the segments are ingested into the default store, the anomaly detectors run, and the
runs table and findings are printed with what to try next.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["SWEEP", "main", "train"]

PROJECT = "digits"
EPOCHS = 10
BATCH = 64

# name -> config. The unstable run uses plain SGD with a far too high learning rate.
SWEEP: dict[str, dict[str, Any]] = {
    "mlp-w64-adam-s0": {"lr": 3e-3, "width": 64, "optimizer": "adam", "seed": 0},
    "mlp-w64-adam-s1": {"lr": 3e-3, "width": 64, "optimizer": "adam", "seed": 1},
    "mlp-w64-adam-s2": {"lr": 3e-3, "width": 64, "optimizer": "adam", "seed": 2},
    "mlp-w128-adam-s0": {"lr": 1e-3, "width": 128, "optimizer": "adam", "seed": 0},
    "mlp-w128-sgd-unstable": {"lr": 1.5, "width": 128, "optimizer": "sgd", "seed": 0},
}
RESUMED = "mlp-w128-adam-s0"  # killed at CRASH_AT_STEP, then resumed
CRASH_AT_STEP = 120


class _Digits:
    """scikit-learn's digits as a torch Dataset with a random shift + noise augmentation.

    ``__getitem__`` returns ``(x, y)`` and remembers the augmentation it applied, which
    ``runlake.torch.track`` records per item through ``last_augment(index)``.
    """

    def __init__(self, indices, *, augment: bool, seed: int):
        import numpy as np
        import torch
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
        self.targets = torch.tensor(digits.target)
        self.indices = list(indices)
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self._last: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def item_id(self, i: int) -> str:
        return f"digits/{self.indices[i]:04d}"

    def last_augment(self, i: int) -> dict[str, Any] | None:
        return self._last.get(i)

    def __getitem__(self, i: int):
        import torch

        x = self.images[self.indices[i]]
        if self.augment:
            dx, dy = (int(v) for v in self.rng.integers(-1, 2, size=2))
            noise = float(self.rng.choice([0.0, 0.05]))
            x = torch.roll(x, shifts=(dy, dx), dims=(0, 1))
            if noise:
                x = x + noise * torch.randn_like(x)
            self._last[i] = {"shift": [dx, dy], "noise": noise, "hflip": False}
        return x.reshape(-1), self.targets[self.indices[i]]


def _splits():
    import numpy as np

    order = np.random.default_rng(1234).permutation(1797)
    return order[:1437], order[1437:]


def train(root: Path, name: str, config: dict[str, Any], *, group: str, run_id: str | None = None,
          resume: bool = False, crash_at: int | None = None) -> str:
    """Train one configuration and log it; returns the run id.

    With ``crash_at`` the process SIGKILLs itself at that step (a real crash); with
    ``resume`` it continues ``run_id`` from its latest checkpoint as a new attempt.
    """
    import torch
    from torch.utils.data import DataLoader

    import runlake
    from runlake.torch import CheckpointManager, track, watch

    torch.set_num_threads(1)
    torch.manual_seed(config["seed"])
    train_idx, val_idx = _splits()
    train_set = _Digits(train_idx, augment=True, seed=config["seed"])
    val_set = _Digits(val_idx, augment=False, seed=0)
    steps_per_epoch = -(-len(train_set) // BATCH)
    run = runlake.init(
        PROJECT, name, config=config, group=group, root=root, run_id=run_id,
        resume=resume, tags=["demo", config["optimizer"]],
        total_steps=EPOCHS * steps_per_epoch, console=False, system_interval=2.0,
    )
    run.log_dataset("digits", version="sklearn", items=1797, source="sklearn.datasets.load_digits")
    model = torch.nn.Sequential(
        torch.nn.Linear(64, config["width"]), torch.nn.ReLU(), torch.nn.Linear(config["width"], 10)
    )
    if config["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    ckpts = CheckpointManager(run, Path(run.dir) / "checkpoints", keep_last=2, keep_best=1,
                              metric="val/loss", mode="min")
    start_epoch = 0
    if resume:
        state = ckpts.load_latest()
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optim"])
            start_epoch = state["epoch"] + 1
    train_loader = track(
        DataLoader(train_set, batch_size=BATCH, shuffle=True,
                   generator=torch.Generator().manual_seed(config["seed"])),
        run, split="train", id_fn=train_set.item_id, source="sklearn-digits",
        start_epoch=start_epoch,
    )
    val_loader = track(DataLoader(val_set, batch_size=256), run, split="val",
                       id_fn=val_set.item_id, source="sklearn-digits", start_epoch=start_epoch)
    watch(model, run, every=10, log_histograms=True)
    step = start_epoch * steps_per_epoch
    with run:
        for epoch in range(start_epoch, EPOCHS):
            for x, y in train_loader:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                run.log({"train/loss": loss.item(), "lr": opt.param_groups[0]["lr"]},
                        step=step, epoch=epoch)
                if crash_at is not None and step == crash_at:
                    run.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                step += 1
            model.eval()
            with torch.no_grad():
                correct = total = 0
                val_loss = 0.0
                for x, y in val_loader:
                    out = model(x)
                    val_loss += torch.nn.functional.cross_entropy(out, y, reduction="sum").item()
                    correct += int((out.argmax(1) == y).sum())
                    total += len(y)
                _log_samples(run, model, val_set, step - 1)
            model.train()
            metrics = {"val/loss": val_loss / total, "val/acc": correct / total}
            run.log(metrics, step=step - 1, epoch=epoch)
            ckpts.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch},
                       step=step - 1, metrics=metrics)
    return run.id


def _log_samples(run, model, val_set, step: int) -> None:
    """The epoch's media (the Media view of ``runlake ui``): 16 validation digits as one
    32x32 image captioned with the predictions, and a short "generated" clip (a tone whose
    pitch is the first digit's prediction) with quality scores."""
    import numpy as np
    import torch

    xs = torch.stack([val_set[i][0] for i in range(16)])
    probs = torch.softmax(model(xs), dim=1)
    conf, pred = probs.max(dim=1)
    grid = xs.reshape(4, 4, 8, 8).permute(0, 2, 1, 3).reshape(32, 32).clamp(0, 1).numpy()
    run.log_media("val/digits", grid, step=step,
                  caption="predicted " + " ".join(str(int(p)) for p in pred))
    rate = 8000
    t = np.arange(rate // 4) / rate
    tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * int(pred[0])) * t) * np.hanning(t.size)
    target = int(val_set[0][1])
    scores = {"confidence": float(conf[0]), "correct": float(int(pred[0]) == target)}
    run.log_media("samples/tone", tone, sample_rate=rate, step=step, name="tone-0",
                  caption=f"digit {target} predicted {int(pred[0])}", meta={"scores": scores})


def _child(argv: list[str]) -> None:
    """Entry of the child process that trains the run that will crash."""
    root, name, group, run_id = argv[:4]
    train(Path(root), name, SWEEP[name], group=group, run_id=run_id, crash_at=CRASH_AT_STEP)


def _cli_name() -> str:
    """``runlake`` when that is on PATH, else the path of this environment's script."""
    script = Path(sys.executable).with_name("runlake")
    found = shutil.which("runlake")
    if found is not None and Path(found).resolve() == script.resolve():
        return "runlake"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def main(root: str | Path | None = None, *, out=None) -> int:
    """Run the whole demo into ``root`` (default store) and print what happened."""
    from runlake.schemas.segments import resolve_root

    out = out or sys.stdout
    root = resolve_root(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    group = time.strftime("sweep-%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    print(f"runlake demo: training {len(SWEEP)} MLPs on scikit-learn digits into {root}", file=out)
    run_ids = {}
    for name, config in SWEEP.items():
        t = time.perf_counter()
        if name == RESUMED:
            run_id = time.strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()
            child = subprocess.run(
                [sys.executable, "-P", "-m", "runlake.demo", "--child", str(root), name, group, run_id],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            killed = child.returncode == -signal.SIGKILL
            print(f"  {name:24s} killed with SIGKILL at step {CRASH_AT_STEP}" if killed
                  else f"  {name:24s} child exited {child.returncode}: {child.stderr[-500:]}", file=out)
            run_ids[name] = train(root, name, config, group=group, run_id=run_id, resume=True)
            print(f"  {name:24s} resumed from its latest checkpoint as attempt 2 "
                  f"({time.perf_counter() - t:.1f}s)", file=out)
        else:
            run_ids[name] = train(root, name, config, group=group)
            print(f"  {name:24s} done ({time.perf_counter() - t:.1f}s)", file=out)

    from runlake.analysis._common import scalar
    from runlake.analysis.anomalies import detect, list_anomalies
    from runlake.analysis.runs import list_runs
    from runlake.cli._common import emit_rows
    from runlake.ingest import ingest
    from runlake.store import locate, read_store

    db = locate(root).path
    report = ingest(root=root, db=db)
    findings = detect(db, run_ids=list(run_ids.values()))
    print(f"\ningested {report.events} events into {db}; {findings} anomaly findings\n", file=out)
    with read_store(db) as con:
        runs = [r for r in list_runs(con, project=PROJECT) if r["run_id"] in run_ids.values()]
        anomalies = list_anomalies(con, run_ids=list(run_ids.values()), severity="warning")
        # The last checkpoint the crashed attempt had saved: what the resume started from.
        resumed_from = scalar(con, "SELECT max(step) FROM checkpoints WHERE run_id = ? AND step <= ?",
                              [run_ids[RESUMED], CRASH_AT_STEP])
    emit_rows(["run_id", "name", "status", "attempts", "last_step"],
              [[r.get(c) for c in ("run_id", "name", "status", "attempts", "last_step")] for r in runs],
              "table", out)
    names = {v: k for k, v in run_ids.items()}
    if anomalies.height:
        print("\nwarnings and critical findings:", file=out)
        for row in anomalies.head(10).iter_rows(named=True):
            print(f"  [{row['severity']}] {names.get(row['run_id'], row['run_id'])} "
                  f"{row['kind']} {row['key'] or ''} steps {row['step_start']}-{row['step_end']}: "
                  f"{row['message']}\n      suggestion: {row['suggestion']}", file=out)
    ids = " ".join(run_ids[n] for n in list(SWEEP)[:3])
    checkpoint = f" --checkpoint {resumed_from}" if resumed_from is not None else ""
    cli = _cli_name()
    print(
        f"\nfinished in {time.perf_counter() - t0:.0f}s. Try next:\n"
        f"  {cli} runs --project {PROJECT}\n"
        f"  {cli} sql \"select key, max(value) from metrics group by key order by key\"\n"
        f"  {cli} anomalies --severity warning\n"
        f"  {cli} compare {ids} --metric val/acc --by seed\n"
        f"  {cli} lineage run {run_ids[RESUMED]}{checkpoint}\n"
        f"  {cli} report {' '.join(run_ids.values())} -o report.html\n"
        f"  {cli} ui\n",
        file=out,
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
