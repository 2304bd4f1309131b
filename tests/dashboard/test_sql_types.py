"""The SQL view shows any DuckDB type (lists, structs, maps, blobs, huge ints, NaN) and its
CSV download works, and it reports the console's limits instead of crashing."""

from __future__ import annotations

import math

import pytest

from runlake.analysis.sql import run_query
from runlake.dashboard.view_sql import display_frame

EVERY_TYPE = """
SELECT ['a', 'b'] AS list, {'x': 1, 'y': [1, 2]} AS struct, map([1, 2], ['p', 'q']) AS map,
       '\\xAA\\x00'::BLOB AS blob, 170141183460469231731687303715884105727::HUGEINT AS huge,
       18446744073709551615::UBIGINT AS ubig, 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf,
       1.5::DECIMAL(38, 10) AS dec, INTERVAL 3 DAY AS span, uuid() AS id,
       [1, 2]::INTEGER[2] AS arr, [[1], [2, 3]] AS nested, union_value(k := 1) AS u,
       'a'::ENUM('a', 'b') AS enum, '1010'::BIT AS bits, TIME '12:00' AS t,
       TIMESTAMPTZ '2020-01-01 00:00+00' AS tz, 'infinity'::DATE AS dinf,
       '{"j": 1}'::JSON AS json, NULL AS nothing, 42 AS plain, 1 AS plain
"""


def _run(app, sql):
    at = app("sql")
    at.text_area(key="sql_text").input(sql).run()
    return at.button(key="sql_run").click().run()


@pytest.mark.parametrize("sql", ["SELECT run_id, tags FROM runs", EVERY_TYPE,
                                 "PIVOT metrics ON key USING max(value) GROUP BY run_id"])
def test_sql_view_shows_any_type(app, store, sql):
    """List columns (the crash), every other DuckDB type and a PIVOT display with a CSV."""
    at = _run(app, sql)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.dataframe and len(at.dataframe[0].value) >= 1
    assert at.get("download_button")


def test_sql_view_shows_tags_as_json(app, store):
    """A VARCHAR[] column reads as JSON lists."""
    table = _run(app, "SELECT name, tags FROM runs ORDER BY name").dataframe[0].value
    assert table["tags"].iloc[0] == '["baseline"]'


def test_sql_view_reports_a_timeout(app, store, monkeypatch):
    """A query past $RUNLAKE_SQL_TIMEOUT is an error message in the view, not a hang."""
    monkeypatch.setenv("RUNLAKE_SQL_TIMEOUT", "1")
    at = _run(app, "SELECT count(*) FROM range(10000000000000) t(i) WHERE i % 7 = 3")
    assert not at.exception
    assert at.error and "query stopped after 1 s" in at.error[0].value


def test_display_frame_keeps_plain_columns_typed(store):
    """Plain columns keep their type (NaN stays a float), the rest become text; CSV works."""
    result = run_query(store["db"], EVERY_TYPE)
    frame = display_frame(result.columns, result.rows)
    assert frame.columns[-2:] == ["plain", "plain_2"]
    assert math.isnan(frame["nan"][0]) and frame["inf"][0] == math.inf
    assert frame["plain"].dtype.is_integer() and frame["dec"][0] == 1.5
    assert frame["list"][0] == '["a", "b"]' and frame["struct"][0] == '{"x": 1, "y": [1, 2]}'
    assert frame["blob"][0] == "\\xAA\\x00"
    assert frame["huge"][0] == str(2**127 - 1) and frame["ubig"][0] == str(2**64 - 1)
    assert frame["nothing"][0] is None
    assert frame.write_csv().count("\n") == 2
