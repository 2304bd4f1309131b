"""Reports: content, HTML/MD/JSON output, a real headless Chromium render, and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from runlake.analysis.report import build_report, write_report
from runlake.cli import main
from runlake.schemas.errors import ConfigError

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from .conftest import StoreBuilder

    b = StoreBuilder(tmp_path_factory.mktemp("report") / "store.duckdb")
    rng = np.random.default_rng(11)
    steps = np.arange(400)
    for i, lr in enumerate([1e-3, 1e-3, 3e-3]):
        rid = f"run-{i}"
        loss = (2 * np.exp(-steps / 80) + 0.2) * (1 + rng.normal(0, 0.03, 400))
        if i == 2:
            loss[200] *= 6
            loss[300:] = np.nan
        b.run(rid, name=f"name-{i}", config={"lr": lr, "seed": i, "model": {"width": 64}})
        b.metric(rid, "train/loss", loss)
        b.metric(rid, "val/acc", np.linspace(0.5, 0.9, 40) + rng.normal(0, 0.01, 40), steps[::10])
        b.items(rid, 1, ["a", "b"], epoch=0)
        b.items(rid, 2, ["b" if i == 2 else "v"], split="val", epoch=0)  # run-2 leaks "b"
    return b.build()


@pytest.fixture(scope="module")
def report(store):
    return build_report(store, ["run-0", "run-1", "run-2"], group_by="lr")


def test_report_content(report):
    """The report holds curves per metric, anomalies, table, config diff, groups and lineage."""
    assert report["metrics"] == ["train/loss", "val/acc"]
    assert set(report["curves"]["train/loss"]["runs"]) == {"run-0", "run-1", "run-2"}
    kinds = {a["kind"] for a in report["anomalies"] if a["run_id"] == "run-2"}
    assert {"loss_spike", "nonfinite"} <= kinds
    assert any(a["run_id"] == "run-2" for a in report["curves"]["train/loss"]["anomalies"])
    assert [r[0] for r in report["config_diff"]["rows"]] == ["lr", "seed"]
    # run-2 ends in NaN, so its lr group has no finite value to aggregate
    assert sorted(g["n"] for g in report["groups"]["train/loss"]) == [0, 2]
    assert [lin["leaked_items"] for lin in report["lineage"]] == [0, 0, 1]
    json.dumps(report)  # JSON-able


def test_report_needs_runs(store):
    """An empty run list is a ConfigError."""
    with pytest.raises(ConfigError):
        build_report(store, [])


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_write_report_formats(report, tmp_path, fmt):
    """HTML is self-contained (inline SVG, no script, no URL); MD has tables; JSON round-trips."""
    path = write_report(report, tmp_path / f"r.{fmt}", fmt=fmt)
    text = path.read_text()
    if fmt == "html":
        assert text.count("<svg") == 2 and "<script" not in text
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in text and 'class="anomaly"' in text
    elif fmt == "md":
        assert "| run |" in text and "## Anomalies" in text
    else:
        assert json.loads(text)["metrics"] == report["metrics"]


@pytest.mark.browser
def test_html_report_renders_in_chromium(report, tmp_path):
    """Headless Chromium renders the HTML report to a non-blank screenshot with the charts."""
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium not installed")
    from PIL import Image, ImageStat

    html = write_report(report, tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
            f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*base, f"--screenshot={shot}", f"file://{html}"], check=True,
                   capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", f"file://{html}"], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert dom.count("<svg") == 2 and "polyline" in dom
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 2000)
    assert ImageStat.Stat(img).stddev[0] > 10  # not a blank page
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # curves, bands and text in several colours


def test_cli_report_compare_anomalies_lineage(store, tmp_path, capsys):
    """The CLI commands run end to end on a store and resolve run names."""
    out = tmp_path / "rep.html"
    assert main(["report", "name-0", "name-2", "--db", str(store), "-o", str(out)]) == 0
    assert out.exists() and "<svg" in out.read_text()
    assert main(["report", "name-0", "--db", str(store), "-o", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# runlake report")
    capsys.readouterr()
    assert main(["compare", "name-0", "name-1", "name-2", "--metric", "train/loss", "--by", "lr",
                 "--db", str(store), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["table"]) == 3 and data["best"]["run_id"] in {"run-0", "run-1"}
    assert main(["anomalies", "--refresh", "--db", str(store), "--severity", "critical", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["severity"] for r in rows} == {"critical"} and {r["run_id"] for r in rows} == {"run-2"}
    assert main(["anomalies", "name-0", "--db", str(store)]) == 0
    assert "no anomalies" in capsys.readouterr().out
    assert main(["lineage", "item", "b", "--db", str(store), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4  # 3 runs train + run-2 val
    assert main(["lineage", "run", "name-2", "--db", str(store)]) == 0
    assert "train/eval overlap: 1 items" in capsys.readouterr().out
    assert main(["lineage", "diff", "name-0", "name-1", "--db", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["both"] == 3  # a, b, v


def test_cli_unknown_run_is_one_line_error(store, capsys):
    """An unknown RUN is a one-line error with exit code 2."""
    assert main(["compare", "nope", "--metric", "x", "--db", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("runlake compare: error:") and "\n" not in err
