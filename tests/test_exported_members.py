"""Every package declares its public surface once: a sorted, complete, valid `__all__`."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "runlake",
    "runlake.schemas",
    "runlake.emitter",
    "runlake.ingest",
    "runlake.store",
    "runlake.analysis",
    "runlake.dashboard",
    "runlake.wandb",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_unique_and_complete(name):
    """`__all__` lists exactly the package's public, non-module names, sorted, each once."""
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported == sorted(set(exported)), f"{name}.__all__ must be sorted and unique"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
    public = sorted(
        n for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n not in ("annotations",)
    )
    assert public == exported, f"{name}: public names not in __all__: {set(public) - set(exported)}"
