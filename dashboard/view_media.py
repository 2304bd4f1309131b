"""Media view: the images, audio, video, tables and text runs logged, and their histograms.

``?view=media&runs=<id>,<id>&keys=samples/image,grad/fc.weight&step=1200``: per media key a
step slider and, per run, the items logged at the step nearest it (with their captions and
quality scores); per histogram key a heatmap per run (x = step, y = bucket, colour = count).
With no run selected it shows the newest runs that logged any. Open keys (``?keys=``, at
most :data:`MAX_OPEN` by default) cost one query each; closed ones none.

Everything shown came from whoever trains, so it is shown as data, never as markup: keys
and run names through ``escape_md``, captions and scores with ``st.text``, text blobs with
``st.code``, table cells in ``st.dataframe``; images only of raster types (an SVG is code),
and every blob read through ``runlake.analysis.media.read_blob``, which refuses a path that
leaves the root and reports a blob whose bytes do not match their checksum.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import polars as pl
import streamlit as st

from runlake.analysis import media as queries
from runlake.dashboard import data, palette, selection, widgets
from runlake.dashboard.widgets import escape_md

__all__ = ["MAX_OPEN", "MAX_RUNS", "RASTER_IMAGES", "render", "table_frame"]

TITLE = "Media"
MAX_OPEN = 12
"""Keys open by default (media keys first, then histogram keys)."""
MAX_RUNS = 12
"""Most runs drawn side by side (a grid of 1,000 runs' media helps nobody)."""
MAX_TABLE_ROWS, MAX_TABLE_COLUMNS = 10_000, 100
MAX_TEXT_CHARS = 100_000
SMALL_IMAGE = 160
"""Images narrower than this many pixels are drawn this wide (a 32x32 sample is a speck)."""
RASTER_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
"""Image types drawn as images; any other (an SVG can carry script) is offered as a file."""
_NAME_JUNK = re.compile(r"[^A-Za-z0-9._-]+")


def render(db: str, token: tuple) -> None:
    """Draw the Media view."""
    chosen = widgets.run_picker(db, token, label="Runs (none = the newest runs with media)",
                                key="media_runs")
    overview = data.fetch(queries.media_overview, db, token, chosen)
    if not overview["upgraded"]:
        st.info("This store predates media and histograms: run `runlake ingest` once to "
                "upgrade it.")
        return
    run_ids = overview["runs"]
    if len(run_ids) > MAX_RUNS:
        st.caption(f"{len(run_ids)} runs selected: showing the media of the first {MAX_RUNS}.")
        run_ids = run_ids[:MAX_RUNS]
    media_keys = list(dict.fromkeys(r["key"] for r in overview["media"]))
    hist_keys = [r["key"] for r in overview["histograms"]]
    if not media_keys and not hist_keys:
        st.info("These runs logged no media or histograms (`run.log_media(key, data)`, "
                "`run.log_histogram(key, values)`, `watch(model, log_histograms=True)`).")
        return
    if not chosen:
        st.caption(f"No run selected: showing the {len(run_ids)} newest run(s) with media.")
    kinds = {}
    for row in overview["media"]:
        kinds.setdefault(row["key"], []).append(row["media"])
    open_keys = _open_keys(media_keys, hist_keys, kinds)
    labels = widgets.run_labels(db, token)
    root = queries.blob_root(db, data.script_args().root)
    url_step = selection.media_focus()[1]
    for key in (k for k in media_keys if k in open_keys):
        _media_key(db, token, root, run_ids, key, labels, url_step)
    shown = [k for k in hist_keys if k in open_keys]
    if shown:
        st.header("Histograms")
        for key in shown:
            _histogram_key(db, token, run_ids, key, labels)


def _open_keys(media_keys: list[str], hist_keys: list[str], kinds: dict) -> list[str]:
    """The key picker, bound to ``?keys=``; returns the open keys."""
    options = list(dict.fromkeys(media_keys + hist_keys))
    url_keys, _ = selection.media_focus()
    if url_keys is None:
        wanted = options[:MAX_OPEN]
    else:
        wanted = [k for k in url_keys if k in options]
        unknown = [k for k in url_keys if k not in options]
        if unknown:
            shown = ", ".join(repr(k) for k in unknown[:5])
            st.caption(escape_md(f"?keys= names {len(unknown)} key(s) with no media or "
                                 f"histogram in these runs ({shown}); not shown."))
        if not wanted:
            wanted = options[:MAX_OPEN]
    if st.session_state.get("media_keys__url") != wanted:
        st.session_state["media_keys"] = wanted
        st.session_state["media_keys__url"] = wanted

    def _changed() -> None:
        picked = list(st.session_state["media_keys"])
        st.session_state["media_keys__url"] = picked
        selection.set_param("keys", ",".join(picked))

    def _label(key: str) -> str:
        what = kinds.get(key, []) + (["histogram"] if key in hist_keys else [])
        return " · ".join([key, *what])

    st.multiselect("Keys", options, key="media_keys", format_func=_label, on_change=_changed,
                   placeholder="pick the keys to show")
    return list(st.session_state["media_keys"])


def _slot(key: str) -> str:
    """A widget key for a user key (any text) that is stable and short."""
    return f"{zlib.crc32(key.encode('utf-8', 'replace')):08x}{len(key)}"


def _media_key(db: str, token: tuple, root: str, run_ids: list[str], key: str,
               labels: dict[str, str], url_step: int | None) -> None:
    st.subheader(escape_md(key))
    steps = data.fetch(queries.media_steps, db, token, run_ids, key)
    step = None
    if steps:
        target = steps[-1] if url_step is None else min(steps, key=lambda s: (abs(s - url_step), s))
        slot = f"media_step_{_slot(key)}"
        if st.session_state.get(f"{slot}__url") != target:
            st.session_state[slot] = target
            st.session_state[f"{slot}__url"] = target
        if len(steps) > 1:
            def _moved() -> None:
                st.session_state[f"{slot}__url"] = st.session_state[slot]
                selection.set_param("step", str(st.session_state[slot]))

            st.select_slider("Step", steps, key=slot, on_change=_moved,
                             help="Each run shows its items at the step nearest this one.")
        step = st.session_state[slot]
    items = data.fetch(queries.media_at, db, token, run_ids, key, step)
    by_run: dict[str, list[dict]] = {}
    for item in items:
        by_run.setdefault(item["run_id"], []).append(item)
    shown = [r for r in run_ids if r in by_run]
    if not shown:
        st.caption("no items")
        return
    for start in range(0, len(shown), 3):
        for column, run_id in zip(st.columns(3), shown[start:start + 3]):
            with column:
                st.text(labels.get(run_id, run_id))
                for n, item in enumerate(by_run[run_id]):
                    _item(root, item, f"media_dl_{_slot(key)}_{_slot(run_id)}_{n}")


def _item(root: str, item: dict[str, Any], slot: str) -> None:
    """One media item: its content, then its step, caption and scores as plain text."""
    where = f"step {item['step']}" if item["step"] is not None else "no step"
    if item["rank"]:
        where += f" · rank {item['rank']}"
    blob = queries.read_blob(root, item["blob"], item["sha256"], item["bytes"])
    if blob.data is None:
        st.error(escape_md(blob.problem), icon="🚫")
    else:
        _content(item, blob.data, slot)
    st.text(where if not item["caption"] else f"{where} · {item['caption']}")
    if item["scores"]:
        st.text("scores: " + ", ".join(f"{k} {_number(v)}" for k, v in item["scores"].items()))


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _content(item: dict[str, Any], data_: bytes, slot: str) -> None:
    kind, mime = item["media"], (item["mime"] or "").lower()
    if kind == "image" and mime in RASTER_IMAGES:
        _image(data_, mime, item["meta"])
    elif kind == "audio":
        st.audio(data_, format=mime or "audio/wav")
    elif kind == "video":
        st.video(data_, format=mime or "video/mp4")
    elif kind == "table":
        table, note = table_frame(data_)
        if table is None:
            st.error(escape_md(note), icon="🚫")
        else:
            st.dataframe(table, hide_index=True)
            if note:
                st.caption(escape_md(note))
    elif kind == "text":
        text = data_.decode("utf-8", errors="replace")
        cut = len(text) > MAX_TEXT_CHARS
        st.code(text[:MAX_TEXT_CHARS], language=None, wrap_lines=True)
        if cut:
            st.caption(f"first {MAX_TEXT_CHARS:,} of {len(text):,} characters")
    else:
        name = _NAME_JUNK.sub("_", (item["name"] or item["sha256"][:12]).rsplit("/", 1)[-1])
        st.download_button(f"Download {escape_md(name)} ({len(data_):,} bytes)", data_,
                           file_name=name or "blob", mime="application/octet-stream", key=slot)


def _image(data_: bytes, mime: str, meta: dict) -> None:
    """``st.image`` of raster bytes (Pillow decodes them: a file that is no image, or a
    decompression bomb, gets a message instead), PNG kept lossless, small ones enlarged."""
    from PIL import Image, UnidentifiedImageError

    width = meta.get("width")
    shown: Any = "content"
    if isinstance(width, int) and 0 < width < SMALL_IMAGE:
        shown = SMALL_IMAGE
    try:
        st.image(data_, width=shown,
                 output_format="PNG" if mime == "image/png" else "JPEG" if mime == "image/jpeg"
                 else "auto")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        st.error(escape_md(f"not a readable {mime} image: {exc}"), icon="🚫")


def table_frame(raw: bytes) -> tuple[pl.DataFrame | None, str | None]:
    """A table blob (``{"columns": [...], "data": [[...], ...]}``) as a frame of at most
    :data:`MAX_TABLE_ROWS` rows and :data:`MAX_TABLE_COLUMNS` columns; numbers stay
    numbers, anything else becomes its text (JSON for lists and objects).

    Returns:
        ``(frame, note)``: a note says what was cut; ``(None, problem)`` when the blob is
        not such a table.
    """
    try:
        doc = json.loads(raw)
        columns, rows = [str(c) for c in doc["columns"]], doc["data"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return None, "not a table: expected JSON {\"columns\": [...], \"data\": [[...], ...]}"
    notes = []
    if len(rows) > MAX_TABLE_ROWS:
        notes.append(f"first {MAX_TABLE_ROWS:,} of {len(rows):,} rows")
    if len(columns) > MAX_TABLE_COLUMNS:
        notes.append(f"first {MAX_TABLE_COLUMNS} of {len(columns)} columns")
    names: list[str] = []
    for c in columns[:MAX_TABLE_COLUMNS]:
        name, n = c, 1
        while name in names:
            n += 1
            name = f"{c} ({n})"
        names.append(name)
    out = {}
    for i, name in enumerate(names):
        cells = [r[i] if i < len(r) else None for r in rows[:MAX_TABLE_ROWS]]
        if all(c is None or (isinstance(c, (int, float)) and not isinstance(c, bool))
               for c in cells):
            out[name] = pl.Series(name, [None if c is None else float(c) for c in cells],
                                  dtype=pl.Float64)
        else:
            out[name] = pl.Series(name, [None if c is None else c if isinstance(c, str)
                                         else json.dumps(c) for c in cells], dtype=pl.String)
    return pl.DataFrame(out), "; ".join(notes) or None


def _histogram_key(db: str, token: tuple, run_ids: list[str], key: str,
                   labels: dict[str, str]) -> None:
    st.subheader(escape_md(key))
    series = data.fetch(queries.histogram_series, db, token, run_ids, key)
    cells = queries.heatmap_cells(series)
    shown = [r for r in run_ids if r in set(cells["run_id"].to_list())]
    if not shown:
        st.caption("no histograms")
        return
    colors = palette.colors(run_ids)
    for start in range(0, len(shown), 2):
        for column, run_id in zip(st.columns(2), shown[start:start + 2]):
            part = cells.filter(pl.col("run_id") == run_id).drop("run_id")
            steps = series.filter(pl.col("run_id") == run_id).height
            with column:
                st.vega_lite_chart(part, _heatmap_spec(key, labels.get(run_id, run_id),
                                                       colors[run_id]), width="stretch")
                st.caption(f"{steps} step(s) shown")


def _heatmap_spec(key: str, title: str, color: str) -> dict:
    """x = step, y = bucket, colour = count (symlog: one huge bucket does not hide the rest)."""
    return {
        "title": {"text": title, "color": color, "anchor": "start", "fontSize": 12},
        "height": 220,
        "mark": {"type": "rect"},
        "encoding": {
            "x": {"field": "x0", "type": "quantitative", "title": "step"},
            "x2": {"field": "x1"},
            "y": {"field": "lo", "type": "quantitative", "title": key,
                  "scale": {"zero": False}},
            "y2": {"field": "hi"},
            "color": {"field": "count", "type": "quantitative",
                      "scale": {"type": "symlog", "scheme": "viridis"}},
            "tooltip": [{"field": "step", "type": "quantitative"},
                        {"field": "lo", "type": "quantitative", "format": ".4g"},
                        {"field": "hi", "type": "quantitative", "format": ".4g"},
                        {"field": "count", "type": "quantitative", "format": ".4g"}],
        },
    }
