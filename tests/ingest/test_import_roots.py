"""Every importer writes local segments and blobs: an ``s3://`` root is refused in one line
(exit 2), never folded into a local folder named ``s3:``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runlake.cli import main


@pytest.mark.parametrize("tool", ["wandb", "tensorboard"])
def test_an_s3_root_is_refused_before_anything_is_written(tool, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "source"
    source.mkdir()
    name = "run-abc.wandb" if tool == "wandb" else "events.out.tfevents.1.host"
    (source / name).write_bytes(b"not read: the root is refused first")
    rc = main(["import", tool, str(source), "--root", "s3://bucket/runs"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot import into s3://bucket/runs" in err and err.count("\n") == 1, err
    assert not (tmp_path / "s3:").exists() and sorted(os.listdir(tmp_path)) == ["source"]
