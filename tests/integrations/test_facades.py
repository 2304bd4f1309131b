"""The façade modules: light `import runlake`, complete sorted `__all__` in runlake.torch/.lightning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest


def test_import_runlake_and_cli_do_not_import_torch_or_tensorboard():
    """Training environments stay light: torch/tensorboard load only with runlake.torch."""
    code = ("import sys, runlake, runlake.emitter.integrations, runlake.cli; runlake.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'tensorboard', 'lightning', 'duckdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ["runlake.torch", "runlake.lightning", "runlake.emitter.integrations.torch"])
def test_all_is_sorted_and_complete(name):
    """Each façade exports exactly its public names, sorted."""
    if name == "runlake.lightning":
        pytest.importorskip("lightning")
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(set(exported))
    public = sorted(n for n, v in vars(module).items()
                    if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations")
    assert public == exported
