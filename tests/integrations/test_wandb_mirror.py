"""The live W&B mirror (``runlake.init(wandb=...)``): what reaches W&B, read back from the
offline run's ``.wandb`` file with W&B's own record definitions; training-thread isolation;
failures that turn the mirror off without touching the segments."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from runlake.ingest.wandb_records import RecordLog, item_path, item_value_json, load_proto

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow  # every wandb.init costs ~1 s (it starts wandb-core)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B offline, silent, writing under tmp_path/wandb (never the network)."""
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


class WandbRun:
    """What one offline W&B run holds, from its ``.wandb`` file."""

    def __init__(self, path: Path) -> None:
        pb = load_proto()
        log = RecordLog(path)
        self.history: dict[int, dict[str, object]] = {}
        self.config: dict[str, object] = {}
        self.summary: dict[tuple, object] = {}
        self.alerts: list[tuple[str, str, str]] = []
        self.run = self.exit = None
        self.files: list[str] = []
        for raw in log:
            rec = pb.Record()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {item_path(i)[0] if len(item_path(i)) == 1 else item_path(i):
                       json.loads(item_value_json(i)) for i in rec.history.item}
                self.history[rec.history.step.num] = row
            elif kind in ("run", "config"):
                updates = rec.run.config.update if kind == "run" else rec.config.update
                self.config.update({u.key: json.loads(u.value_json) for u in updates})
                if kind == "run":
                    self.run = rec.run
            elif kind == "summary":
                self.summary.update({item_path(u): json.loads(u.value_json) for u in rec.summary.update})
            elif kind == "alert":
                self.alerts.append((rec.alert.title, rec.alert.text, rec.alert.level))
            elif kind == "exit":
                self.exit = rec.exit
            elif kind == "files":
                self.files += [f.path for f in rec.files.files]
        self.problems = log.problems

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, row[key]) for s, row in sorted(self.history.items()) if key in row]


def wandb_run(wandb_dir: Path, timeout: float = 30.0) -> WandbRun:
    """The offline run under ``wandb_dir``, once wandb-core (another process, which writes
    the file after ``finish()`` returns) has written its exit record."""
    (path,) = Path(wandb_dir).glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        got = WandbRun(path)
        if got.exit is not None or time.monotonic() > deadline:
            assert got.exit is not None and not got.problems, (path, got.problems)
            return got
        time.sleep(0.1)


