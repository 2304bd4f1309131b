"""Writes W&B runs with the real wandb in offline mode (run by test_import_wandb.py).

``python _wandb_job.py OUT``: three runs under OUT/wandb/ and their expected values in
OUT/expected.json. Run in a subprocess so wandb's service and globals stay out of pytest.
"""

import json
import math
import os
import sys
import wave

out = sys.argv[1]
os.environ.update(WANDB_MODE="offline", WANDB_DIR=out, WANDB_SILENT="true")
import numpy as np  # noqa: E402
import wandb  # noqa: E402

wav = os.path.join(out, "tone.wav")
with wave.open(wav, "wb") as w:
    w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
    w.writeframes(np.arange(800, dtype=np.int16).tobytes())

run = wandb.init(project="my proj", name="first", group="g1", job_type="train", tags=["a", "b"],
                 notes="some notes", config={"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}})
run.config.update({"bs": 32})
for i in range(5):
    run.log({"loss": 1.0 / (i + 1), "acc": {"top1": i / 10}}, step=i)
run.log({"extra": 3.0}, commit=False)
run.log({"loss": 0.125}, step=5)  # commit=False merges into this row
image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
run.log({"h": wandb.Histogram(np_histogram=([1, 2, 3], [0.0, 0.5, 1.0, 2.0])),
         "img": wandb.Image(image, caption="cap"), "clip": wandb.Audio(wav, caption="tone"),
         "tbl": wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]]),
         "pair": [wandb.Image(image[:, :, 0], caption="gray"), wandb.Image(255 - image, caption="inv")],
         "odd": math.nan, "big": math.inf, "word": "text"}, step=6)
print("hello stdout")
print("err line", file=sys.stderr)
run.alert(title="slow", text="loss is flat", level=wandb.AlertLevel.WARN)
run.summary["best"] = 0.9
run.finish(exit_code=1)
first = run.id

run = wandb.init(project="my proj", name="second")
run.define_metric("x", summary="min,max")
for i in range(3):
    run.log({"x": float(i)})
run.finish()
second = run.id

run = wandb.init(project="my proj", name="long")  # many 32 KiB blocks
for i in range(2000):
    run.log({"y": float(i)})
run.finish()
json.dump({"first": first, "second": second, "long": run.id}, open(os.path.join(out, "expected.json"), "w"))
