"""One W&B run file read into plain Python: what :mod:`runlake.ingest.import_wandb` maps.

Why a module of its own: the records' meaning (W&B's history rows, summary merges, config
updates, console fragments) is separate from how runlake stores them. :func:`read_run`
walks the records of a ``.wandb`` file once (:class:`~runlake.ingest.wandb_records.RecordLog`)
and fills a :class:`WandbRun`; nothing is written and nothing is uploaded.

History rows: W&B splits a logged dict into items keyed by their path (``{"acc": {"top1":
x}}`` is the item ``acc`` / ``top1``); paths are joined with ``.`` as W&B displays them
(``acc.top1``). A path ending in ``_type`` marks a typed value (``histogram``,
``image-file``, ...): the items under that prefix form one object. ``_step`` is the step,
``_timestamp`` the time, ``_runtime`` is dropped. History records are held as bytes and
read a batch at a time (:func:`~runlake.ingest.wandb_records.bulk_rows`: one protobuf parse
and one ``msgspec`` decode per batch); a batch holding any other kind of row (nested keys,
typed values, W&B's bare ``NaN``/``Infinity``) is read record by record instead. Summary
records are read last, in batches (:meth:`_Reader.summaries`): nothing else depends on them.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate, chain, compress, repeat
from operator import attrgetter, methodcaller
from pathlib import Path
from typing import Any

import msgspec

from runlake.ingest.wandb_records import (
    RecordLog, RowLayout, batch_views, bulk_rows, fast_view, flat_keys, item_path,
    item_value_json, load_proto,
)

__all__ = ["MEDIA_TYPES", "WandbRun", "read_run"]

MEDIA_TYPES = {
    "image-file": "image", "audio-file": "audio", "video-file": "video", "table-file": "table",
    "html-file": "file", "object3D-file": "file", "molecule-file": "file", "plotly-file": "file",
    "bokeh-file": "file", "joined-table": "table", "partitioned-table": "table",
}
"""W&B's ``_type`` of a file-backed value -> runlake's ``Media.media``."""

_LISTS = {"images/separated": ("filenames", "image-file"), "audio": ("audio", "audio-file"),
          "videos": ("videos", "video-file")}
_NUMERIC = frozenset((int, float, bool))
_BATCH = 4096
_DECODE = msgspec.json.Decoder()
_STREAMS = {0: "stderr", 1: "stdout"}
_UPDATE, _NESTED, _VALUES, _KEYS = (attrgetter(n) for n in ("update", "nested_key", "value_json", "key"))
_HAS_REMOVE = methodcaller("HasField", "remove")


@dataclass
class WandbRun:
    """What one ``.wandb`` file holds, in W&B's terms (times in seconds since the epoch)."""

    path: Path
    wandb_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    sweep_id: str = ""
    host: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    start_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    config_updates: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    rows: list[tuple[float, int, tuple[str, ...], Any]] = field(default_factory=list)
    objects: list[tuple[float, int, str, dict[str, Any]]] = field(default_factory=list)
    stats: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    output: list[tuple[float, str, str]] = field(default_factory=list)
    alerts: list[tuple[float, str, str, str]] = field(default_factory=list)
    metric_defs: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    end_s: float | None = None
    last_s: float | None = None
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    records: int = 0


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = tree.get(part)
        if not isinstance(child, dict):
            child = tree[part] = {}
        tree = child
    tree[path[-1]] = value


def _unset(tree: dict, path: tuple[str, ...]) -> None:
    for part in path[:-1]:
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return
    tree.pop(path[-1], None)


def _loads(text: bytes | str) -> Any:
    """One JSON value as W&B writes it (bare NaN/Infinity allowed)."""
    try:
        return _DECODE.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def _ts(stamp: Any) -> float | None:
    return stamp.seconds + stamp.nanos / 1e9 if stamp.seconds or stamp.nanos else None


