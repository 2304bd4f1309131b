"""The Charts workspace through AppTest on a real store: a panel per key in sections,
every URL parameter and widget (and their malformed forms), grouping, context marks, the
idle rerun that queries nothing, and markup in keys and run names shown as text."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import workspace_store as wss  # noqa: E402

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
pytestmark = pytest.mark.filterwarnings("ignore::runlake.schemas.errors.RunlakeWarning")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return wss.workspace_store(tmp_path_factory)


@pytest.fixture
def charts(ws, monkeypatch):
    """``charts(runs=[names], run=True, **params)`` → an AppTest of the Charts view."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RUNLAKE_DB", str(ws["db"]))

    def make(names=("lr0.1-s1", "lr0.1-s2"), run=True, **params):
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update({"view": "charts", "refresh": "off",
                                "runs": ",".join(ws["ids"][n] for n in names), **params})
        return at.run() if run else at

    return make




def _sections(at) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", e.label) for e in at.get("expander")
            if not e.label.startswith("Add a panel")]


def _panel_titles(at) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", m.value).strip("*") for m in at.markdown
            if m.value.startswith("**")]


def _param(at, name):
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def test_a_panel_per_key_in_sections_sys_closed(charts):
    """No ?keys=: a panel per logged key, sections metrics/train/val/sys, sys closed (not
    drawn); every drawn panel is a chart."""
    at = charts()
    wss.page_ok(at)
    assert _sections(at) == ["metrics", "train", "val", "sys"]
    assert _panel_titles(at) == ["lr", "train/acc", "train/loss", "val/loss"]
    assert len(wss.chart_rows(at)) == 4


def test_keys_param_pins_panels_and_overlays(charts):
    """?keys=train/loss,val/loss draws those two panels; a|b overlays both keys in one."""
    at = charts(keys="train/loss,val/loss")
    wss.page_ok(at)
    assert _panel_titles(at) == ["train/loss", "val/loss"]
    assert at.multiselect(key="charts_keys").value == ["train/loss", "val/loss"]
    at = charts(keys="train/loss|val/loss")
    wss.page_ok(at)
    assert _panel_titles(at) == ["train/loss + val/loss"]
    [rows] = wss.chart_rows(at)
    assert {r.get("key") for r in rows if "smoothed" in r} == {"train/loss", "val/loss"}


def test_unknown_keys_get_a_notice(charts):
    """Unknown keys in ?keys= are named in a notice; the known ones still draw; only
    unknown ones fall back to every key."""
    at = charts(keys="nope,train/loss")
    notices = " ".join(wss.page_ok(at))
    assert "'nope'" in notices and _panel_titles(at) == ["train/loss"]
    at = charts(keys="nope")
    assert "'nope'" in " ".join(wss.page_ok(at)) and len(_panel_titles(at)) == 4


@pytest.mark.parametrize("bad", [
    {"smooth": "2", "logy": "maybe", "points": "10"},
    {"smooth": "nan", "points": "1e9", "x": "sideways"},
    {"smooth": "-0.1", "points": "many"},
    {"smooth": "0.5x", "keys": "," * 5 + "|" * 5}])
def test_malformed_workspace_params_are_dropped_with_a_notice(charts, bad):
    """Malformed parameters: a notice naming each (no traceback), the view still draws,
    the parameters leave the URL (an empty panel list just means every key)."""
    at = charts(**bad)
    notices = wss.page_ok(at)
    for name in bad:
        if name != "keys":
            assert any(f"?{name}=" in n for n in notices), (name, notices)
        assert name not in at.query_params
    assert len(wss.chart_rows(at)) == 4


def test_unknown_group_gets_a_notice(charts):
    """?group=<unknown>: a notice, the runs drawn ungrouped."""
    at = charts(group="<b>nope</b>")
    notices = wss.page_ok(at)
    assert any("?group=" in n for n in notices), notices
    assert at.selectbox(key="charts_group").value == "(none)"
    assert wss.chart_rows(at) and not any("mean" in r for rows in wss.chart_rows(at) for r in rows)


