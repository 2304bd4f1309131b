"""A real 2-process torch.distributed (gloo, CPU) job writing one runlake run.

usage: python _ddp_job.py ROOT CKPT_DIR   (prints the run id from rank 0)
"""
import os
import sys


def worker(rank: int, world: int, root: str, ckpt_dir: str, port: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    from runlake.torch import CheckpointManager, init_distributed_run, track, watch

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", port
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    run = init_distributed_run("ddp", "tiny-ddp", root=root, config={"lr": 0.05, "world": world},
                               tags=["ddp"], console=False, system_interval=0, flush_interval=0.2)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    data = TensorDataset(x, x.sum(1, keepdim=True))
    sampler = DistributedSampler(data, shuffle=True, seed=0)
    loader = track(DataLoader(data, batch_size=8, sampler=sampler), run, source="synthetic")
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    watch(model, run, every=2)
    ckpt = CheckpointManager(run, ckpt_dir, keep_last=1)
    step = 0
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log({"train/loss": loss.item()}, step=step, epoch=epoch)
            step += 1
        ckpt.save(model.module, step - 1, {"val/loss": loss.item()})
        if run.rank == 0:
            run.log_sample("pred", scores={"err": abs(loss.item())}, step=step - 1)
    if rank == 0:
        print(run.id, flush=True)
    run.finish()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    mp.spawn(worker, args=(2, sys.argv[1], sys.argv[2], port), nprocs=2, join=True)
