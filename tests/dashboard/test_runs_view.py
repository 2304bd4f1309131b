"""The Runs view on the real test store (emitter → ingest → detectors), through AppTest:
rows ticked to select, default config columns, progress, sort/filter/group/cols from the
URL, the SQL view driven by ``?sql=``, malformed parameters, and idle reruns."""

from __future__ import annotations

import re
from datetime import datetime

import duckdb
import polars as pl
import pytest

from runlake.dashboard import runs_table
from runlake.dashboard.selection import MAX_SQL_CHARS


def _ok(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return [re.sub(r"\\(.)", r"\1", w.value) for w in at.warning]  # as displayed


def _tick(at, table: int, run_ids: list[str]) -> None:
    """Tick the rows of these runs in one of the page's tables, as a click does."""
    frame = at.dataframe[table]
    order = list(frame.value["run_id"])
    at.session_state[frame.key] = {"selection": {"rows": sorted(order.index(r) for r in run_ids),
                                                 "columns": []}}
    at.run()


def _url_runs(at) -> list[str]:
    return [r for r in str(at.query_params.get("runs", "")).strip("[]'").split(",") if r]


def test_ticked_rows_are_the_selection_and_survive_a_filter(app, store):
    """Ticking rows selects those runs (URL ``runs=``); runs hidden by a filter stay
    selected while rows of the filtered table are ticked."""
    ids = store["ids"]
    at = app("runs")
    _tick(at, 0, [ids["alpha"], ids["beta"]])
    assert sorted(_url_runs(at)) == sorted([ids["alpha"], ids["beta"]])
    at.multiselect(key="runs_project").set_value(["nlp"]).run()
    _ok(at)
    assert list(at.dataframe[0].value["run"]) == ["delta"]
    _tick(at, 0, [ids["delta"]])
    _ok(at)
    assert sorted(_url_runs(at)) == sorted([ids["alpha"], ids["beta"], ids["delta"]])
    assert any("3 selected" in c.value for c in at.caption)


def test_selection_from_the_url_is_ticked(app, store):
    """A link's ``runs=`` shows as ticked rows."""
    ids = store["ids"]
    at = app("runs", runs=f"{ids['gamma']},{ids['delta']}")
    _ok(at)
    frame = at.dataframe[0]
    order = list(frame.value["run_id"])
    import json

    ticked = json.loads(frame.proto.selection_default)["selection"]["rows"]
    assert sorted(order[i] for i in ticked) == sorted([ids["gamma"], ids["delta"]])


def test_differing_config_columns_are_shown_by_default(app):
    """Config keys whose values differ between the shown runs are columns by default;
    keys equal across them are not (beta and beta-s2 differ only by seed)."""
    at = app("runs", run=False)
    at.session_state["runs_text"] = "beta"
    at.run()
    _ok(at)
    cols = set(at.dataframe[0].value.columns)
    assert "cfg:seed" in cols and "cfg:lr" not in cols and "cfg:model.width" not in cols
    at = app("runs")
    assert {"cfg:lr", "cfg:seed", "cfg:model.width"} <= set(at.dataframe[0].value.columns)


def test_progress_for_every_status():
    """Finished runs are complete; others reached steps of those planned; without a plan
    the progress is empty (the step column says how far the run got)."""
    runs = pl.DataFrame({"status": ["finished", "crashed", "killed", "running", "failed"],
                         "last_step": [10, 599, 41, 99, None],
                         "total_steps": [None, 1000, None, 400, 100]})
    got = runs.select(runs_table.progress())["progress"].to_list()
    assert got == [1.0, 0.6, None, 0.25, None]


def test_progress_column_in_the_view(app):
    """Finished and failed runs of the store show progress too, not only the running one."""
    table = app("runs").dataframe[0].value.set_index("run")
    assert table.loc["alpha", "progress"] == 1.0
    assert table.loc["delta", "progress"] == 1.0  # failed after its 200 planned steps
    assert 0 < table.loc["gamma", "progress"] < 1


def test_sort_and_filter_by_metric_summary_and_config_from_the_url(app, store):
    """``?sort=-loss:min`` orders by each run's minimum loss (from the store, descending);
    ``?filter=`` keeps rows matching every condition; both columns are shown."""
    at = app("runs", sort="-loss:min", filter="cfg:lr>=0.01,status~fin")
    assert not _ok(at)
    table = at.dataframe[0].value
    with duckdb.connect(str(store["db"]), read_only=True) as con:
        expected = con.execute(
            "SELECT r.name, s.min FROM runs r JOIN metric_summary s USING (run_id) WHERE s.key = 'loss' "
            "AND r.status = 'finished' AND r.config->>'lr' >= '0.01' ORDER BY s.min DESC").fetchall()
    assert len(expected) == 3  # beta and beta-s2 tie: same lr, same curve
    assert sorted(table["run"]) == sorted(name for name, _ in expected)
    assert list(table["loss:min"]) == pytest.approx([m for _, m in expected])
    assert "loss:min" in table.columns
    assert list(table["loss:min"]) == sorted(table["loss:min"], reverse=True)


def test_sort_widget_writes_the_url(app):
    """Choosing a sort in the page puts it in the URL (a link reproduces the table)."""
    at = app("runs")
    at.selectbox(key="runs_sort").set_value("cfg:lr").run()
    at.checkbox(key="runs_desc").check().run()
    _ok(at)
    assert str(at.query_params["sort"]).strip("[]'") == "-cfg:lr"
    lrs = list(at.dataframe[0].value["cfg:lr"])
    assert lrs == sorted(lrs, reverse=True)


@pytest.mark.parametrize(("group", "labels"), [
    ("lr", {"0.1", "0.01", "0.003"}),
    ("group_name", {"lr-sweep", "(none)"}),
])
def test_grouped_tables_are_collapsible(app, group, labels):
    """``?group=`` (a config key or the run group, as in Charts) draws one collapsed table
    per group, its label and run count in the expander title."""
    at = app("runs", group=group)
    assert not _ok(at)
    titles = [e.label for e in at.expander][1:]
    assert {re.sub(r"\\(.)", r"\1", t).split(" — ")[0] for t in titles} == labels
    assert sum(len(d.value) for d in at.dataframe) == 5
    assert not any(e.proto.expanded for e in at.expander[1:])


def test_cols_from_the_url(app):
    """``?cols=`` replaces the default columns with exactly those named."""
    at = app("runs", cols="cfg:lr,acc:max")
    assert not _ok(at)
    table = at.dataframe[0].value
    assert "cfg:lr" in table.columns and "acc:max" in table.columns
    assert "cfg:seed" not in table.columns
    assert table.set_index("run").loc["alpha", "acc:max"] == pytest.approx(199 / 200)


@pytest.mark.parametrize(("params", "needle"), [
    ({"sort": "no_such_column"}, "?sort= names no column"),
    ({"sort": "x" * 300}, "?sort="),
    ({"filter": "cfg:lr>abc"}, "holds numbers"),
    ({"filter": "nonsense"}, "expected FIELD OP VALUE"),
    ({"filter": "nope=1"}, "?filter= names no column"),
    ({"group": "no.such.key"}, "?group= names no column"),
    ({"cols": "cfg:nope,loss:last"}, "?cols= names no column 'cfg:nope'"),
    ({"cols": "no/such/key:max"}, "No run logged the metric 'no/such/key'"),
    ({"filter": ",".join(["status=finished"] * 60)}, "the first 50 are used"),
    ({"from": "inf", "to": "1e400"}, "?from="),
])
def test_malformed_runs_parameters_give_a_notice(app, params, needle):
    """Each malformed parameter: the table still renders, a notice names it, no error."""
    at = app("runs", **params)
    notices = " ".join(_ok(at))
    assert needle in notices, notices
    assert at.dataframe


def test_ten_thousand_run_ids_are_cut_with_a_notice(app, store):
    """10,000 ids in ``runs=`` (real ones first): cut to a bound and said so; the Runs
    view renders with the real ones ticked."""
    ids = [store["ids"]["alpha"], *(f"r{i:05d}" for i in range(10_000))]
    at = app("runs", runs=",".join(ids))
    notices = " ".join(_ok(at))
    assert "?runs=" in notices
    assert _url_runs(at) == [store["ids"]["alpha"]]


def test_idle_rerun_reads_nothing(app, monkeypatch):
    """A rerun with no new data in the store is served from the caches: no store read."""
    from runlake.dashboard import data

    at = app("runs", sort="loss:min", group="lr")
    _ok(at)
    calls = []
    real = data.read_store
    monkeypatch.setattr(data, "read_store", lambda *a, **k: calls.append(a) or real(*a, **k))
    at.run()
    _ok(at)
    assert calls == []


def test_sql_view_runs_a_query_from_the_url(app, store):
    """``?view=sql&sql=...`` runs the query on load and shows its rows."""
    at = app("sql", sql="SELECT name FROM runs ORDER BY name")
    _ok(at)
    assert list(at.dataframe[0].value["name"]) == sorted(store["names"])
    assert at.text_area(key="sql_text").value == "SELECT name FROM runs ORDER BY name"


def test_sql_from_the_url_stays_in_the_sandbox(app, store):
    """A linked write is refused like a typed one; the store is unchanged."""
    at = app("sql", sql="DELETE FROM runs")
    assert not at.exception
    assert at.error and at.error[0].value.startswith("Query refused:")
    with duckdb.connect(str(store["db"]), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == len(store["names"])


def test_sql_too_long_for_a_link_is_not_run(app):
    """A ``?sql=`` over the bound is dropped with a notice and not run."""
    at = app("sql", sql="SELECT 1 " + " " * MAX_SQL_CHARS)
    notices = " ".join(_ok(at))
    assert "?sql= is" in notices and "not run" in notices
    assert not at.dataframe
    assert "sql" not in at.query_params


def test_running_a_typed_query_puts_it_in_the_url(app):
    """The Run button writes the query into ``?sql=`` (a shareable link)."""
    at = app("sql")
    at.text_area(key="sql_text").input("SELECT 42 AS answer").run()
    at.button(key="sql_run").click().run()
    _ok(at)
    assert str(at.query_params["sql"]).strip("[]'") == "SELECT 42 AS answer"


def test_differing_keys_and_filters_on_a_frame():
    """differing_keys: values that differ or keys only some runs have; apply_filters: every
    operator, numbers compared as numbers, a notice for text against a number column."""
    configs = {"a": {"lr": 0.1, "seed": 1, "x": 1}, "b": {"lr": 0.1, "seed": 2}, "c": {"lr": 1}}
    table = runs_table.config_frame(configs, list(configs), ["lr", "seed", "x"])
    assert runs_table.differing_keys(table, ["a", "b"]) == ["seed", "x"]
    assert runs_table.differing_keys(table, ["a", "c"]) == ["lr", "seed", "x"]
    frame = pl.DataFrame({"run": ["a", "b", "c"], "cfg:lr": [0.1, 0.01, None],
                          "status": ["finished", "failed", "running"]})
    for filt, expected in [(("cfg:lr", ">", "0.05"), ["a"]), (("cfg:lr", "<=", "0.1"), ["a", "b"]),
                           (("cfg:lr", "!=", "0.1"), ["b"]), (("status", "~", "FIN"), ["a"]),
                           (("status", "=", "running"), ["c"])]:
        got, notices = runs_table.apply_filters(frame, [filt])
        assert list(got["run"]) == expected and not notices, filt
    got, notices = runs_table.apply_filters(frame, [("cfg:lr", ">", "big")])
    assert got.height == 3 and "holds numbers" in notices[0]


def test_table_frame_keeps_run_order_and_types():
    """table_frame: one row per run in the given order; numeric configs typed, mixed ones
    text; a metric summary column joined by run id."""
    runs = pl.DataFrame({
        "run_id": ["r2", "r1"], "project": ["p", "p"], "name": [None, "one"],
        "group_name": [None, "g"], "status": ["finished", "crashed"],
        "started_at": [datetime(2024, 1, 1)] * 2, "last_seen_at": [datetime(2024, 1, 1)] * 2,
        "duration_s": [1.0, 2.0], "last_step": [9, 4], "total_steps": [10, 10],
        "eta_s": [None, None], "heartbeat_s": [None, None], "attempts": [1, 2],
        "tags": [["t"], []]})
    configs = {"r1": {"lr": 1, "opt": "adam"}, "r2": {"lr": 0.5, "opt": {"b": 1}}}
    summaries = pl.DataFrame({"run_id": ["r1", "r2"], "key": ["loss", "loss"],
                              "last": [3.0, 4.0], "min": [1.0, 2.0], "max": [5.0, 6.0]})
    table = runs_table.config_frame(configs, ["r1", "r2"], ["lr", "opt"])
    got = runs_table.table_frame(runs, table, ["lr", "opt"], summaries, ["loss:min"],
                                 datetime(2024, 1, 2), lambda s, a, h: s)
    assert got["run"].to_list() == ["r2", "one"]
    assert got["cfg:lr"].to_list() == [0.5, 1.0] and got["cfg:opt"].to_list() == ['{"b": 1}', "adam"]
    assert got["loss:min"].to_list() == [2.0, 1.0]
    assert got["progress"].to_list() == [1.0, 0.5]