class _Reader:
    """Walks the records of one file into a :class:`WandbRun`."""

    def __init__(self, run: WandbRun) -> None:
        self.run, self.pb = run, load_proto()
        self.view, self.typed_fields = fast_view()
        self.layouts: dict[tuple[bytes, int], RowLayout] = {}  # (key bytes, values) -> flat rows
        self.multi: dict[tuple, RowLayout] = {}  # item paths -> rows with nested/typed items
        self.shapes: dict[Any, tuple] = {}  # (nested, key, n) -> the items' paths
        self.hidden: set = set()  # shapes touching only W&B's own _keys
        self.pending: list[tuple[RowLayout, int, bytes]] = []
        self.summary_ops: dict[tuple[str, ...], tuple[float, bytes | None]] = {}
        self.flat_summary: dict[bytes, bytes] = {}  # one-part key -> its latest value_json
        self.partial = {"stdout": "", "stderr": ""}
        self.n = 0
        self.raw_history: list[bytes] = []  # history records not read yet, with their numbers
        self.raw_history_no: list[int] = []
        self.raw_summary: list[bytes] = []  # summary records: read at the end (see summaries)
        self.raw_summary_no: list[int] = []

    def bad_record(self, number: int, exc: Exception) -> None:
        from google.protobuf.message import DecodeError

        if not isinstance(exc, (DecodeError, ValueError, KeyError, TypeError, AttributeError,
                                IndexError)):
            raise exc
        self.run.problems.append(f"{self.run.path}: record {number} could not be read "
                                 f"({type(exc).__name__}: {exc}): skipped")

    def flush_raw_history(self) -> None:
        """The history records held so far: in a few C-level passes (:func:`bulk_rows`) when
        all are common rows, else one by one (:meth:`history`)."""
        if not self.raw_history:
            return
        raws, numbers = self.raw_history[:], self.raw_history_no[:]
        self.raw_history.clear()  # (read_run holds these lists)
        self.raw_history_no.clear()
        from google.protobuf.message import DecodeError

        try:
            bulk = bulk_rows(raws)
        except DecodeError:  # a bad record among them: found one by one below
            bulk = None
        if bulk is not None:
            times, steps, names, values = bulk
            self.run.rows.extend(zip(times, steps, names, values))
            self.run.last_s = float(times[-1])
            return
        parse = self.view.FromString
        for number, raw in zip(numbers, raws):
            try:
                h = parse(raw).history
                self.history(h.item, h.step.num, raw)
            except Exception as exc:  # noqa: BLE001 - one bad record must not cost the run
                self.bad_record(number, exc)
        self.flush_history()

    # -- history -------------------------------------------------------------------------
    def history(self, items: Any, stepnum: int, raw: bytes) -> None:
        # One serialization of the merged items: every key part (fields 1, 2), any typed
        # value (3-8), then every value_json (16, tag \x82\x01). JSON text never holds the
        # control byte \x01, so the first \x82\x01 ends the keys: those bytes (and the
        # number of values) name the row's shape without building a string per key.
        ser = items.SerializeToString()
        at = ser.find(b"\x82\x01")
        head = ser[:at] if at >= 0 else ser
        vj = items.value_json
        values, n = b",".join(vj), len(vj)
        shape = (head, n)
        layout = self.layouts.get(shape)
        if layout is None:  # W&B writes a row's keys in Go map order: many shapes per run
            keys = flat_keys(head, n)
            layout = self.layouts[shape] = RowLayout.flat(keys) if keys is not None else False
        if layout:
            self.pending.append((layout, stepnum, values))
        else:  # nested keys or typed values: the real Record says which part is whose
            real = self.pb.Record.FromString(raw).history.item
            paths = tuple(map(item_path, real))
            layout = self.multi.get(paths)
            if layout is None:
                layout = self.multi[paths] = RowLayout(paths)
            self.pending.append((layout, stepnum, ",".join(map(item_value_json, real)).encode()))
        if len(self.pending) >= _BATCH:
            self.flush_history()

    def flush_history(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            decoded = _DECODE.decode(b"[[" + b"],[".join([p[2] for p in pending]) + b"]]")
        except msgspec.DecodeError:
            decoded = []
            for _, _, values in pending:
                try:
                    decoded.append(_loads(b"[" + values + b"]"))
                except ValueError as exc:
                    self.run.problems.append(f"{self.run.path}: a history row that is not JSON "
                                             f"({exc}): skipped")
                    decoded.append(None)
        if not self.columnwise(pending, decoded):
            self.row_by_row(pending, decoded)

    def columnwise(self, pending: list, decoded: list) -> bool:
        """The batch's rows in a few C-level passes, when every row is the common kind: one-part
        keys with ``_step`` and ``_timestamp``, numbers only. False (nothing done) otherwise."""
        layouts = [p[0] for p in pending]
        if any(not lay.fast for lay in layouts) or None in decoded:
            return False
        try:
            steps = [v[lay.si] for lay, v in zip(layouts, decoded)]
            times = [v[lay.ti] for lay, v in zip(layouts, decoded)]
            picked = [lay.pick(v) for lay, v in zip(layouts, decoded)]
        except IndexError:
            return False
        if (not {int}.issuperset(map(type, steps)) or not {float, int}.issuperset(map(type, times))
                or not _NUMERIC.issuperset(map(type, chain.from_iterable(picked)))):
            return False
        self.run.rows.extend(zip(times, steps, [lay.names for lay in layouts], picked))
        self.run.last_s = float(times[-1])
        return True

    def row_by_row(self, pending: list, decoded: list) -> None:
        run, rows = self.run, self.run.rows
        for (layout, stepnum, _), vals in zip(pending, decoded):
            if vals is None:
                continue
            step = vals[layout.si] if layout.si is not None else stepnum
            ts = vals[layout.ti] if layout.ti is not None else run.last_s
            if not isinstance(step, int) or isinstance(step, bool):
                step = stepnum
            if isinstance(ts, (int, float)) and not isinstance(ts, bool):
                run.last_s = ts = float(ts)
            else:
                ts = run.last_s
            if layout.pick is not None:
                picked = layout.pick(vals)
                if _NUMERIC.issuperset(map(type, picked)):
                    rows.append((ts, step, layout.names, picked))
                else:
                    self.mixed_row(ts, step, layout.names, picked)
            for name, parts in layout.objects:
                obj: dict = {}
                for i, sub in parts:
                    _set(obj, sub, vals[i])
                run.objects.append((ts, step, name, obj))

    def mixed_row(self, ts, step, names, values) -> None:
        """A row holding more than numbers: dicts flattened, typed dicts kept, rest counted."""
        keep_names, keep = [], []
        todo = list(zip(names, values))
        while todo:
            name, v = todo.pop(0)
            if v.__class__ in _NUMERIC:
                keep_names.append(name)
                keep.append(v)
            elif isinstance(v, dict) and "_type" in v:
                self.run.objects.append((ts, step, name, v))
            elif isinstance(v, dict):
                todo[:0] = [(f"{name}.{k}", sub) for k, sub in v.items()]
            else:
                what = {str: "text", list: "list", type(None): "null"}.get(type(v), type(v).__name__)
                self.run.skipped[f"history {what} values"] += 1
        if keep:
            self.run.rows.append((ts, step, tuple(keep_names), tuple(keep)))

    # -- summary -------------------------------------------------------------------------
    def summary(self, view: Any, raw: bytes) -> None:
        upd = view.update
        vj, nested = upd.value_json, upd.nested_key
        if len(nested) == len(vj) and not len(upd.key) and not view.HasField("remove"):
            self.flat_summary.update(zip(nested, vj))  # every item one key part: the common record
            return
        self.n += 1
        shape = (tuple(nested), tuple(upd.key), len(vj))
        paths = self.shapes.get(shape)
        real = None
        if paths is None or view.HasField("remove"):
            real = self.pb.Record.FromString(raw).summary
            paths = self.shapes[shape] = tuple(map(item_path, real.update))
            if all(p[0].startswith("_") for p in paths):
                self.hidden.add(shape)
        elif shape in self.hidden:
            return  # W&B's own keys (_wandb.runtime, _runtime every step): never in the summary
        ops = [(item_path(item), None) for item in real.remove] if real is not None else []
        ops += zip(paths, vj)  # a summary item's value is always value_json, in item order
        for path, value in ops:
            # a one-part write to this key before now is older than this op
            old = self.flat_summary.pop(path[0].encode(), None)
            if old is not None:
                self.summary_ops[(path[0],)] = (self.n - 0.5, old)
            self.summary_ops[path] = (self.n, value)

    def summaries(self) -> None:
        """The summary records, read after every other record (nothing else depends on them).

        Only each key's last write counts, so runs of records whose items are all one key part
        (W&B writes two per step) become one ``dict.update`` over the lists of ONE parse of
        their bytes joined (:func:`batch_views`); any other record goes through
        :meth:`summary` in file order, as when reading them one by one."""
        from google.protobuf.message import DecodeError

        views, raws, numbers = batch_views(), self.raw_summary, self.raw_summary_no
        for lo in range(0, len(raws), _BATCH):
            part, nos = raws[lo:lo + _BATCH], numbers[lo:lo + _BATCH]
            buf = b"".join(part)
            try:
                records = views["SummaryRows"].FromString(buf).summary
                merged = views["SummaryAll"].FromString(buf).summary
            except DecodeError:
                records = None
            if records is None or len(records) != len(part):
                for number, raw in zip(nos, part):
                    try:
                        self.summary(self.view.FromString(raw).summary, raw)
                    except Exception as exc:  # noqa: BLE001 - one bad record must not cost the run
                        self.bad_record(number, exc)
                continue
            self.summary_batch(nos, records, part, merged.update, merged.HasField("remove"))
        raws.clear()
        numbers.clear()

    def summary_batch(self, numbers: list, records: Any, raws: list, merged: Any,
                      removes: bool) -> None:
        """One batch of summary records: ``records`` one view each, ``merged`` all their items.

        A record of one-part keys only is "flat"; the flat records between two others update
        ``flat_summary`` at once (their items picked from the merged lists). A record touching
        only W&B's own ``_`` keys (a shape :meth:`summary` marked hidden) changes nothing."""
        ups = list(map(_UPDATE, records))
        nk = list(map(len, map(_NESTED, ups)))
        nv = list(map(len, map(_VALUES, ups)))
        nkey = list(map(len, map(_KEYS, ups)))
        rem = list(map(_HAS_REMOVE, records)) if removes else [False] * len(ups)
        flat = [a == b and not c and not r for a, b, c, r in zip(nk, nv, nkey, rem)]
        keys, values = list(merged.nested_key), list(merged.value_json)
        ko, vo = [0, *accumulate(nk)], [0, *accumulate(nv)]
        hidden, start = self.hidden, 0

        def apply_flat(lo: int, hi: int) -> None:
            if hi > lo:
                self.flat_summary.update(zip(
                    compress(keys[ko[lo]:ko[hi]], chain.from_iterable(map(repeat, flat[lo:hi], nk[lo:hi]))),
                    compress(values[vo[lo]:vo[hi]], chain.from_iterable(map(repeat, flat[lo:hi], nv[lo:hi])))))

        odd = [i for i, f in enumerate(flat) if not f]
        shapes = zip(map(tuple, map(_NESTED, map(ups.__getitem__, odd))),
                     map(tuple, map(_KEYS, map(ups.__getitem__, odd))), map(nv.__getitem__, odd))
        for i, shape in zip(odd, shapes):
            if not rem[i] and shape in hidden:
                continue
            apply_flat(start, i)
            start = i + 1
            try:
                self.summary(records[i], raws[i])
            except Exception as exc:  # noqa: BLE001 - one bad record must not cost the run
                self.bad_record(numbers[i], exc)
        apply_flat(start, len(ups))

    def final_summary(self) -> dict[str, Any]:
        tree: dict = {}
        ordered = sorted(self.summary_ops.items(), key=lambda kv: kv[1][0])
        # one-part writes left in flat_summary came after every op on their key
        ordered += [((k.decode(),), (None, v)) for k, v in self.flat_summary.items()]
        for path, (_, value) in ordered:
            if value is None:
                _unset(tree, path)
                continue
            try:
                _set(tree, path, _loads(value))
            except ValueError:
                self.run.problems.append(f"{self.run.path}: summary value of {'.'.join(path)!r} "
                                         f"is not JSON: skipped")
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            for k, v in node.items():
                name = f"{prefix}{k}"
                if isinstance(v, dict) and "_type" in v:
                    self.run.skipped["summary typed values (histograms, media: in the history)"] += 1
                elif isinstance(v, dict) and v:
                    walk(name + ".", v)
                else:
                    flat[name] = v

        walk("", {k: v for k, v in tree.items() if not k.startswith("_")})
        return flat

    # -- everything else -----------------------------------------------------------------
    def other(self, raw: bytes) -> None:
        run = self.run
        record = self.pb.Record.FromString(raw)
        kind = record.WhichOneof("record_type")
        body = getattr(record, kind) if kind else None
        if kind in ("run", "config", "alert", "exit"):
            self.flush_raw_history()  # they take the time of the rows before them
            self.flush_history()
        if kind == "run":
            run.wandb_id, run.project, run.entity = body.run_id, body.project, body.entity
            run.name, run.group, run.job_type = body.display_name, body.run_group, body.job_type
            run.notes, run.tags, run.host, run.sweep_id = body.notes, list(body.tags), body.host, body.sweep_id
            run.start_s = _ts(body.start_time) if body.HasField("start_time") else None
            run.last_s = run.last_s or run.start_s
            self.apply_config(body.config, run.config)
        elif kind == "config":
            update: dict = {}
            self.apply_config(body, update)
            for item in body.remove:
                _unset(run.config, item_path(item))
                run.skipped["config keys removed after the start (kept in the run's config)"] += 1
            for key, value in update.items():
                if isinstance(value, dict) and isinstance(run.config.get(key), dict):
                    merged = {**run.config[key]}
                    _merge(merged, value)
                    update[key] = merged
            run.config.update(update)
            if update:
                run.config_updates.append((run.last_s, update))
        elif kind == "stats":
            ts = _ts(body.timestamp) or run.last_s
            values = {}
            for item in body.item:
                try:
                    values[item.key] = _loads(item.value_json)
                except ValueError:
                    run.skipped["system stats that are not JSON"] += 1
            run.stats.append((ts, values))
        elif kind in ("output_raw", "output"):
            ts = _ts(body.timestamp) or run.last_s
            self.console(ts, _STREAMS.get(body.output_type, "stdout"), body.line)
        elif kind == "exit":
            run.exit_code = body.exit_code
            if run.start_s is not None and body.runtime:
                run.end_s = run.start_s + body.runtime
        elif kind == "alert":
            run.alerts.append((run.last_s, body.title, body.text, body.level))
        elif kind == "metric":
            self.define_metric(body)
        elif kind is None:
            run.skipped["unknown record types (not in this wandb's Record: a newer W&B?)"] += 1
        else:
            run.skipped[f"{kind} records"] += 1

    def apply_config(self, body: Any, into: dict) -> None:
        for item in body.update:
            path = item_path(item)
            if path[0] == "_wandb":
                continue
            try:
                _set(into, path, _loads(item.value_json))
            except ValueError:
                self.run.problems.append(f"{self.run.path}: config value of {'.'.join(path)!r} "
                                         f"is not JSON: skipped")

    def define_metric(self, body: Any) -> None:
        name = body.name or body.glob_name
        if not name:
            return
        spec: dict[str, Any] = {}
        if body.step_metric:
            spec["step_metric"] = body.step_metric
        summaries = [f.name for f, on in body.summary.ListFields() if on] if body.HasField("summary") else []
        if summaries:
            spec["summary"] = ",".join(summaries)
        goal = {1: "minimize", 2: "maximize"}.get(body.goal)
        if goal:
            spec["goal"] = goal
        if body.HasField("options") and body.options.hidden:
            spec["hidden"] = True
        self.run.metric_defs.setdefault(name, {}).update(spec)

    def console(self, ts: float | None, stream: str, text: str) -> None:
        text = self.partial[stream] + text
        *lines, self.partial[stream] = text.split("\n")
        self.run.output.extend((ts, stream, line.rstrip("\r")) for line in lines)

    def finish(self) -> None:
        self.flush_raw_history()
        self.flush_history()
        self.summaries()
        for stream, text in self.partial.items():
            if text:
                self.run.output.append((self.run.last_s, stream, text.rstrip("\r")))
        self.run.summary = self.final_summary()


def _merge(into: dict, update: dict) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def read_run(path: Path) -> WandbRun:
    """Read every record of the ``.wandb`` file ``path`` (damage: see :class:`RecordLog`).

    Raises:
        ImportError: the ``wandb`` package is missing (with the command installing it).
        OSError: the file cannot be read.
    """
    gc_was = gc.isenabled()
    gc.disable()  # ~10^6 acyclic objects made here: no collector passes over them meanwhile
    try:
        return _read(path)
    finally:
        if gc_was:
            gc.enable()


def _read(path: Path) -> WandbRun:
    run = WandbRun(path)
    reader = _Reader(run)
    log = RecordLog(path)
    parse = reader.view.FromString
    hist, hist_no = reader.raw_history, reader.raw_history_no
    summ, summ_no = reader.raw_summary, reader.raw_summary_no
    for run.records, raw in enumerate(log, 1):
        try:
            # W&B writes ``num`` first, then the record's one field: its tag byte says the kind
            # without parsing (history 0x12, summary 0x1a); anything else: parse and ask.
            if raw[1] < 0x80:  # num < 128
                tag = raw[2] if raw[0] == 0x08 else 0
            elif raw[2] < 0x80:
                tag = raw[3] if raw[0] == 0x08 else 0
            else:
                i = 3
                while raw[i] & 0x80:
                    i += 1
                tag = raw[i + 1] if raw[0] == 0x08 else 0
            if tag == 0x12:
                hist.append(raw)
                hist_no.append(run.records)
                if len(hist) >= _BATCH:
                    reader.flush_raw_history()
                continue
            if tag == 0x1a:
                summ.append(raw)
                summ_no.append(run.records)
                continue
            view = parse(raw)
            if view.HasField("history"):
                hist.append(raw)
                hist_no.append(run.records)
            elif view.HasField("summary"):
                summ.append(raw)
                summ_no.append(run.records)
            else:
                reader.other(raw)
        except Exception as exc:  # noqa: BLE001 - one bad record must not cost the run
            reader.bad_record(run.records, exc)
    reader.finish()
    run.problems[:0] = log.problems
    return run
