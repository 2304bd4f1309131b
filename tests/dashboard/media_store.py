"""A store with media and histograms for the Media view's tests.

Three runs written by the real emitter (one, ``plain``, without media); their media written as the importers write them:
blobs with ``schemas.blobs.write_blob`` first, then ``Media``/``Histogram``/``Sample``
events in a sealed segment of a second writer of each run (``ingest.foreign``), loaded by
the real ingest. Then two blobs are spoiled on disk the way a hostile or broken root
would: one overwritten (damaged), one replaced by a link to a file outside the root whose
bytes do match; and one row's ``blob`` column is rewritten in the store to climb out of
the root.
"""

from __future__ import annotations

import io
import json
import math
import struct
import time
import wave
from pathlib import Path

HOSTILE_KEY = "**k**<img src=x onerror=alert(1)>/[l](javascript:x)"
HOSTILE_CAPTION = "![i](http://127.0.0.1:9/i.png) **bold caption** <b>b</b> $x$"
HOSTILE_TEXT = "# Title\n**not bold** <script>alert(1)</script> ![i](http://127.0.0.1:9/t.png)"
HOSTILE_CELL = "<b>cell</b> **md** ![i](http://127.0.0.1:9/c.png)"
SECRET = b"outside the root: must never be shown"
IMAGE_STEPS = (0, 10, 20)
HIST_STEPS = 30
KEYS = {"image": "samples/image", "audio": "samples/audio", "table": "eval/table",
        "text": "notes/text", "damaged": "broken/image", "escape": "escape/image",
        "link": "link/image", "hist": "grad/fc.weight"}


