"""Grouped curves, curve context and the palette on a real store (emitter → ingest →
detectors): the SQL group statistics equal the rule recomputed with numpy from the raw
metrics, resumes/checkpoints/epochs are found, colours are distinct and stable."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from runlake.analysis._common import rows, scalar

sys.path.insert(0, str(Path(__file__).parent))
import workspace_store as wss  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::runlake.schemas.errors.RunlakeWarning")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return wss.workspace_store(tmp_path_factory)


@pytest.fixture
def con(ws):
    from runlake.store import read_store

    with read_store(ws["db"]) as c:
        yield c


def _expected(con, ws, run_ids, key, by, points):
    """The module docstring's rule of analysis.groups, in numpy over raw rows."""
    raw = rows(con, "SELECT run_id, step::DOUBLE, value FROM metrics WHERE key = ? "
                    "AND rank = 0 AND step IS NOT NULL", [key])
    label = {r: str(ws["configs"][r][by]) if by != "group" else ws["configs"][r]["group"]
             for r in run_ids}
    out = {}
    for group in sorted(set(label.values())):
        members = [r for r in run_ids if label[r] == group]
        found = [(r, x, v) for r, x, v in raw if r in members and np.isfinite(v)]
        xs = np.array([x for _, x, _ in found])
        x0, x1 = xs.min(), xs.max()
        buckets = {}
        for r, x, v in found:
            b = min(int(np.floor((x - x0) * points / max(x1 - x0, 1e-300))), points - 1)
            buckets.setdefault(b, {}).setdefault(r, []).append((x, v))
        for b, per_run in sorted(buckets.items()):
            means = np.array([np.mean([v for _, v in pts]) for pts in per_run.values()])
            allx = [x for pts in per_run.values() for x, _ in pts]
            allv = [v for pts in per_run.values() for _, v in pts]
            out[(group, round(float(np.mean(allx)), 9))] = (
                means.mean(), min(allv), max(allv), means.std(), len(per_run))
    return out


@pytest.mark.parametrize(("by", "points"), [("lr", 12), ("group", 7), ("seed", 200)])
def test_group_curves_match_numpy(con, ws, by, points):
    """mean, min, max, std (population) and run count per group and bucket equal an
    independent numpy computation; the NaN range of one seed is left out, not propagated."""
    from runlake.analysis.groups import group_curves

    ids = [ws["ids"][f"lr{lr}-s{s}"] for lr in (0.1, 0.01) for s in (1, 2, 3)]
    got = group_curves(con, ids, "train/loss", by=by, points=points)
    want = _expected(con, ws, ids, "train/loss", by, points)
    assert got.height == len(want)
    for row in got.iter_rows(named=True):
        exp = want[(row["group"], round(row["x"], 9))]
        assert row["mean"] == pytest.approx(exp[0], rel=1e-9)
        assert row["min"] == pytest.approx(exp[1], rel=1e-12)
        assert row["max"] == pytest.approx(exp[2], rel=1e-12)
        assert row["std"] == pytest.approx(exp[3], rel=1e-7, abs=1e-12)
        assert row["runs"] == exp[4]
    assert not got["mean"].is_nan().any()


def test_group_curves_keep_a_seed_spike_in_the_band(con, ws):
    """One seed's extreme value stays the band's max even when the buckets are coarse."""
    from runlake.analysis.groups import group_curves

    ids = [ws["ids"][f"lr0.01-s{s}"] for s in (1, 2, 3)]
    peak = scalar(con, "SELECT max(value) FROM metrics WHERE key = 'train/loss' AND run_id IN "
                       "(SELECT unnest(?::VARCHAR[]))", [ids])
    got = group_curves(con, ids, "train/loss", by="lr", points=3)
    assert got["max"].max() == peak and got["mean"].max() < peak


def test_grouping_by_an_unknown_key_is_a_clear_error(con, ws):
    """No selected run has the key: ConfigError naming it (the view shows a notice)."""
    from runlake.analysis.groups import group_curves, group_options
    from runlake.schemas.errors import ConfigError

    ids = list(ws["ids"].values())
    assert {"group", "lr", "seed", "model.width"} <= set(group_options(con, ids))
    assert group_options(con, ids)[0] == "group"
    with pytest.raises(ConfigError, match="no_such"):
        group_curves(con, ids, "train/loss", by="no_such")


def test_context_resume_checkpoint_and_epochs(con, ws, store):
    """The resumed attempt starts at its first logged step; the checkpoint is listed; epochs
    are found where logged and not in the conftest store (which logs none)."""
    from runlake.analysis.context import checkpoint_points, has_epochs, resume_points
    from runlake.store import read_store

    first = ws["ids"]["lr0.1-s1"]
    resumed = resume_points(con, list(ws["ids"].values()))
    assert resumed.select("run_id", "attempt", "step").rows() == [(first, 1, wss.RESUME_AT)]
    saved = checkpoint_points(con, [first, ws["ids"]["lr0.1-s2"]])
    assert saved.select("run_id", "step", "uri").rows() == [(first, wss.CHECKPOINT_AT, "ckpt-100.pt")]
    assert has_epochs(con, [first])
    with read_store(store["db"]) as other:
        assert not has_epochs(other, list(store["ids"].values()))


def test_palette_distinct_stable_and_colour_blind_safe():
    """Up to 7 names get Okabe-Ito's colours (without black, the colour of the marks on
    curves), up to 14 get 14 different colours; a name keeps its colour when others join
    or the order changes (unless they collide with it)."""
    from runlake.dashboard.palette import PALETTE, colors

    assert PALETTE[:7] == ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                           "#F0E442")
    assert "#000000" not in PALETTE
    names = [f"run-{i:03d}" for i in range(len(PALETTE))]
    got = colors(names)
    assert len(set(got.values())) == len(PALETTE) and set(got.values()) == set(PALETTE)
    assert colors(list(reversed(names))) == got
    few = names[:6]
    some = colors(few)
    # up to 7 names: Okabe-Ito's colours only, all different (never Tol's wine/purple/rose
    # side by side); one more joining moves only the names it collided with
    assert set(some.values()) <= set(PALETTE[:7]) and len(set(some.values())) == 6
    more = colors([*few, "run-new"])
    assert sum(some[n] == more[n] for n in few) >= 5
    for k in range(1, 8):
        assert set(colors(names[:k]).values()) <= set(PALETTE[:7])
    three = colors(["seed=2", "seed=0", "seed=1"])  # blue, orange, green: never two blues
    assert three == {"seed=0": "#0072B2", "seed=1": "#E69F00", "seed=2": "#009E73"}
    assert len(colors([f"r{i}" for i in range(40)])) == 40


def test_workspace_sections_and_search():
    """Sections by prefix (no prefix → metrics, first; sys last and closed); search is a
    case-insensitive substring over a panel's keys."""
    from runlake.dashboard import workspace

    panels = [("sys/cpu",), ("train/loss", "val/loss"), ("lr",), ("val/acc",), ("a/",)]
    got = workspace.layout(panels)
    assert list(got) == ["metrics", "a", "train", "val", "sys"]
    assert got["train"] == [("train/loss", "val/loss")]
    assert not workspace.default_open("sys") and workspace.default_open("train")
    assert workspace.filter_panels(panels, "VAL/") == [("train/loss", "val/loss"), ("val/acc",)]
    assert workspace.section_of("/x") == "metrics"