def test_epoch_axis_only_where_epochs_were_logged(charts):
    """Runs that logged epochs offer x=epoch and draw it."""
    at = charts(x="epoch", keys="train/loss")
    assert not wss.page_ok(at) and at.radio(key="charts_x").value == "epoch"
    [rows] = wss.chart_rows(at)
    assert max(r["x"] for r in rows if "smoothed" in r) < 3


def test_epoch_without_epochs_says_why(app, store, page_text):
    """?x=epoch on runs without epochs (the conftest store): a notice, the step axis, the
    epoch option absent and a caption saying why."""
    at = app("charts", runs=store["ids"]["alpha"], x="epoch")
    assert any("?x=epoch" in n for n in wss.page_ok(at))
    assert at.radio(key="charts_x").options == ["step", "time"]
    assert "logged none" in page_text(at)


def test_runs_param_is_cut_to_its_bound(charts):
    """10,000 run ids in ?runs= are cut to MAX_URL_RUNS with a notice."""
    from runlake.dashboard.selection import MAX_URL_RUNS

    at = charts(names=(), run=False)
    at.query_params["runs"] = ",".join(f"r{i}" for i in range(10_000))
    at.run()
    notices = " ".join(wss.page_ok(at))
    assert f"only the first {MAX_URL_RUNS}" in notices


def test_widgets_write_the_url_and_a_refresh_restores_them(charts):
    """Search, panels, group, x, smoothing, log scale and points go into the URL; a new
    session on that URL (a refresh, a shared link) shows the same workspace."""
    at = charts()
    at.text_input(key="charts_search").input("LOSS").run()
    at.multiselect(key="charts_keys").set_value(["train/loss", "val/loss"]).run()
    at.selectbox(key="charts_group").set_value("seed").run()
    at.radio(key="charts_x").set_value("epoch").run()
    at.slider(key="charts_smooth").set_value(0.6).run()
    at.checkbox(key="charts_log").check().run()
    at.number_input(key="charts_points").set_value(300).run()
    wss.page_ok(at)
    url = {k: _param(at, k) for k in at.query_params}
    assert url["search"] == "LOSS" and url["keys"] == "train/loss,val/loss"
    assert url["group"] == "seed" and url["x"] == "epoch" and url["smooth"] == "0.6"
    assert url["logy"] == "1" and url["points"] == "300"
    again = charts(run=False)
    again.query_params.clear()
    again.query_params.update(url)
    again.run()
    wss.page_ok(again)
    assert again.text_input(key="charts_search").value == "LOSS"
    assert again.multiselect(key="charts_keys").value == ["train/loss", "val/loss"]
    assert again.selectbox(key="charts_group").value == "seed"
    assert again.radio(key="charts_x").value == "epoch"
    assert again.slider(key="charts_smooth").value == pytest.approx(0.6)
    assert again.checkbox(key="charts_log").value is True
    assert again.number_input(key="charts_points").value == 300
    assert _panel_titles(again) == ["train/loss", "val/loss"]


def test_search_filters_panels(charts):
    """?search= keeps the panels whose key contains it (any case)."""
    at = charts(search="ACC")
    wss.page_ok(at)
    assert _panel_titles(at) == ["train/acc"]
    at = charts(search="zzz")
    wss.page_ok(at)
    assert not wss.chart_rows(at) and "No panel matches" in at.info[0].value


def test_closed_sections_are_not_queried_and_opening_writes_the_url(charts, monkeypatch):
    """?sections=val: only val's panels are fetched; opening train (the expander) puts it
    into ?sections= and draws it."""
    from runlake.dashboard import data, workspace

    fetched = []
    real = data.fetch

    def spy(fn, *args, **kwargs):
        if fn is workspace.key_curves:
            fetched.extend(args[3])
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(data, "fetch", spy)
    at = charts(sections="val")
    wss.page_ok(at)
    assert set(fetched) == {"val/loss"} and _panel_titles(at) == ["val/loss"]
    at.session_state["charts_sec:train"] = True
    at.run()
    wss.page_ok(at)
    assert _param(at, "sections") == "train,val"
    assert "train/loss" in fetched and "train/loss" in _panel_titles(at)
    at = charts(sections="")
    wss.page_ok(at)
    assert not wss.chart_rows(at)


