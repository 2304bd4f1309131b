"""Rendering a report dict (from ``report.build_report``) as HTML or Markdown.

Every string in a report came from a training script or a store (run names, metric keys,
config keys and values, finding messages, item ids), so both renderers treat it as text:
HTML goes through :func:`html.escape`, Markdown through :func:`md_text`, which leaves no
markup, HTML tag, link, image or autolink in the output (``<`` and ``>`` become entities,
so not even a raw ``<script`` survives in the file). Only this module's own fixed strings
carry markup.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Callable, Sequence

from runlake.analysis.markup import escape_markdown
from runlake.schemas.severity import by_severity

__all__ = ["md_text", "render_html", "render_md"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1320px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:12px}.swatch{display:inline-block;width:12px;height:12px;
border-radius:2px;margin-right:4px;vertical-align:middle}
.muted{color:#777}.suggest{color:#333;font-style:italic}
""" + "".join(f".sev-{s}{{{style}}}" for s, style in by_severity(  # least severe first
    ("color:#2b6ca3", "color:#b35900;font-weight:bold", "color:#b30000;font-weight:bold")).items()) + "\n"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


def md_text(v: Any) -> str:
    r"""A value as inert Markdown text (for a table cell, a heading or a line): numbers as
    they are, anything else through :func:`~runlake.analysis.markup.escape_markdown`
    (``&<>`` as entities, markup punctuation backslashed, line breaks as spaces).
    """
    text = _cell(v)
    return text if _num(v) else escape_markdown(text, entities=True)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="muted">(none)</p>'
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{escape(_cell(v))}</td>' if _num(v) else f"<td>{escape(_cell(v))}</td>"
            for v in r) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _dict_table(records: list[dict], columns: Sequence[str] | None = None) -> tuple[list, list]:
    if not records:
        return list(columns or []), []
    cols = list(columns or records[0].keys())
    return cols, [[r.get(c) for c in cols] for r in records]


def _names(report: dict) -> dict[str, str]:
    return {r["run_id"]: r.get("label") or r["name"] or r["run_id"] for r in report["runs"]}