def png(width: int, height: int, seed: int) -> bytes:
    """A real RGB PNG (Pillow), a pattern that moves with ``seed``."""
    from PIL import Image

    img = Image.new("RGB", (width, height))
    img.putdata([((x * 8 + seed * 40) % 256, (y * 8) % 256, ((x + y + seed) * 4) % 256)
                 for y in range(height) for x in range(width)])
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def wav(seconds: float = 0.25, rate: int = 8000, freq: float = 440.0) -> bytes:
    """A 16-bit mono PCM WAV of a sine tone (stdlib ``wave``)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
                               for i in range(frames)))
    return out.getvalue()


def build(root: Path) -> dict:
    """Write, ingest and spoil the store; returns db, root, ids, shas by key."""
    import duckdb
    import numpy as np

    import runlake
    from runlake.ingest import ingest
    from runlake.ingest.foreign import Envelope, foreign_writer, write_segment
    from runlake.schemas import events as E
    from runlake.schemas.blobs import blob_path, write_blob

    ids, shas, dirs = {}, {}, {}
    for name in ("gen-a", "gen-b"):
        run = runlake.init("media", name, root=root, config={"seed": len(ids)}, console=False,
                           flush_interval=0.2)
        for step in range(HIST_STEPS):
            run.log({"train/loss": 1.0 / (step + 1)}, step=step)
        run.finish()
        ids[name], dirs[name] = run.id, Path(run.dir)
    plain = runlake.init("media", "plain", root=root, console=False, flush_interval=0.2)
    plain.log({"train/loss": 1.0}, step=0)
    plain.finish()
    ids["plain"] = plain.id
    t0 = time.time_ns()
    written = {}
    for n, name in enumerate(("gen-a", "gen-b")):
        run_id, run_dir = ids[name], dirs[name]
        env = Envelope(run_id, foreign_writer(run_id))
        evs = []

        def media(key, kind, data, mime, step, **kw):
            sha = write_blob(run_dir, data)
            shas.setdefault(key, sha)
            evs.append(E.Media(*env(), t0 + len(evs), 0, key=key, media=kind, sha256=sha,
                               bytes=len(data), mime=mime, step=step, **kw))
            return sha

        for step in IMAGE_STEPS:
            media(KEYS["image"], "image", png(32, 32, step + n), "image/png", step,
                  caption=f"pattern at step {step}", meta={"width": 32, "height": 32})
        media(KEYS["audio"], "audio", wav(freq=440 + 110 * n), "audio/wav", 10, name="clip-10",
              caption="tone", meta={"sample_rate": 8000, "scores": {"mos": 3.5 + n}})
        evs.append(E.Sample(*env(), t0 + len(evs), 0, name="clip-10", scores={"pesq": 2.25},
                            step=10))
        table = {"columns": ["input", "pred", "score"],
                 "data": [[HOSTILE_CELL, "cat", 0.9], ["plain", {"k": [1, 2]}, None]]}
        media(KEYS["table"], "table", json.dumps(table).encode(), "application/json", 5)
        media(KEYS["text"], "text", HOSTILE_TEXT.encode(), "text/plain", 5)
        media(HOSTILE_KEY, "image", png(8, 8, 99), "image/png", 3, caption=HOSTILE_CAPTION)
        if n == 0:
            media(KEYS["damaged"], "image", png(16, 16, 7), "image/png", 1)
            media(KEYS["escape"], "image", SECRET, "image/png", 1)
            media(KEYS["link"], "image", SECRET + b" (link)", "image/png", 1)
        rng = np.random.default_rng(n)
        for step in range(HIST_STEPS):
            values = rng.normal(0, 1 + step / 10, 500)
            counts, edges = np.histogram(values, bins=16)
            evs.append(E.Histogram(*env(), t0 + len(evs), 0, key=KEYS["hist"],
                                   edges=edges.tolist(), counts=counts.astype(float).tolist(),
                                   step=step, min=float(values.min()), max=float(values.max()),
                                   num=500.0, sum=float(values.sum()),
                                   sum_squares=float((values ** 2).sum())))
        write_segment(run_dir / env.writer, evs)
        written[run_id] = evs
    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
    _load_if_ingest_cannot(db, written)
    a = dirs["gen-a"]
    blob_path(a, shas[KEYS["damaged"]]).write_bytes(png(16, 16, 8))  # damaged on disk
    outside = root.parent / f"{root.name}-outside.bin"
    outside.write_bytes(SECRET + b" (link)")
    link = blob_path(a, shas[KEYS["link"]])
    link.unlink()
    link.symlink_to(outside)  # a link out of the root, bytes matching the checksum
    sha = shas[KEYS["escape"]]
    secret = root.parent / f"{root.name}-outside" / "blobs" / sha[:2] / sha
    secret.parent.mkdir(parents=True)
    secret.write_bytes(SECRET)  # what the crafted path reaches: checksum matches
    climb = f"../{root.name}-outside/blobs/{sha[:2]}/{sha}"
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE media SET blob = ? WHERE key = ?", [climb, KEYS["escape"]])
    finally:
        con.close()
    return {"db": db, "root": root, "ids": ids, "shas": shas}


def _load_if_ingest_cannot(db: Path, written: dict) -> None:
    """TEMPORARY until ingest loads media/histogram events (H1): insert their rows."""
    import duckdb

    from runlake.schemas import events as E
    from runlake.schemas.blobs import blob_relpath

    con = duckdb.connect(str(db))
    try:
        if con.execute("SELECT count(*) FROM media").fetchone()[0]:
            return
        for run_id, evs in written.items():
            for ev in evs:
                ts = ev.ts / 1e9
                if isinstance(ev, E.Media):
                    con.execute("INSERT INTO media BY NAME SELECT ? AS run_id, ? AS rank, "
                                "? AS step, to_timestamp(?)::TIMESTAMP AS ts, ? AS key, "
                                "? AS media, ? AS sha256, ? AS bytes, ? AS mime, ? AS caption, "
                                "? AS name, ? AS blob, ?::JSON AS meta",
                                [run_id, ev.rank, ev.step, ts, ev.key, ev.media, ev.sha256,
                                 ev.bytes, ev.mime, ev.caption, ev.name,
                                 blob_relpath("media", run_id, ev.sha256), json.dumps(ev.meta)])
                elif isinstance(ev, E.Histogram):
                    con.execute("INSERT INTO histograms BY NAME SELECT ? AS run_id, ? AS rank, "
                                "? AS step, to_timestamp(?)::TIMESTAMP AS ts, ? AS key, "
                                "?::DOUBLE[] AS edges, ?::DOUBLE[] AS counts, ? AS min, "
                                "? AS max, ? AS num",
                                [run_id, ev.rank, ev.step, ts, ev.key, ev.edges, ev.counts,
                                 ev.min, ev.max, ev.num])
    finally:
        con.close()
