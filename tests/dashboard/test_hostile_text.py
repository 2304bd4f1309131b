"""User text is shown as text: hostile names never become markup, images, links or scripts.

A store is seeded, with the real emitter and ingest, with names that are Markdown/HTML
payloads in every place user text can reach (run name, project, tag, metric key, config
key and value, log message, alert message and suggestion, augment key, item id, checkpoint
uri). Every view is then run with AppTest and every Markdown-rendering field is checked,
and the real server is loaded in headless Chromium while a listener on the payload's image
port counts the requests it gets.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from pathlib import Path

import pytest

import sys

sys.path.insert(0, str(Path(__file__).parent))
from markdown_fields import markdown_fields  # noqa: E402
from runlake.dashboard.selection import VIEWS  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

# Each fragment is what would be live markup if it reached Markdown unescaped.
FRAGMENTS = ("![b](", "<img", "<script", "[x](javascript", "**bold**", "$x$", ":red[x]",
             "__bold__")


def payload(port: int) -> str:
    """A name carrying every kind of markup the dashboard could render."""
    return (f"![b](http://127.0.0.1:{port}/b.png) <img src=x onerror=alert(1)> "
            f"<script>alert(2)</script> [x](javascript:alert(1)) **bold** $x$ :red[x]")


class Listener:
    """A TCP listener on a free loopback port that counts the connections it accepts: the
    image URL in the payload points here, so a rendered image shows up as a hit."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A store whose every user-written string is the payload (two runs, so Compare works)."""
    import runlake
    from runlake.analysis import anomalies
    from runlake.ingest import ingest
    from runlake.store.duck import write_store

    listener = Listener()
    bad = payload(listener.port)
    root = tmp_path_factory.mktemp("hostile")
    logger = logging.getLogger("hostile-trainer")
    logger.setLevel(logging.INFO)
    ids = []
    for i, lr in enumerate((0.1, 0.01)):
        # project names are folder names (letters, digits, ._+=@-): the most markup they carry
        run = runlake.init("p.__bold__.q", f"{bad} {i}", root=root, console=False,
                           config={bad: bad, "lr": lr, "seed": i}, tags=[bad],
                           flush_interval=0.2)
        for step in range(60):
            value = 1.0 / (step + 1) * (50 if step == 40 else 1)
            run.log({bad: value, "loss": value}, step=step)
        run.log_data([bad, f"ok-{i}"], split="train", step=10, augment={bad: True})
        run.log_data([bad], split="eval", step=20)
        run.log_checkpoint(bad, step=50, bytes=1, sha256="0" * 64)
        run.alert(bad, key=bad, suggestion=bad, step=40)
        logger.warning(bad)
        run.finish()
        ids.append(run.id)
    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
    anomalies.detect(db=db)
    with write_store(db) as con:  # any DuckDB client can write the store: project too
        con.execute("UPDATE runs SET project = ? WHERE run_id = ?", [bad, ids[1]])
    yield {"db": db, "ids": ids, "payload": bad, "listener": listener}
    listener.close()


def _live_markup(text: str) -> list[str]:
    """The FRAGMENTS that ``text`` would render as markup: backslash-escaped characters
    are neutralised first, so ``\\!\\[b\\]\\(`` does not count."""
    plain = re.sub(r"\\[!-/:-@\[-`{-~]", "\x00", text)
    return [f for f in FRAGMENTS if f in plain]


def _check(at) -> list[tuple[str, str]]:
    assert not at.exception, [e.value for e in at.exception]
    fields = markdown_fields(at)
    live = [(kind, text[:300], _live_markup(text)) for kind, text in fields if _live_markup(text)]
    assert not live, live
    return fields


def _app(db: Path, monkeypatch, view: str, **params: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RUNLAKE_DB", str(db))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"),
                           default_timeout=60)
    at.query_params.update({"view": view, "refresh": "off", **params})
    return at


