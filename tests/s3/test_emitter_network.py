"""The training thread never waits on the network: a hanging endpoint, an endpoint down at
start that comes up later, refused credentials (real moto servers, real subprocesses)."""

from __future__ import annotations

import select
import socket

import pytest

from runlake.cli import main as cli
from runlake.emitter.spool import spool_url

from ._emitter_util import bucket_events, child_env, finish, points, spool_events, start
from ._server import MotoServer, free_port

N = 2000


def test_hanging_endpoint_never_reaches_the_training_thread(s3_env, s3_root, tmp_path):
    """An endpoint that accepts connections and never answers: log() and finish() return
    (finish after its RUNLAKE_UPLOAD_WAIT bound) with every point in the spool and the push
    command in one warning line; an audit hook sees network calls only off the main thread."""
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)  # the kernel completes connections; nobody ever reads or answers
        endpoint = f"http://127.0.0.1:{hang.getsockname()[1]}"
        go = tmp_path / "go"
        spool = tmp_path / "spool"
        proc = start({"root": s3_root, "points": N, "flush_every": 500, "audit": True,
                      "wait_for": str(go)},
                     child_env(s3_env, spool, AWS_ENDPOINT_URL=endpoint, RUNLAKE_UPLOAD_WAIT="1"))
        assert select.select([hang], [], [], 60)[0], "the uploader never connected"
        go.touch()  # the uploader is now stuck in a request; training finishes regardless
        result, err = finish(proc)
    assert result["calls"]["main"] == 0 and result["calls"]["other"] >= 1
    assert result["dropped"] == {}
    left = [line for line in err.splitlines() if "were not uploaded" in line]
    assert len(left) == 1 and f"runlake push --spool {spool} --root {s3_root}" in left[0]
    assert sum(points(spool_events(spool)).values()) == N
    assert spool_url(spool) == s3_root


@pytest.mark.slow
def test_endpoint_down_at_start_then_up_drains_the_spool(s3_env, tmp_path, monkeypatch):
    """No server on the endpoint when training starts: one 'unreachable' warning, segments
    wait in the spool; once a server answers there, finish() uploads everything."""
    port = free_port()
    go, spool = tmp_path / "go", tmp_path / "spool"
    env = child_env(s3_env, spool, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    proc = start({"root": "s3://later/runs", "points": N, "flush_every": 500,
                  "wait_for": str(go)}, env)
    first = proc.stderr.readline()
    assert "unreachable" in first and "retrying" in first
    assert spool_events(spool)  # training went on, into the spool
    with MotoServer(port) as late:
        late.new_bucket("later")
        go.touch()
        result, err = finish(proc)
        assert result["dropped"] == {} and "were not uploaded" not in err
        for name, value in late.env.items():
            monkeypatch.setenv(name, value)
        assert sum(points(bucket_events("s3://later/runs")).values()) == N
    assert not list(spool.rglob("*.jsonl.zst*"))


@pytest.mark.slow
def test_refused_credentials_warn_and_push_fails_in_one_line(monkeypatch, tmp_path, capsys):
    """A server that enforces credentials and refuses ours: one warning line saying so,
    training finishes, nothing dropped; `runlake push` then exits 2 with one line, and the
    spool keeps every point."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "1")  # moto: auth after one request
    with MotoServer() as strict:
        bucket = strict.new_bucket()
        root, spool = f"s3://{bucket}/runs", tmp_path / "spool"
        env = child_env(strict.env, spool, RUNLAKE_UPLOAD_WAIT="1")
        go = tmp_path / "go"
        proc = start({"root": root, "points": N, "flush_every": 500, "wait_for": str(go)}, env)
        first = proc.stderr.readline()
        go.touch()
        result, _ = finish(proc)
        assert "credentials were refused" in first and result["dropped"] == {}
        for name, value in strict.env.items():
            monkeypatch.setenv(name, value)
        assert cli(["push", "--spool", str(spool)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "credentials were refused" in err
    assert sum(points(spool_events(spool)).values()) == N
