"""A real store for the dashboard tests: runs written by the real emitter, loaded by the
real ingest, scanned by the real anomaly detectors; and an AppTest factory over it."""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"

# (project, name, group, config, tags, spike step or None, finish status or None = running).
# The running run comes last: its logging bridge stays attached and would capture the
# log lines of runs created after it.
SPECS = [
    ("vision", "alpha", "lr-sweep", {"lr": 0.1, "seed": 1, "model": {"width": 64}}, ["baseline"], 120, "finished"),
    ("vision", "beta", "lr-sweep", {"lr": 0.01, "seed": 1, "model": {"width": 64}}, ["sweep"], None, "finished"),
    ("vision", "beta-s2", "lr-sweep", {"lr": 0.01, "seed": 2, "model": {"width": 64}}, ["sweep"], None, "finished"),
    ("nlp", "delta", None, {"lr": 0.003, "seed": 1, "model": {"width": 256}}, ["lm"], None, "failed"),
    ("vision", "gamma", "lr-sweep", {"lr": 0.1, "seed": 2, "model": {"width": 128}}, ["sweep"], None, None),
]
STEPS = 200


def loss_at(step: int, lr: float, spike: int | None) -> float:
    value = 2.0 * math.exp(-step * lr / 5) + 0.1
    return value * 40 if spike is not None and step == spike else value


def build_store(root: Path) -> dict:
    """Write the SPECS runs with the real emitter, ingest them, detect anomalies."""
    import runlake
    from runlake.ingest import ingest

    logger = logging.getLogger("trainer")
    logger.setLevel(logging.INFO)
    ids, live = {}, []
    for project, name, group, config, tags, spike, status in SPECS:
        run = runlake.init(project, name, root=root, config=config, tags=tags, group=group,
                           total_steps=400 if status is None else STEPS, console=False,
                           flush_interval=0.2)
        ids[name] = run.id
        for step in range(STEPS):
            run.log({"loss": loss_at(step, config["lr"], spike), "acc": step / STEPS}, step=step)
            if step % 50 == 0:
                run.log_data([f"img-{i}" for i in range(step // 5, step // 5 + 10)], split="train",
                             step=step, augment={"flip": step % 100 == 0})
        run.log_data(["img-3", "img-77", "img-900"], split="eval", step=STEPS)
        logger.info("epoch done for %s", name)
        logger.warning("learning rate %s may be high for %s", config["lr"], name)
        logger.error("dataloader worker restarted in %s", name)
        if status is None:
            run.flush()
            live.append(run)
        else:
            run.finish(status=status)
    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
    _detect(db)
    return {"db": db, "root": root, "ids": ids, "live": live, "names": [s[1] for s in SPECS]}


def _detect(db: Path) -> None:
    """Run the anomaly detectors over the store (they store their findings)."""
    from runlake.analysis import anomalies

    detect = getattr(anomalies, "detect", None)
    if detect is None:
        pytest.fail("runlake.analysis.anomalies.detect is missing")
    detect(db=db)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """The shared read-only test store (built once per session)."""
    built = build_store(tmp_path_factory.mktemp("store"))
    yield built
    for run in built["live"]:
        run.finish()


@pytest.fixture
def app(store, monkeypatch):
    """``app(view, **query_params)`` → an AppTest of the real app on the test store, run."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RUNLAKE_DB", str(store["db"]))

    def make(view: str | None = None, run: bool = True, **params: str):
        at = AppTest.from_file(str(APP), default_timeout=60)
        if view:
            at.query_params["view"] = view
        at.query_params.update(params)
        return at.run() if run else at

    return make


@pytest.fixture
def app_script() -> Path:
    """The dashboard entry script."""
    return APP


@pytest.fixture
def page_text():
    """``page_text(at)`` → all visible text of an AppTest page."""
    return texts


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def texts(at) -> str:
    """All visible text of an AppTest page (markdown, captions, titles, alerts, tables)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success", "code", "text"):
        parts += [str(e.value) for e in at.get(kind)]
    for frame in at.dataframe:
        parts.append(frame.value.to_string())
    return "\n".join(parts)
