"""The ``sys/`` prefix of system stats is added in one place
(``schemas.metric_keys.system_key``): the sampler, ingest and the TensorBoard mirror key a
system value the same way, once (the mirror used to write ``sys/sys/cpu_pct``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import runlake
from runlake.emitter.system import CPU_KEY, SystemSampler
from runlake.ingest.decode import FrameDecoder, TableBuilder
from runlake.schemas import events as E
from runlake.schemas.codec import ENCODER
from runlake.schemas.metric_keys import SYSTEM_PREFIX, system_key

from .conftest import read_run

REPO = Path(__file__).resolve().parents[2]


def _tb_tags(logdir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = [p for p in logdir.iterdir() if p.is_dir()]
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_a_mirrored_run_shows_system_stats_under_one_sys_prefix(tmp_path):
    """A real run mirrored to TensorBoard: TensorBoard's own reader finds ``sys/cpu_pct``
    (and every system key exactly as the segments hold it), never ``sys/sys/...``."""
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "tb"
    with runlake.init("p", root=tmp_path / "root", console=False, capture_logging=False,
                      system_interval=0.05, tensorboard=logdir) as run:
        for step in range(20):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
            time.sleep(0.02)
    systems = [ev for ev in read_run(run.dir) if ev.__class__ is E.System]
    assert systems, "no system sample was taken"
    tags = _tb_tags(logdir)
    assert CPU_KEY == "sys/cpu_pct" and CPU_KEY in tags
    assert "loss" in tags
    assert not [t for t in tags if t.startswith(SYSTEM_PREFIX * 2)]
    assert {t for t in tags if t.startswith(SYSTEM_PREFIX)} == {
        system_key(k) for ev in systems for k in ev.values}


def test_ingest_and_mirror_key_a_bare_system_value_alike(tmp_path):
    """A system event holding a key without the prefix (older or hand-written segments)
    gets it once, identically, in the store's rows and in the TensorBoard mirror."""
    pytest.importorskip("tensorboard")
    from runlake.emitter.integrations.tensorboard import TensorBoardMirror

    ev = E.System(1, "run", "r0000-a000-0123abcd", 0, 10**18, 0,
                  values={"cpu_percent": 5.0, "sys/rss": 1e9}, step=3)
    mirror = TensorBoardMirror(tmp_path / "tb", "run")
    assert mirror.write_events([ev]) == 1
    mirror.close()
    decoder, builder = FrameDecoder(), TableBuilder()
    metrics, others, bad = decoder.decode(ENCODER.encode_lines([ev]))
    assert not bad
    builder.add(metrics, others, "run", "p/run/w/000000.jsonl.zst", 0)
    stored = set(builder.to_arrow()["metrics"].column("key").to_pylist())
    assert stored == _tb_tags(tmp_path / "tb") == {"sys/cpu_percent", "sys/rss"}


def test_the_sampler_keys_are_system_keys():
    """Every key the sampler produces is already a system key (system_key leaves it)."""
    values = SystemSampler().sample()
    assert CPU_KEY in values
    assert all(system_key(k) == k for k in values)


_APPLY = re.compile(r"""f["']sys/\{|["']sys/["']\s*\+|["']sys/\w|startswith\(\s*["']sys/""")


def test_the_prefix_is_written_only_in_metric_keys():
    """Python code adds or tests the prefix only through schemas/metric_keys.py (SQL filters
    in analysis spell ``'sys/%'``: they are not Python string tests)."""
    offenders = []
    for folder in ("emitter", "ingest", "schemas", "analysis", "dashboard"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "schemas/metric_keys.py":
                continue
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _APPLY.search(line):
                    offenders.append(f"{rel}:{no}: {line.strip()}")
    assert offenders == []
