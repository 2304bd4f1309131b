"""Severities have one home (``runlake.schemas.severity``): its order and helpers, and a scan
that no other module lists them again."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import duckdb
import pytest

from runlake.schemas.errors import ConfigError
from runlake.schemas.severity import (
    SEVERITIES,
    at_least,
    by_severity,
    parse_severity,
    severity_order_sql,
    severity_rank,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("analysis", "dashboard", "emitter", "ingest", "runlake", "schemas", "store")
HOME = REPO / "schemas" / "severity.py"
FROZEN = {REPO / "store" / "migrations.py"}  # released SQL text: never edited, by design
_CASE_ON_SEVERITY = re.compile(r"CASE\s+\w*severity\w*\s+WHEN", re.IGNORECASE)
_GLUE = r"\W+(?:(?:or|and)\W+)?"  # between listed names: punctuation, quotes, "or", "and"
_LISTED = re.compile(_GLUE.join(rf"\b{s}\b" for s in SEVERITIES))
"""The names one after another, as prose or a comment lists them ("info | warning | critical");
a detector's SQL choosing between them (``THEN 'critical' ELSE 'warning'``) is a rule, not a list."""


def test_order_is_least_severe_first():
    """info < warning < critical, and the rank is the position."""
    assert [severity_rank(s) for s in SEVERITIES] == list(range(len(SEVERITIES)))
    assert severity_rank("info") < severity_rank("warning") < severity_rank("critical")


@pytest.mark.parametrize("given, expected", [
    ("warning", "warning"), ("WARNING", "warning"), (" Critical ", "critical"), ("info", "info")])
def test_parse_is_case_insensitive(given, expected):
    """Any case names a severity; the canonical lower-case name comes back."""
    assert parse_severity(given) == expected


@pytest.mark.parametrize("bad", ["warn", "error", "", None, 3])
def test_unknown_severity_names_the_valid_ones(bad):
    """An unknown severity is a ConfigError that lists every valid one."""
    with pytest.raises(ConfigError, match="info, warning, critical"):
        parse_severity(bad)
    with pytest.raises(ConfigError, match="info, warning, critical"):
        severity_rank(bad)


def test_at_least():
    """The severities at or above a minimum; None means all of them."""
    assert at_least(None) == SEVERITIES
    assert at_least("WARNING") == SEVERITIES[1:]
    assert at_least(SEVERITIES[-1]) == SEVERITIES[-1:]


def test_by_severity_checks_the_palette():
    """A per-severity table must have exactly one entry per severity."""
    assert list(by_severity(tuple(range(len(SEVERITIES))))) == list(SEVERITIES)
    with pytest.raises(ValueError, match="one entry per severity"):
        by_severity(("red", "blue"))
    with pytest.raises(ValueError, match="one entry per severity"):
        by_severity({"info": 1})


def test_generated_case_orders_worst_first_in_duckdb():
    """The generated CASE sorts critical first, unknown values last, in real SQL."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (severity VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [["info"], ["bogus"], ["critical"], ["warning"]])
    got = [r[0] for r in con.sql(f"SELECT severity FROM t ORDER BY {severity_order_sql()}").fetchall()]
    assert got == [*reversed(SEVERITIES), "bogus"]
    up = con.sql(f"SELECT severity FROM t ORDER BY {severity_order_sql(worst_first=False)}").fetchall()
    assert [r[0] for r in up] == [*SEVERITIES, "bogus"]


def _offences(path: Path, root: Path = REPO) -> list[str]:
    """Places in one module that list severities by name (two or more in one literal)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set(SEVERITIES)
    found = []
    for node in ast.walk(tree):
        elements = None
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):  # Literal[...]'s slice too
            elements = node.elts
        elif isinstance(node, ast.Dict):
            elements = [k for k in node.keys if k is not None]
        if elements is not None:
            hits = {e.value for e in elements if isinstance(e, ast.Constant) and e.value in names}
            if len(hits) >= 2:
                found.append(f"{path.relative_to(root)}:{node.lineno}: lists {sorted(hits)}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _LISTED.search(text):
                found.append(f"{path.relative_to(root)}:{node.lineno}: text lists the severities")
            if _CASE_ON_SEVERITY.search(text):
                found.append(f"{path.relative_to(root)}:{node.lineno}: a hand-written severity CASE")
    return found


def test_the_severities_are_listed_only_in_their_home():
    """No module but schemas/severity.py lists the severities (tuples, dicts, Literal,
    prose naming all three, SQL CASE orderings): they import it instead."""
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))
             if p != HOME and p not in FROZEN]
    assert len(files) > 50  # the scan really looked at the code
    offences = [o for p in files for o in _offences(p)]
    assert not offences, "\n".join(offences)


def test_the_scan_finds_a_restated_list(tmp_path):
    """The scan itself flags each kind of restatement (so the test above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        'A = ("info", "warning", "critical")\n'
        'B = {"warning": 1, "critical": 2}\n'
        'C = Literal["info", "critical"]\n'
        'D = "levels: info, warning or critical"\n'
        'E = "ORDER BY CASE severity WHEN \'critical\' THEN 0 END"\n'
    )
    assert len(_offences(bad, tmp_path)) == 5
