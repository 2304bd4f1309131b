"""locate(): which store a root uses (flag > $RUNLAKE_STORE > the root's setting > what
exists > the DuckDB file), what --db names, and the disagreements it refuses."""

from __future__ import annotations

import json

import duckdb
import pytest

from runlake.schemas.errors import StoreError
from runlake.store.location import (
    LAKE_DIR,
    LAKE_META,
    SETTING_FILE,
    STORE_ENV,
    StoreLocation,
    locate,
    write_setting,
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)


def _duck(root):
    duckdb.connect(str(root / "runlake.duckdb")).close()
    return root / "runlake.duckdb"


def _lake(root, name=LAKE_DIR):
    (root / name / LAKE_META).mkdir(parents=True)
    return root / name


def test_an_empty_root_uses_the_duckdb_file(tmp_path):
    """Nothing to configure: a new root's store is <root>/runlake.duckdb."""
    assert locate(tmp_path) == StoreLocation("duckdb", tmp_path / "runlake.duckdb", tmp_path)


def test_a_root_holding_only_a_lake_uses_it(tmp_path):
    """What exists decides when nothing is configured: only a lake folder -> the lake."""
    lake = _lake(tmp_path)
    assert locate(tmp_path) == StoreLocation("lake", lake, tmp_path)
    assert locate(tmp_path).exists()


def test_a_lake_folder_without_its_marker_is_not_a_lake(tmp_path):
    """A bare runlake-lake/ folder (no _runlake/) does not make the root a lake root."""
    (tmp_path / LAKE_DIR).mkdir()
    assert locate(tmp_path).kind == "duckdb"


def test_both_stores_and_no_setting_is_refused_naming_both(tmp_path):
    """Two stores and nothing saying which: an error naming both paths and the fix."""
    duck, lake = _duck(tmp_path), _lake(tmp_path)
    with pytest.raises(StoreError) as err:
        locate(tmp_path)
    text = str(err.value)
    assert str(duck) in text and str(lake) in text and SETTING_FILE in text
    assert "runlake ingest --lake" in text and "\n" not in text


@pytest.mark.parametrize("kind", ["lake", "duckdb"])
def test_the_setting_chooses_between_two_stores(tmp_path, kind):
    """The root's setting file settles a root holding both stores."""
    _duck(tmp_path), _lake(tmp_path)
    assert write_setting(tmp_path, kind) == tmp_path / SETTING_FILE
    assert json.loads((tmp_path / SETTING_FILE).read_text()) == {"store": kind}
    assert locate(tmp_path).kind == kind


def test_the_setting_beats_what_exists(tmp_path):
    """A root set to the lake uses it before the lake exists (ingest creates it)."""
    _duck(tmp_path)
    write_setting(tmp_path, "lake")
    found = locate(tmp_path)
    assert found == StoreLocation("lake", tmp_path / LAKE_DIR, tmp_path)
    assert not found.exists()


def test_the_environment_chooses_for_an_unset_root(tmp_path, monkeypatch):
    """$RUNLAKE_STORE=lake makes a new root a lake root; it beats what exists."""
    monkeypatch.setenv(STORE_ENV, "lake")
    assert locate(tmp_path).kind == "lake"
    _duck(tmp_path), _lake(tmp_path)
    assert locate(tmp_path).kind == "lake"  # both exist: the environment says which
    monkeypatch.setenv(STORE_ENV, "DuckDB")  # any case
    assert locate(tmp_path).kind == "duckdb"


def test_a_flag_beats_the_environment(tmp_path, monkeypatch):
    """An explicit kind (--duckdb) wins over $RUNLAKE_STORE."""
    monkeypatch.setenv(STORE_ENV, "lake")
    assert locate(tmp_path, kind="duckdb").kind == "duckdb"


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_choice_contradicting_the_setting_is_refused(tmp_path, monkeypatch, how):
    """$RUNLAKE_STORE or a flag naming the other kind than the root's setting: an error
    naming the setting, both stores and what to run."""
    write_setting(tmp_path, "duckdb")
    kind = None
    if how == "env":
        monkeypatch.setenv(STORE_ENV, "lake")
    else:
        kind = "lake"
    with pytest.raises(StoreError) as err:
        locate(tmp_path, kind=kind)
    text = str(err.value)
    assert str(tmp_path / SETTING_FILE) in text
    assert str(tmp_path / LAKE_DIR) in text and str(tmp_path / "runlake.duckdb") in text
    assert "runlake ingest --lake" in text
    assert ("RUNLAKE_STORE=lake" if how == "env" else "--lake") in text


