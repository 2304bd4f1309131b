"""The import rules of docs/architecture.md's Layout table, checked by reading the code.

Every ``import``/``from ... import`` statement of a package's modules (function-level and
``TYPE_CHECKING`` imports included: a lazy import is still a dependency) is resolved to the
runlake module it names, and must be one that package may import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FOLDERS = {"schemas": "runlake.schemas", "emitter": "runlake.emitter",
           "ingest": "runlake.ingest", "store": "runlake.store",
           "analysis": "runlake.analysis", "dashboard": "runlake.dashboard"}

# Packages held to a whitelist (runlake packages they may import besides themselves) ...
ALLOWED = {
    "schemas": set(),
    "store": {"runlake.schemas", "runlake._lazy"},
}
# ... and those held to a blacklist. "runlake" is the façade: only its version string
# (``from runlake import __version__``) may be imported by a package below it.
FORBIDDEN = {
    "emitter": {"runlake.store", "runlake.ingest", "runlake.analysis", "runlake.dashboard",
                "runlake"},
    "ingest": {"runlake.analysis", "runlake.dashboard", "runlake"},
    "analysis": {"runlake.ingest", "runlake.dashboard", "runlake"},
    "dashboard": {"runlake.ingest", "runlake"},
}
_FACADE_NAMES = {"__version__"}


def _package_of(module: str) -> str:
    """``runlake.store.duck`` -> ``runlake.store``; ``runlake._lazy`` stays itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imports(path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every runlake import in ``path`` (relative ones
    resolved against ``package``, the module's own package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")  # level 1: the module's package; 2: its parent...
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module, [a.name for a in node.names]))
    return [(line, m, names) for line, m, names in found
            if m == "runlake" or m.startswith("runlake.")]


def violations(folder: str) -> list[str]:
    own = FOLDERS[folder]

    def refused(target: str) -> bool:
        if target == own:
            return False
        if folder in ALLOWED:
            return target not in ALLOWED[folder]
        return target in FORBIDDEN[folder]

    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        rel = path.relative_to(REPO)
        package = ".".join([own, *path.relative_to(REPO / folder).parent.parts])
        for line, module, names in imports(path, package):
            if module == "runlake":  # from runlake import x: a subpackage, or the façade
                targets = {f"runlake.{n}" if n in FOLDERS or n in ("_lazy", "cli") else "runlake"
                           for n in names if n not in _FACADE_NAMES}
            else:
                targets = {_package_of(module)}
            for target in targets:
                if refused(target):
                    bad.append(f"{rel}:{line} imports {target}")
    return bad


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_package_imports_only_what_the_layout_allows(folder):
    """analysis/dashboard never import ingest; store only schemas; schemas nothing else;
    the emitter never the store, ingest or analysis."""
    assert violations(folder) == []


@pytest.mark.parametrize("source, folder, wanted", [
    ("from runlake.ingest import ingest\n", "analysis", "runlake.ingest"),
    ("def f():\n    import runlake.ingest.loader\n", "dashboard", "runlake.ingest"),
    ("from runlake import ingest\n", "analysis", "runlake.ingest"),
    ("from runlake.analysis import runs\n", "store", "runlake.analysis"),
    ("from runlake.ingest.loader import run_pass\n", "store", "runlake.ingest"),
    ("from runlake.store import read_store\n", "emitter", "runlake.store"),
    ("from runlake import connect\n", "store", "runlake"),
    ("from .. import ingest\n", "analysis", "runlake.ingest"),
    ("from runlake.emitter import init\n", "schemas", "runlake.emitter"),
])
def test_the_scan_catches_a_forbidden_import(tmp_path, monkeypatch, source, folder, wanted):
    """Each kind of import statement the rules forbid is reported (so the scan can fail)."""
    fake = tmp_path / folder
    fake.mkdir()
    (fake / "mod.py").write_text("import os\n" + source)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    line = 3 if source.startswith("def") else 2
    assert violations(folder) == [f"{folder}/mod.py:{line} imports {wanted}"]