def _job(tmp_path, env, **cfg) -> tuple[subprocess.CompletedProcess, dict]:
    cfg = {"root": str(tmp_path / "root"), "steps": 60, **cfg}
    proc = subprocess.run([sys.executable, str(HERE / "_wandb_mirror_job.py"), json.dumps(cfg)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stderr[-3000:]
    return proc, json.loads(lines[-1])


def test_training_script_mirrors_history_config_and_summary(tmp_path, wandb_env, store_rows):
    """A real training process with wandb=True: W&B's history holds the store's metrics at
    the same steps, its config and tags are the run's (and its update's), the alert, the
    histogram, the audio clip and exit code 0 arrive, and the training thread never called
    into wandb."""
    proc, report = _job(tmp_path, wandb_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["main_thread_wandb_calls"] == []
    got = wandb_run(tmp_path)
    rows = store_rows(tmp_path / "root", "SELECT key, step, value FROM metrics ORDER BY key, step")
    store = defaultdict(list)
    for key, step, value in rows:
        store[key].append((step, value))
    assert set(store) == {"loss", "acc"} and len(store["loss"]) == 60
    for key, points in store.items():
        assert got.series(key) == points
    assert got.series("epoch") == [(s, s // 10) for s in range(60)]
    assert got.run.run_id == report["run_id"] and got.run.project == "mirror"
    assert got.run.display_name == "job"
    assert got.config["lr"] == 0.01 and got.config["layers"] == 3
    assert got.summary[("loss",)] == 1.0 / 60
    assert got.alerts == [("user", "loss plateaued", "WARN")]
    assert got.config["batch"] == 32 and got.summary[("best",)] == 0.125
    assert list(got.run.tags) == ["ci", "mirrored"]  # the update's tags replace init's
    [(hist_step, hist)] = store_rows(tmp_path / "root", "SELECT step, counts FROM histograms")
    assert got.history[hist_step][("grad/w", "values")] == hist  # log_histogram at run.step
    assert got.history[59][("sample", "_type")] == "audio-file"
    assert got.history[59][("sample", "caption")] == "a tone"
    assert got.exit.exit_code == 0


def test_a_failed_run_finishes_its_wandb_run_with_exit_code_1(tmp_path, wandb_env, store_rows):
    """An uncaught exception: the W&B run ends with exit code 1, the traceback is printed
    once (W&B's excepthook is not left in place), the segments hold every step."""
    proc, _ = _job(tmp_path, wandb_env, fail=True, steps=30)
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback (most recent call last)") == 1, proc.stderr[-3000:]
    assert wandb_run(tmp_path).exit.exit_code == 1
    assert store_rows(tmp_path / "root", "SELECT status, count(*) FROM runs JOIN metrics USING (run_id) "
                                         "GROUP BY status") == [("failed", 60)]


def _events(run_dir: Path):
    """A real run's events (captured), then one of each other kind the mirror forwards."""
    import runlake
    from runlake.emitter.testing import capture
    from runlake.schemas.blobs import write_blob
    from runlake.schemas.events import Histogram, Media, RunUpdate

    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
           b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe"
           b"\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")
    table = json.dumps({"columns": ["prompt", "score"], "data": [["a cat", 0.9], ["a dog", 0.4]]})
    with capture() as events:
        run = runlake.init("p", "kinds", console=False, system_interval=0, config={"lr": 0.1})
        for s in range(5):
            run.log({"loss": 0.5 * s}, step=s)
        run.log({"loss": math.nan}, step=5)
        run.finish()
    env = dict(v=1, run_id=run.id, writer=run.writer, rank=0, ts=events[-1].ts)
    seq = iter(range(10_000, 20_000))
    blobs = {name: write_blob(run_dir, data) for name, data in
             (("png", png), ("table", table.encode()), ("text", "hello **world**".encode()))}
    edges = [i / 600 for i in range(601)]
    extra = [
        Histogram(**env, seq=next(seq), key="grad/w", edges=[0.0, 1.0, 2.0], counts=[3.0, 1.0], step=5),
        Histogram(**env, seq=next(seq), key="wide", edges=edges, counts=[1.0] * 600, step=5),
        Media(**env, seq=next(seq), key="img", media="image", sha256=blobs["png"], bytes=len(png),
              mime="image/png", step=5, caption="one pixel"),
        Media(**env, seq=next(seq), key="samples", media="table", sha256=blobs["table"],
              bytes=len(table), mime="application/json", step=5),
        Media(**env, seq=next(seq), key="note", media="text", sha256=blobs["text"], bytes=15,
              mime="text/plain", step=5),
        RunUpdate(**env, seq=next(seq), config={"batch": 32}, summary={"best": 0.25},
                  tags=["a", "b"], metrics={"loss": {"summary": "min"}}),
        Media(**env, seq=next(seq), key="late", media="text", sha256=blobs["text"], bytes=15,
              mime="text/plain", step=2),  # below W&B's current step: skipped, counted
    ]
    end = events.pop()  # run_end last, as the writer sends it
    return events + extra + [end]


def test_every_kind_reaches_wandb(tmp_path, wandb_env):
    """Metrics (NaN kept), histograms (over 512 bins summed), an image, a table, text,
    config/summary/tags updates and run_end's summary reach the W&B run."""
    from runlake.emitter.integrations.wandb_mirror import WandbMirror, wandb_init_kwargs

    run_dir = tmp_path / "root" / "p" / "r"
    events = _events(run_dir)
    kwargs = wandb_init_kwargs({"dir": str(tmp_path)}, project="p", name="kinds", run_id="r1",
                               config={"lr": 0.1}, tags=[], group=None, resumed=False)
    mirror = WandbMirror(kwargs, run_dir, budget=1e6)  # batches fed at once: never thinned
    with pytest.warns(Warning, match="step 2 after step 5"):
        mirror.write_events(events[:4])
        mirror.write_events(events[4:])  # a second batch continues the same W&B run
        mirror.close()  # waits for wandb.init, hands over what was written meanwhile
    assert mirror.off is None and mirror.skipped == {"step_backwards": 1}
    got = wandb_run(tmp_path)
    assert got.series("loss")[:5] == [(s, 0.5 * s) for s in range(5)]
    assert math.isnan(got.series("loss")[5][1])
    row = got.history[5]
    assert row[("grad/w", "bins")] == [0.0, 1.0, 2.0] and row[("grad/w", "values")] == [3, 1]
    assert len(row[("wide", "values")]) == 300 and sum(row[("wide", "values")]) == 600
    assert row[("img", "_type")] == "image-file" and row[("img", "caption")] == "one pixel"
    assert row[("samples", "_type")] == "table-file" and row[("samples", "nrows")] == 2
    assert row["note"] == "hello **world**"
    assert got.config["lr"] == 0.1 and got.config["batch"] == 32
    assert got.summary[("best",)] == 0.25
    assert got.exit.exit_code == 0
    (image,) = Path(tmp_path).glob(f"wandb/offline-run-*/files/{row[('img', 'path')]}")
    assert image.read_bytes() == (run_dir / "blobs").joinpath(  # W&B's copy: staging can go
        row[("img", "sha256")][:2], row[("img", "sha256")]).read_bytes()
    assert row[("img", "path")] in got.files


def test_a_batch_too_big_for_wandb_is_thinned_evenly(tmp_path, wandb_env):
    """1,000 steps handed over at once (far more than W&B takes in the time budget): evenly
    spaced steps reach W&B, the first and last among them, the rest counted; a histogram at a
    thinned step still arrives."""
    from runlake.emitter.integrations.wandb_mirror import WandbMirror, wandb_init_kwargs
    from runlake.emitter.testing import capture
    from runlake.schemas.events import Histogram

    import runlake

    with capture() as events:
        run = runlake.init("p", "fast", console=False, system_interval=0, online_checks=False)
        for s in range(1000):
            run.log({"loss": float(s)}, step=s)
        run.finish()
    end = events.pop()
    hist = Histogram(v=1, run_id=run.id, writer=run.writer, seq=99_999, ts=end.ts, rank=0,
                     key="h", edges=[0.0, 1.0], counts=[5.0], step=501)
    kwargs = wandb_init_kwargs({"dir": str(tmp_path)}, project="p", name="fast", run_id="fast1",
                               config={}, tags=[], group=None, resumed=False)
    mirror = WandbMirror(kwargs, tmp_path / "none", budget=0.001)  # 1 ms of W&B per s waited
    mirror.write_events(events[:1])  # run_start: starts wandb.init on the mirror's thread
    while mirror.run is None:
        time.sleep(0.05)
    with pytest.warns(runlake.RunlakeWarning, match="evenly spaced steps mirrored"):
        mirror.write_events(events[1:503] + [hist] + events[503:] + [end])
    mirror.close()
    assert mirror.off is None
    got = wandb_run(tmp_path)
    steps = [s for s, _ in got.series("loss")]
    assert steps[0] == 0 and steps[-1] == 999 and len(steps) < 100
    assert all(v == s for s, v in got.series("loss"))
    assert len(steps) + mirror.skipped["thinned"] == 1000
    assert got.history[501][("h", "values")] == [5]
    assert got.exit.exit_code == 0


def test_both_mirrors_get_every_batch(tmp_path, wandb_env):
    """tensorboard= and wandb= together: TensorBoard and W&B each hold every step."""
    import runlake
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = tmp_path / "root"
    with runlake.init("p", "both", root=root, console=False, system_interval=0,
                      capture_logging=False, flush_interval=0.05, tensorboard=True,
                      wandb={"dir": str(tmp_path)}) as run:  # W&B reads WANDB_DIR once a process
        for s in range(30):
            run.log({"loss": 1.0 / (s + 1)}, step=s)
            if s % 10 == 0:
                run.flush()
            time.sleep(0.02)  # W&B takes every step at this pace (no thinning)
    (logdir,) = (root / "tensorboard" / "p").iterdir()
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == list(range(30))
    assert [s for s, _ in wandb_run(tmp_path).series("loss")] == list(range(30))


def test_a_failing_wandb_init_is_one_warning_and_the_segments_are_whole(tmp_path, wandb_env, store_rows):
    """wandb.init raising (an invalid mode): one warning naming the W&B mirror, the mirror
    off, training and every segment point unaffected."""
    import runlake

    root = tmp_path / "root"
    with pytest.warns(runlake.RunlakeWarning, match="W&B mirror is off: wandb.init failed") as seen:
        with runlake.init("p", "m", root=root, console=False, system_interval=0, capture_logging=False,
                          flush_interval=0.05, wandb={"mode": "no-such-mode", "dir": str(tmp_path)}) as run:
            for s in range(20):
                run.log({"loss": float(s)}, step=s)
                if s % 5 == 0:
                    run.flush()
    assert sum("W&B" in str(w.message) for w in seen) == 1
    assert run.dropped == {}
    assert store_rows(root, "SELECT count(*), max(step) FROM metrics") == [(20, 19)]
    assert not list(tmp_path.glob("wandb/offline-run-*"))


def test_bad_wandb_options_fail_at_init_before_any_segment(tmp_path):
    """A wandb= value that is not True or a dict of wandb.init arguments: ConfigError at
    init(), naming the bad key, and no run folder."""
    import runlake

    with pytest.raises(runlake.ConfigError, match="wandb.init does not take: projekt"):
        runlake.init("p", root=tmp_path, wandb={"projekt": "x"})
    with pytest.raises(runlake.ConfigError, match="wandb= must be True or a dict"):
        runlake.init("p", root=tmp_path, wandb="yes")
    assert not (tmp_path / "p").exists()


def test_missing_wandb_package_names_the_extra(tmp_path):
    """Without the wandb package, init(wandb=True) fails at once with the pip command (a
    real interpreter whose site-packages lack wandb)."""
    import site

    sp = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    farm = tmp_path / "site"
    farm.mkdir()
    for entry in sp.iterdir():
        if not entry.name.lower().startswith("wandb"):
            (farm / entry.name).symlink_to(entry)
    code = ("import site, sys; sys.path = [p for p in sys.path if 'site-packages' not in p]; "
            f"site.addsitedir({str(farm)!r}); import runlake\n"
            "try:\n    runlake.init('p', root=sys.argv[1], wandb=True)\n"
            "except runlake.ConfigError as e:\n    print('ERR', e)")
    proc = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=60)
    assert "ERR wandb= needs the wandb package: pip install 'runlake[interop]'" in proc.stdout, proc.stderr


@pytest.mark.parametrize("bins", [512, 600, 1025, 5000])
def test_histograms_over_wandbs_512_bins_are_summed_exactly(bins):
    """Neighbouring bins summed: at most 512 bins, the same outer edges and total count,
    ascending edges one more than the counts."""
    from runlake.emitter.integrations._wandb_values import MAX_BINS, rebin

    edges = [i * 0.5 for i in range(bins + 1)]
    counts = [float(i % 7) for i in range(bins)]
    e, c = rebin(edges, counts)
    assert len(c) <= MAX_BINS and len(e) == len(c) + 1
    assert (e[0], e[-1]) == (edges[0], edges[-1]) and e == sorted(set(e))
    assert sum(c) == sum(counts)


def test_the_mirror_refuses_runlake_wandb_installed_as_wandb(tmp_path):
    """After runlake.wandb.install() `import wandb` is runlake's surface, not W&B: init(wandb=)
    fails at once saying so, with no run folder (a real interpreter)."""
    code = ("import sys, runlake.wandb as surface; surface.install(); import runlake\n"
            "try:\n    runlake.init('p', root=sys.argv[1], wandb=True)\n"
            "except runlake.ConfigError as e:\n    print('ERR', e)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=60)
    assert "ERR wandb= mirrors to the real W&B, but `import wandb` gives runlake.wandb" in proc.stdout, proc.stderr
    assert not (tmp_path / "root" / "p").exists()


def test_while_wandb_starts_later_scalars_past_the_cap_go_but_run_end_stays(tmp_path, wandb_env):
    """More events than the mirror keeps while wandb.init runs: the later scalars are not
    mirrored (counted), the update and a failed run_end still arrive (config, exit code 1)."""
    import runlake
    from runlake.emitter.integrations.wandb_mirror import WandbMirror, wandb_init_kwargs
    from runlake.emitter.testing import capture

    with capture() as events:
        run = runlake.init("p", "cap", console=False, system_interval=0, online_checks=False)
        for s in range(20):
            run.log({"loss": float(s)}, step=s)
        run.update(config={"late": True})
        run.finish("failed")
    kwargs = wandb_init_kwargs({"dir": str(tmp_path)}, project="p", name="cap", run_id="cap1",
                               config={}, tags=[], group=None, resumed=False)
    mirror = WandbMirror(kwargs, tmp_path / "none", max_pending=6)
    with pytest.warns(runlake.RunlakeWarning, match="later scalars not mirrored"):
        mirror.write_events(events)  # all of it at once, before wandb.init can have returned
    mirror.close()
    got = wandb_run(tmp_path)
    assert got.series("loss") == [(s, float(s)) for s in range(5)]  # run_start + 5 scalars kept
    assert mirror.skipped["pending"] == 15
    assert got.config["late"] is True and got.exit.exit_code == 1


def test_a_resumed_run_continues_its_wandb_run(tmp_path, wandb_env):
    """runlake.init(resume=...) mirrors with resume="allow" into the same W&B run id; the
    second attempt's steps continue after the first's."""
    import runlake

    for attempt in range(2):
        with runlake.init("p", "res", root=tmp_path / "root", run_id="res1", resume=attempt > 0,
                          console=False, system_interval=0, capture_logging=False,
                          flush_interval=0.05, wandb={"dir": str(tmp_path)}) as run:
            for _ in range(5):
                run.log({"loss": float(run.step + 1)})
        assert run._writer.mirror.init_kwargs.get("resume") == ("allow" if attempt else None)
    files = sorted(tmp_path.glob("wandb/offline-run-*/run-res1.wandb"))
    assert len(files) == 2  # W&B keeps one offline folder per attempt; sync merges them
    for path, steps in zip(files, (range(5), range(5, 10))):
        sub = tmp_path / path.parent.name
        (sub / "wandb").mkdir(parents=True)
        (sub / "wandb" / path.parent.name).symlink_to(path.parent)
        assert wandb_run(sub).series("loss") == [(s, float(s)) for s in steps]


def test_a_log_that_raises_turns_the_mirror_off_once(tmp_path, wandb_env, store_rows):
    """W&B refusing a log (its run was finished underneath the mirror: wandb raises
    UsageError): one warning, the mirror off, later batches ignored, the segments whole."""
    import runlake

    root = tmp_path / "root"
    with pytest.warns(runlake.RunlakeWarning, match="W&B mirror is off: cannot log to W&B") as seen:
        with runlake.init("p", "m", root=root, console=False, system_interval=0, capture_logging=False,
                          flush_interval=0.05, wandb={"dir": str(tmp_path)}) as run:
            mirror = run._writer.mirror
            run.log({"loss": 0.0}, step=0)
            while mirror.run is None:
                time.sleep(0.05)
            run.flush()
            mirror.run.finish()  # W&B's run ends under the mirror (as another wandb.init would)
            for s in range(1, 20):
                run.log({"loss": float(s)}, step=s)
                run.flush()
    assert sum("W&B mirror is off" in str(w.message) for w in seen) == 1
    assert mirror.off.startswith("cannot log to W&B: UsageError")
    assert store_rows(root, "SELECT count(*), max(step) FROM metrics") == [(20, 19)]