def render_html(report: dict, chart: Callable[..., str]) -> str:
    names = _names(report)
    colors = {names[r["run_id"]]: r["color"] for r in report["runs"]}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(report['title'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{escape(report['title'])}</h1>",
             f"<p class='muted'>generated {escape(report['generated_at'])} UTC"
             + (f" · grouped by <b>{escape(report['group_by'])}</b>" if report.get("group_by") else "")
             + "</p>"]
    parts.append("<h2>Runs</h2>")
    rows = [[f"<span class='swatch' style='background:{r['color']}'></span>{escape(r['name'] or '')}",
             escape(r["run_id"]), escape(str(r["status"] or "")), escape(_cell(r["last_step"])),
             escape(str(r.get("group") or ""))] for r in report["runs"]]
    parts.append("<table><thead><tr><th>run</th><th>id</th><th>status</th><th>last step</th><th>group</th>"
                 "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                                                  for r in rows) + "</tbody></table>")
    parts.append(f"<h2>Anomalies ({len(report['anomalies'])})</h2>")
    if report["anomalies"]:
        items = []
        for a in report["anomalies"]:
            items.append(
                f"<tr><td class='sev-{escape(str(a['severity']))}'>{escape(str(a['severity']))}</td>"
                f"<td>{escape(names.get(a['run_id'], a['run_id']))}</td><td>{escape(a['kind'])}</td>"
                f"<td>{escape(a.get('key') or '')}</td><td class='num'>{escape(_cell(a.get('step_start')))}"
                f"–{escape(_cell(a.get('step_end')))}</td><td>{escape(a['message'])}<br>"
                f"<span class='suggest'>→ {escape(a.get('suggestion') or '')}</span></td></tr>")
        parts.append("<table><thead><tr><th>severity</th><th>run</th><th>kind</th><th>key</th>"
                     "<th>steps</th><th>finding and suggestion</th></tr></thead><tbody>"
                     + "".join(items) + "</tbody></table>")
    else:
        parts.append("<p class='muted'>No anomalies found.</p>")
    parts.append("<h2>Curves</h2><div class='grid'>")
    for key, c in report["curves"].items():
        series = {names.get(rid, rid): (d["x"], [float("nan") if y is None else
                                                  float(y) if not isinstance(y, str) else float(y)
                                                  for y in d["y"]])
                  for rid, d in c["runs"].items()}
        bands = [{"x0": a["step_start"] if a["step_start"] is not None else a["step_end"],
                  "x1": a["step_end"] if a["step_end"] is not None else a["step_start"],
                  "severity": a["severity"],
                  "label": f"{names.get(a['run_id'], a['run_id'])}: {a['message']}"}
                 for a in c["anomalies"] if a["step_start"] is not None or a["step_end"] is not None]
        parts.append(f"<figure style='margin:0'>{chart(series, title=key, bands=bands, colors=colors)}</figure>")
    parts.append("</div>")
    parts.append("<h2>Metrics (final / best / mean of last k)</h2>")
    cols = ["run", "key", "final", "best", "best_step", "last_k_mean", "mode", "points", "nonfinite"]
    parts.append(_html_table(cols, [[names.get(r["run_id"], r["run_id"]), *[r.get(c) for c in cols[1:]]]
                                    for r in report["table"]]))
    if report["best"]:
        parts.append("<h2>Best runs</h2>")
        parts.append(_html_table(["metric", "mode", "run", "value", "step"], [
            [k, b.get("mode"), names.get(b.get("run_id"), b.get("run_id")), b.get("value"), b.get("step")]
            for k, b in report["best"].items() if b]))
    diff = report["config_diff"]
    parts.append("<h2>Config differences</h2>")
    parts.append(_html_table(["key", *[names.get(c, c) for c in diff["columns"][1:]]], diff["rows"]))
    if report["groups"]:
        parts.append(f"<h2>Groups by {escape(report['group_by'] or '')} (mean of last k, 95% t interval)</h2>")
        for key, recs in report["groups"].items():
            parts.append(f"<h3 style='font-size:14px'>{escape(key)}</h3>")
            parts.append(_html_table(*_dict_table(recs, ["group", "n", "mean", "std", "ci_low", "ci_high",
                                                         "min", "max", "run_ids"])))
    if report["impact"]:
        parts.append(f"<h2>Hyperparameter impact on {escape(report['primary'] or '')}</h2>")
        parts.append(_html_table(*_dict_table(report["impact"])))
    parts.append("<h2>Data lineage</h2>")
    rows = []
    for lin in report["lineage"]:
        cov = lin["coverage"]
        train = [c for c in cov if c.get("split") not in ("val", "valid", "validation", "test", "eval")]
        last = train[-1] if train else None
        rows.append([names.get(lin["run_id"], lin["run_id"]), len({c.get("epoch") for c in train}),
                     sum(c["draws"] for c in cov) if cov else 0,
                     last["distinct_items"] if last else None,
                     last["coverage"] if last else None, lin["duplicate_items"], lin["leaked_items"],
                     ", ".join(lin["leaked_examples"])])
    parts.append(_html_table(["run", "train epochs", "draws", "distinct items (last epoch)",
                              "coverage (last epoch)", "duplicated in an epoch", "train/eval overlap",
                              "overlap examples"], rows))
    parts.append("</body></html>")
    return "".join(parts)


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return "_(none)_\n"
    lines = ["| " + " | ".join(md_text(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md_text(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_md(report: dict) -> str:
    names = _names(report)
    out = [f"# {md_text(report['title'])}\n", f"generated {md_text(report['generated_at'])} UTC\n",
           "## Runs\n",
           _md_table(["run", "id", "status", "last step"],
                     [[r["name"], r["run_id"], r["status"], r["last_step"]] for r in report["runs"]]),
           f"\n## Anomalies ({len(report['anomalies'])})\n"]
    out.append(_md_table(["severity", "run", "kind", "key", "steps", "message", "suggestion"], [
        [a["severity"], names.get(a["run_id"], a["run_id"]), a["kind"], a.get("key"),
         f"{_cell(a.get('step_start'))}–{_cell(a.get('step_end'))}", a["message"], a.get("suggestion")]
        for a in report["anomalies"]]))
    cols = ["key", "final", "best", "best_step", "last_k_mean", "mode"]
    out += ["\n## Metrics\n", _md_table(["run", *cols], [
        [names.get(r["run_id"], r["run_id"]), *[r.get(c) for c in cols]] for r in report["table"]])]
    diff = report["config_diff"]
    out += ["\n## Config differences\n",
            _md_table(["key", *[names.get(c, c) for c in diff["columns"][1:]]], diff["rows"])]
    for key, recs in report["groups"].items():
        out += [f"\n## Groups by {md_text(report['group_by'])}: {md_text(key)}\n",
                _md_table(*_dict_table(recs, ["group", "n", "mean", "std", "ci_low", "ci_high"]))]
    if report["impact"]:
        out += [f"\n## Hyperparameter impact on {md_text(report['primary'])}\n", _md_table(*_dict_table(report["impact"]))]
    out += ["\n## Data lineage\n", _md_table(["run", "duplicated in an epoch", "train/eval overlap"], [
        [names.get(lin["run_id"], lin["run_id"]), lin["duplicate_items"], lin["leaked_items"]]
        for lin in report["lineage"]])]
    return "\n".join(out)