@pytest.mark.parametrize("view", list(VIEWS))
def test_no_view_renders_user_text_as_markup(hostile, monkeypatch, view):
    """Every view, with the hostile runs selected and focused on the hostile key, puts user
    text into Markdown fields only escaped."""
    at = _app(hostile["db"], monkeypatch, view, runs=",".join(hostile["ids"]),
              key=hostile["payload"]).run()
    fields = _check(at)
    if view == "lineage":
        at.text_input(key="lineage_item").set_value(hostile["payload"]).run()
        fields = _check(at)
    if view == "sql":
        at.button(key="sql_run").click().run()
        _check(at)
    if view in ("charts", "anomalies", "lineage", "compare"):
        # the escaped payload is on the page: the check above saw user text, not nothing
        shown = [t for _, t in fields if "onerror=alert(1)" in re.sub(r"\\(.)", r"\1", t)]
        assert shown, [t for _, t in fields]


def test_escape_md_shows_text_literally():
    """escape_md backslash-escapes every ASCII punctuation character and flattens lines."""
    from runlake.dashboard.widgets import escape_md

    out = escape_md("a\n# b ![c](d) `e` :red[f] $g$ <h> & i_j_")
    assert "\n" not in out
    assert not _live_markup(out)
    assert re.sub(r"\\(.)", r"\1", out) == "a # b ![c](d) `e` :red[f] $g$ <h> & i_j_"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_browser_fetches_nothing_and_builds_no_tags_from_user_text(hostile, ui):
    """In headless Chromium every view's DOM has no <img>/<script>/javascript: link made
    from user text, and nothing requested the payload's image URL."""
    port = ui.free_port()
    proc = ui.start_ui(hostile["db"], port)
    runs = ",".join(hostile["ids"])
    try:
        seen_text = False
        for view, title in VIEWS.items():
            from urllib.parse import urlencode

            query = urlencode({"view": view, "runs": runs, "key": hostile["payload"],
                               "refresh": "off"})
            dom = ui.load_dom(f"http://127.0.0.1:{port}/?{query}", title)
            assert f">{title}</span>" in dom, f"{view} did not render"
            assert not re.search(r"<img[^>]*(src=\"x\"|127\.0\.0\.1:%d)" % hostile["listener"].port, dom), view
            assert "<script>alert(2)" not in dom, view
            assert not re.search(r"href=\"\s*javascript:", dom, re.I), view
            assert "onerror=\"alert" not in dom, view
            seen_text |= "&lt;img src=x onerror=alert(1)&gt;" in dom
        assert seen_text, "the payload was never shown as text: the check saw nothing"
        assert hostile["listener"].hits == 0, "the browser requested the payload's image URL"
    finally:
        ui.stop(proc)


def _html_structure(html: str) -> dict[str, list]:
    """Tags and dangerous attributes in an HTML document, from a real parser."""
    from html.parser import HTMLParser

    found: dict[str, list] = {"tags": [], "bad_attrs": []}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found["tags"].append(tag)
            for name, value in attrs:
                url = name in ("href", "src", "xlink:href", "action", "formaction", "data")
                if name.startswith("on") or url and "javascript:" in (value or "").lower():
                    found["bad_attrs"].append((tag, name, value))

    Parser().feed(html)
    return found


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_report_carries_user_text_only_as_text(hostile, tmp_path, fmt):
    """The HTML and Markdown reports of the hostile runs contain no raw <script, <img or
    javascript: from user text, and the HTML parses to no script/img tag or handler."""
    from runlake.analysis.report import build_report, write_report

    report = build_report(hostile["db"], hostile["ids"], group_by="seed")
    text = write_report(report, tmp_path / f"r.{fmt}", fmt=fmt).read_text(encoding="utf-8")
    assert "onerror=alert" in text, "the payload is not in the report: the check sees nothing"
    assert "<script" not in text.lower() and "<img" not in text.lower()
    if fmt == "md":
        assert "javascript:" not in text
        assert not _live_markup(text.replace("&lt;", "\x00").replace("&gt;", "\x00"))
    else:
        found = _html_structure(text)
        assert not {"script", "img", "iframe", "a"} & set(found["tags"]), found["tags"]
        assert not found["bad_attrs"], found["bad_attrs"]
