"""A store with media and histograms for the Media view's tests.

Three runs written by the real emitter (``log_media``, ``log_histogram``, ``log_sample``;
one run, ``plain``, without media), loaded by the real ingest. Then two blobs are spoiled
on disk the way a hostile or broken root would: one overwritten (damaged), one replaced by
a link to a file outside the root whose bytes do match; and one row's ``blob`` column is
rewritten in the store to climb out of the root.
"""

from __future__ import annotations

import io
import math
import struct
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
        "link": "link/image", "hist": "grad/fc.weight", "file": "ckpt/file",
        "svg": "vector/svg", "video": "clips/video"}
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


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
    from runlake.schemas.blobs import blob_path

    ids, shas, dirs = {}, {}, {}
    for n, name in enumerate(("gen-a", "gen-b")):
        run = runlake.init("media", name, root=root, config={"seed": n}, console=False,
                           flush_interval=0.2)

        def media(key, data, step, **kw):
            sha = run.log_media(key, data, step=step, **kw)
            shas.setdefault(key, sha)

        rng = np.random.default_rng(n)
        for step in range(HIST_STEPS):
            run.log({"train/loss": 1.0 / (step + 1)}, step=step)
            run.log_histogram(KEYS["hist"], rng.normal(0, 1 + step / 10, 500), bins=16,
                              step=step)
        for step in IMAGE_STEPS:
            media(KEYS["image"], png(32, 32, step + n), step, mime="image/png",
                  caption=f"pattern at step {step}")
        media(KEYS["audio"], wav(freq=440 + 110 * n), 10, mime="audio/wav", name="clip-10",
              caption="tone", meta={"scores": {"mos": 3.5 + n}})
        run.log_sample("clip-10", scores={"pesq": 2.25}, step=10)
        media(KEYS["table"], {"columns": ["input", "pred", "score"],
                              "data": [[HOSTILE_CELL, "cat", 0.9], ["plain", {"k": [1, 2]}, None]]},
              5)
        media(KEYS["text"], HOSTILE_TEXT, 5, media="text")
        media(HOSTILE_KEY, png(8, 8, 99), 3, mime="image/png", caption=HOSTILE_CAPTION)
        if n == 0:
            for _ in range(2):  # the same file twice at one step: two items, one blob
                media(KEYS["file"], b"\x00\x01 weights", 5, media="file", name="../w<1>.bin")
            media(KEYS["svg"], SVG, 5, media="image", mime="image/svg+xml")
            media(KEYS["video"], b"\x00\x00\x00\x18ftypmp42 not really", 5, media="video",
                  mime="video/mp4")
            media(KEYS["damaged"], png(16, 16, 7), 1, mime="image/png")
            media(KEYS["escape"], SECRET, 1, media="image", mime="image/png")
            media(KEYS["link"], SECRET + b" (link)", 1, media="image", mime="image/png")
        run.finish()
        ids[name], dirs[name] = run.id, Path(run.dir)
    plain = runlake.init("media", "plain", root=root, console=False, flush_interval=0.2)
    plain.log({"train/loss": 1.0}, step=0)
    plain.finish()
    ids["plain"] = plain.id
    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
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

