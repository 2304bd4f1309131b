"""``Run`` is given its collaborators at construction (a ``WriterSetup``), no module sets its
private attributes from outside, and ``Run.log`` has a typed signature (``LogFn``)."""

from __future__ import annotations

import ast
import inspect
import math
import typing
from pathlib import Path

import pytest

from runlake.emitter.run import Run
from runlake.emitter.sink import MemorySink
from runlake.emitter.system import SystemSampler
from runlake.emitter.testing import of_kind
from runlake.emitter.wiring import LogFn, WriterSetup

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("emitter", "runlake", "schemas", "ingest", "store", "analysis", "dashboard")


def foreign_private_writes(source: str) -> list[str]:
    """Assignments to another object's private attribute (``x._y = ...``, ``setattr(x, "_y",
    ...)``); ``self._y`` and ``cls._y`` are an object's own business."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        flat = [e for t in targets for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])]
        for t in flat:
            if (isinstance(t, ast.Attribute) and t.attr.startswith("_") and not t.attr.startswith("__")
                    and not (isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"))):
                found.append(f"{node.lineno}: {ast.unparse(t)} = ...")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_sets_private_attributes_of_another_object():
    """No module wires another object's private attributes (as init() and the periodic
    tasks used to do to the Run: run._writer, run._checks, run._rate ...)."""
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 50
    offences = [f"{p.relative_to(REPO)}:{o}" for p in files for o in foreign_private_writes(p.read_text())]
    assert not offences, "\n".join(offences)


def test_the_scan_sees_foreign_private_writes():
    """The scan flags the patterns it exists for, and leaves an object's own attributes alone."""
    src = ("run._writer = w\nrun._rate, run._eta = 1, 2\nrun._n += 1\nsetattr(run, '_x', 1)\n"
           "self._ok = 1\nrun.public = 2\n")
    assert len(foreign_private_writes(src)) == 5


def test_log_is_typed_by_the_protocol_with_the_closure_signature(tmp_path):
    """Type checkers see Run.log as LogFn, and LogFn's signature is the closure's own."""
    assert typing.get_type_hints(Run)["log"] is LogFn
    run = _run(tmp_path, WriterSetup(sink=MemorySink([]), online_checks=False))
    try:
        want = list(inspect.signature(LogFn.__call__).parameters.values())[1:]  # minus self
        got = list(inspect.signature(run.log).parameters.values())
        assert [(p.name, p.kind, p.default) for p in got] == [(p.name, p.kind, p.default) for p in want]
    finally:
        run.finish()


def _run(tmp_path, setup: WriterSetup, **kw) -> Run:
    opts = dict(run_id="run-1", name="n", project="p", root=tmp_path, writer="w0", rank=0,
                world_size=1, attempt=0, start_step=0, total_steps=10, strict=True)
    opts.update(kw)
    start = dict(project="p", name="n", world_size=1, attempt=0, start_step=0, total_steps=10,
                 heartbeat_s=setup.heartbeat_interval)
    return Run(**opts, setup=setup, start=start)


def test_a_run_built_from_a_setup_writes_through_its_collaborators(tmp_path, capsys):
    """Everything the setup names is used: the sink gets run_start first, then metrics, the
    online checks raise an alert, the sampler's system events and the console block appear."""
    events: list = []
    setup = WriterSetup(sink=MemorySink(events), flush_interval=0.05, online_checks=True,
                        heartbeat_interval=0.05, sampler=SystemSampler(), system_interval=0.05,
                        console_interval=0.05)
    run = _run(tmp_path, setup)
    with pytest.warns(Warning, match="loss is nan"):
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1)})
        run.log({"loss": math.nan})
        assert run.flush(10)
    import time

    time.sleep(0.3)  # a few periodic ticks of the writer thread
    run.finish()
    assert events[0].__struct_config__.tag == "run_start"
    assert len(of_kind(events, "metrics")) == 6
    assert [a.alert for a in of_kind(events, "alert")] == ["nonfinite"]
    assert of_kind(events, "system") and of_kind(events, "heartbeat")
    assert "run run-1" in capsys.readouterr().err
    assert run.progress()["total_steps"] == 10


def test_a_setup_without_checks_or_sampler_emits_neither(tmp_path):
    """online_checks=False and no sampler: no alert for NaN, no system events."""
    events: list = []
    run = _run(tmp_path, WriterSetup(sink=MemorySink(events), online_checks=False))
    run.log({"loss": math.nan})
    run.finish()
    assert not of_kind(events, "alert") and not of_kind(events, "system")
    assert run.progress()["system"] == {} and run.progress()["losses"] == {}
