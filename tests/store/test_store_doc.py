"""docs/store.md's table reference is generated from the spec, and CI fails while it is
stale (as sqlite-utils checks its docs with ``cog --check``)."""

from __future__ import annotations

import subprocess
import sys

from runlake.store import docs
from runlake.store.spec import TABLES, VIEWS


def test_docs_store_md_is_fresh():
    """`python -m runlake.store.docs --check` passes on the committed docs/store.md."""
    done = subprocess.run([sys.executable, "-m", "runlake.store.docs", "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_reference_names_every_table_column_and_view():
    """The generated part has a heading per table and view and a row per column."""
    text = docs.render()
    for t in TABLES.values():
        assert f"### `{t.name}` — " in text
        assert all(f"| {c.name} | `{c.duck}`" in text for c in t.columns), t.name
    assert all(f"### View `{v}`" in text for v in VIEWS)


def test_stale_doc_fails_the_check_and_is_rewritten(tmp_path, capsys):
    """A hand edit inside the markers makes --check exit 1 with one line naming the file and
    the command to run; running it restores the reference and keeps the prose around it."""
    doc = tmp_path / "store.md"
    fresh = docs.update(f"# intro\n\n{docs.BEGIN}\n{docs.END}\n\n## after\n")
    doc.write_text(fresh.replace("| the run |", "| a run |", 1), encoding="utf-8")
    assert docs.main(["--check", str(doc)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(doc) in err and "python -m runlake.store.docs" in err
    assert docs.main([str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == fresh
    assert fresh.startswith("# intro\n\n") and fresh.endswith("\n\n## after\n")
    assert docs.main(["--check", str(doc)]) == 0


def test_doc_without_markers_is_a_clear_error(tmp_path, capsys):
    """A doc that lost its markers is refused (exit 2), not overwritten."""
    doc = tmp_path / "store.md"
    doc.write_text("# no markers\n", encoding="utf-8")
    assert docs.main([str(doc)]) == 2
    assert "markers" in capsys.readouterr().err
    assert doc.read_text(encoding="utf-8") == "# no markers\n"