def test_a_choice_agreeing_with_the_setting_is_fine(tmp_path, monkeypatch):
    """No error when every source names the same kind."""
    write_setting(tmp_path, "lake")
    monkeypatch.setenv(STORE_ENV, "lake")
    assert locate(tmp_path, kind="lake").kind == "lake"


@pytest.mark.parametrize("text", ["{", '{"store": "sqlite"}', '["lake"]', '{"kind": "lake"}'])
def test_a_bad_setting_file_is_a_clear_error(tmp_path, text):
    """A setting that is not {"store": "lake"|"duckdb"} names its path and the fix."""
    (tmp_path / SETTING_FILE).write_text(text)
    with pytest.raises(StoreError, match="fix it or delete it") as err:
        locate(tmp_path)
    assert str(tmp_path / SETTING_FILE) in str(err.value)


@pytest.mark.parametrize("value", ["sqlite", "lakes"])
def test_a_bad_environment_value_is_a_clear_error(tmp_path, monkeypatch, value):
    """$RUNLAKE_STORE must be lake or duckdb; the error says so."""
    monkeypatch.setenv(STORE_ENV, value)
    with pytest.raises(StoreError, match=r"\$RUNLAKE_STORE is .*expected 'lake' or 'duckdb'"):
        locate(tmp_path)


def test_a_bad_flag_value_is_a_clear_error(tmp_path):
    """A kind that is neither lake nor duckdb is refused, not taken for duckdb."""
    with pytest.raises(StoreError, match="expected 'lake' or 'duckdb'"):
        locate(tmp_path, kind="parquet")


def test_db_names_the_store_itself(tmp_path, monkeypatch):
    """--db: a DuckDB file is the file, a lake folder the lake, whatever the environment
    or the root's setting say about the root's own store."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    duck, lake = _duck(other), _lake(other, "team-lake")
    monkeypatch.setenv(STORE_ENV, "lake")
    write_setting(tmp_path, "lake")
    assert locate(tmp_path, duck) == StoreLocation("duckdb", duck, tmp_path)
    assert locate(None, lake) == StoreLocation("lake", lake, None)
    assert locate(None, str(lake), kind="lake").kind == "lake"


def test_db_that_is_a_plain_folder_is_refused(tmp_path):
    """A folder without _runlake/ is neither a DuckDB file nor a lake."""
    with pytest.raises(StoreError, match="not a runlake lake") as err:
        locate(None, tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("kind", ["lake", "duckdb"])
def test_db_contradicting_the_flag_is_refused(tmp_path, kind):
    """--lake with --db a DuckDB file (or --duckdb with a lake folder) is an error."""
    target = _duck(tmp_path) if kind == "lake" else _lake(tmp_path)
    with pytest.raises(StoreError, match=f"--{kind} was given but") as err:
        locate(None, target, kind=kind)
    assert str(target) in str(err.value)


@pytest.mark.parametrize("name, env, kind, wanted", [
    ("new.duckdb", "lake", None, "duckdb"),  # the ending says what to create
    ("store", None, None, "duckdb"),
    ("store", "lake", None, "lake"),
    ("store", None, "lake", "lake"),
    (LAKE_DIR, None, None, "lake"),  # a root's lake folder, not made yet
])
def test_db_not_there_yet(tmp_path, monkeypatch, name, env, kind, wanted):
    """A --db that does not exist yet is a store to create: the flag, a .duckdb ending,
    the environment, or the lake folder's name say which kind."""
    if env:
        monkeypatch.setenv(STORE_ENV, env)
    assert locate(tmp_path, tmp_path / name, kind).kind == wanted


def test_write_setting_replaces_atomically(tmp_path):
    """Writing the setting again replaces it and leaves no temporary file behind."""
    write_setting(tmp_path, "lake")
    write_setting(tmp_path, "duckdb")
    assert sorted(p.name for p in tmp_path.iterdir()) == [SETTING_FILE]
    assert locate(tmp_path).kind == "duckdb"
    with pytest.raises(StoreError):
        write_setting(tmp_path, "delta")


def test_the_root_defaults_to_runlake_dir(tmp_path, monkeypatch):
    """locate() without a root resolves it like every command ($RUNLAKE_DIR)."""
    monkeypatch.setenv("RUNLAKE_DIR", str(tmp_path))
    _lake(tmp_path)
    assert locate() == StoreLocation("lake", tmp_path / LAKE_DIR, tmp_path)
