"""What the emitter learns about its process at ``init()``: ids, ranks, git, host.

Everything here runs once per run, off the hot path. Nothing imports torch: GPU names and
the torch/CUDA versions are read only when torch is already in ``sys.modules``. The git
probe runs ``git`` with a short timeout and yields None fields when git or the repository
is absent.
"""

from __future__ import annotations

import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from runlake.schemas.errors import ConfigError
from runlake.schemas.events import Git, Host

__all__ = ["Ranks", "git_info", "host_info", "new_run_id", "ram_bytes", "ranks", "run_id_from_env"]

GIT_TIMEOUT_S = 2.0


def new_run_id(now: float | None = None) -> str:
    """A new time-sortable run id: ``YYYYMMDD-HHMMSS-<6 hex>`` (UTC)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def run_id_from_env(environ=os.environ) -> str | None:
    """``$RUNLAKE_RUN_ID``, else ``$TORCHELASTIC_RUN_ID`` (unless empty or "none")."""
    rid = environ.get("RUNLAKE_RUN_ID")
    if rid:
        return rid
    rid = environ.get("TORCHELASTIC_RUN_ID")
    if rid and rid.lower() != "none":
        return rid
    return None


@dataclass(frozen=True)
class Ranks:
    rank: int
    local_rank: int
    world_size: int


def _env_int(environ, name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name} must be an integer, got {raw!r}") from None


def ranks(environ=os.environ) -> Ranks:
    """Rank, local rank and world size from ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` (torchrun).

    Raises:
        ConfigError: a variable is not an integer or the rank is outside the world.
    """
    rank = _env_int(environ, "RANK", 0)
    local = _env_int(environ, "LOCAL_RANK", rank if "RANK" in environ else 0)
    world = _env_int(environ, "WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return Ranks(rank, local, world)


def git_info(cwd: str | None = None) -> Git | None:
    """Commit, branch and dirty flag of the repository around ``cwd``; None outside git."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return Git(
        commit=commit,
        branch=None if branch in (None, "HEAD") else branch,
        dirty=None if status is None else bool(status),
    )


def ram_bytes() -> int | None:
    """Total physical memory, from sysconf (no psutil needed)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def host_info() -> Host:
    """Hostname, pid, Python, platform, CPUs, RAM; torch/CUDA/GPUs only if torch is loaded."""
    torch_v = cuda_v = None
    gpus: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        torch_v = str(getattr(torch, "__version__", "")) or None
        cuda_v = getattr(getattr(torch, "version", None), "cuda", None)
        try:
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except (RuntimeError, AssertionError, AttributeError):
            gpus = []  # CUDA present but unusable (driver mismatch): report no GPUs
    return Host(
        hostname=socket.gethostname(),
        pid=os.getpid(),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        ram_bytes=ram_bytes(),
        torch=torch_v,
        cuda=cuda_v,
        gpus=gpus,
    )