def test_an_idle_rerun_queries_nothing(charts, monkeypatch):
    """A rerun with no new data is served from data.py's cache: no store connection."""
    from runlake.dashboard import data

    at = charts(group="lr")
    wss.page_ok(at)
    opened = []
    real = data.read_store

    def counting(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "read_store", counting)
    at.run()
    wss.page_ok(at)
    assert len(wss.chart_rows(at)) == 4
    assert opened == []


def test_grouped_panel_draws_mean_and_bands_per_group(charts, ws):
    """?group=lr: one mean line, std band and min/max band per learning rate, the numbers
    of analysis.groups.group_curves, each group in its palette colour."""
    from runlake.analysis.groups import group_curves
    from runlake.dashboard.palette import colors
    from runlake.store import read_store

    names = [f"lr{lr}-s{s}" for lr in (0.1, 0.01) for s in (1, 2, 3)]
    at = charts(names=names, group="lr", keys="train/loss", points="100")
    wss.page_ok(at)
    [rows] = wss.chart_rows(at)
    lines = [r for r in rows if r.get("mean") is not None]
    assert {r["group"] for r in lines} == {"0.1", "0.01"}
    with read_store(ws["db"]) as con:
        want = group_curves(con, [ws["ids"][n] for n in names], "train/loss", by="lr", points=100)
    assert len(lines) == want.height
    got = {(r["group"], r["x"]): (r["mean"], r["lo"], r["hi"], r["min"], r["max"]) for r in lines}
    for g, x, mean, mn, mx, std in want.select("group", "x", "mean", "min", "max", "std").rows():
        assert got[(g, x)] == pytest.approx((mean, mean - std, mean + std, mn, mx))
    spec = at.get("vega_lite_chart")[0].proto.spec
    palette = colors(["0.1", "0.01"])
    assert palette["0.1"] in spec and palette["0.01"] in spec


def test_context_marks_resume_anomaly_range_and_checkpoint(charts):
    """On the resumed run: a rule where attempt 1 began, the NaN range shaded as a range,
    the checkpoint as a point on the curve; captions say what is marked."""
    at = charts(names=("lr0.1-s1",), keys="train/loss")
    wss.page_ok(at)
    [rows] = wss.chart_rows(at)
    assert [r["x"] for r in rows if "attempt" in r] == [wss.RESUME_AT]
    ranges = [(r["x"], r["x2"]) for r in rows if "x2" in r and r.get("kind") == "nonfinite"]
    assert (min(wss.NAN_STEPS), max(wss.NAN_STEPS)) in ranges
    [ckpt] = [r for r in rows if "uri" in r]
    assert ckpt["x"] == wss.CHECKPOINT_AT and ckpt["y"] == pytest.approx(wss.loss(wss.CHECKPOINT_AT, 0.1, 1), rel=0.2)
    captions = " ".join(c.value for c in at.caption)
    assert "resumed attempt" in captions and "checkpoint" in captions and "anomaly" in captions


def test_markup_in_keys_and_run_names_is_text(charts, ws):
    """A key and a run name made of Markdown/HTML: every Markdown field (section and panel
    titles, captions, widget labels, notices) carries it escaped."""
    at = charts(names=("hostile", "lr0.1-s1"), keys=f"{wss.HOSTILE_KEY},nope<img src=x>")
    wss.page_ok(at)
    fields = [e.label for e in at.get("expander")] + [m.value for m in at.markdown]
    fields += [c.value for c in at.caption] + [w.value for w in at.warning]
    shown = [re.sub(r"\\(.)", r"\1", f) for f in fields]
    assert any(wss.HOSTILE_KEY in s for s in shown), shown
    for raw in fields:
        plain = re.sub(r"\\[!-/:-@\[-`{-~]", "\x00", raw)
        for fragment in ("![i](", "<i>", "<img", "[l](javascript", "**s**", ":red[", "<b>"):
            assert fragment not in plain, (fragment, raw)
