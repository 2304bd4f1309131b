"""Every documented way to start the dashboard listens on loopback only with Streamlit's
usage statistics off; a server bound beyond loopback by accident shows a refusal.

The commands are really launched (``runlake ui``, and the ``streamlit run`` lines of
docs/dashboard.md, verbatim but for a free port); the listening addresses come from psutil
and the served configuration from the server's own first message over its websocket.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from runlake.cli._ui import streamlit_command
from runlake.dashboard.exposure import (ALLOW_REMOTE, SAFE_COMMAND, SAFE_OPTIONS, exposure_problem,
                                        is_loopback)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "dashboard.md"


def documented_streamlit_commands() -> list[str]:
    """Every ``streamlit run ...`` command line in docs/dashboard.md (code spans and blocks)."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"`(streamlit run [^`]+)`", text)
    found += re.findall(r"^(streamlit run .+)$", text, re.M)
    return list(dict.fromkeys(c.strip() for c in found))


def served_session(port: int, query: str = "view=runs&refresh=off") -> tuple[object, str]:
    """``(config, text)``: the Config the server sends a new session, and all the text of
    the first script run's elements, read over the server's websocket like a browser."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect  # streamlit's server stack brings it

    config, parts = None, []
    with connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                 max_size=64 << 20) as ws:
        msg = BackMsg()
        msg.rerun_script.query_string = query
        ws.send(msg.SerializeToString())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fm = ForwardMsg.FromString(ws.recv(timeout=60))
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                config = fm.new_session.config
            elif kind == "delta":
                parts.append(str(fm.delta))
            elif kind == "script_finished":
                break
    return config, "\n".join(parts)


def _launch(argv: list[str], port: int, ui) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    ui.wait_healthy(proc, port, " ".join(argv[:4]))
    return proc


def _assert_private(proc: subprocess.Popen, port: int, ui) -> None:
    assert ui.listening_addresses(proc.pid) == {"127.0.0.1"}
    config, text = served_session(port)
    assert config is not None, "the server sent no new session"
    assert config.gather_usage_stats is False
    assert "has no login" not in text, "the app refused to serve"
    assert "Runs" in text


def test_docs_show_the_safe_command():
    """docs/dashboard.md shows the safe `streamlit run` command the refusal message names."""
    assert SAFE_COMMAND in documented_streamlit_commands()


@pytest.mark.slow
@pytest.mark.parametrize("command", documented_streamlit_commands())
def test_documented_streamlit_run_is_private(command, tmp_path, ui):
    """Each documented `streamlit run` line, launched from the repository root, listens on
    127.0.0.1 only, serves with usage statistics off, and shows the app."""
    port = ui.free_port()
    argv = shlex.split(command.replace("PATH", str(tmp_path / "s.duckdb")))
    argv[0] = str(Path(sys.executable).with_name("streamlit"))
    cut = argv.index("--") if "--" in argv else len(argv)
    argv[cut:cut] = ["--server.port", str(port), "--server.headless", "true"]
    proc = _launch(argv, port, ui)
    try:
        _assert_private(proc, port, ui)
    finally:
        ui.stop(proc)


@pytest.mark.slow
def test_bare_streamlit_run_of_the_app_is_private(tmp_path, ui):
    """`streamlit run dashboard/app.py` with no options at all (what people type) gets the
    safe settings from dashboard/.streamlit/config.toml."""
    port = ui.free_port()
    argv = [str(Path(sys.executable).with_name("streamlit")), "run", "dashboard/app.py",
            "--server.port", str(port), "--", "--db", str(tmp_path / "s.duckdb")]
    proc = _launch(argv, port, ui)
    try:
        _assert_private(proc, port, ui)
    finally:
        ui.stop(proc)


@pytest.mark.slow
def test_runlake_ui_is_private(tmp_path, ui):
    """`runlake ui` listens on 127.0.0.1 only and serves with usage statistics off."""
    port = ui.free_port()
    proc = ui.start_ui(tmp_path / "s.duckdb", port)
    try:
        _assert_private(proc, port, ui)
    finally:
        ui.stop(proc)


def test_script_config_file_holds_the_safe_options():
    """dashboard/.streamlit/config.toml says exactly what SAFE_OPTIONS says."""
    parsed = tomllib.loads((REPO / "dashboard" / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{name}": value for section, values in parsed.items()
            for name, value in values.items()}
    assert flat == SAFE_OPTIONS


@pytest.mark.parametrize(
    ("address", "allow", "refused"),
    [("127.0.0.1", False, False), ("localhost", False, False), ("::1", False, False),
     ("unix:///tmp/s.sock", False, False), (None, False, True), ("", False, True),
     ("0.0.0.0", False, True), ("::", False, True), ("192.168.1.5", False, True),
     ("0.0.0.0", True, False)],
)
def test_exposure_problem(address, allow, refused):
    """Every interface (Streamlit's default) and any non-loopback address are refused
    unless the launcher said the exposure is intended."""
    problem = exposure_problem(address, allow_remote=allow)
    assert (problem is not None) is refused
    if refused:
        assert "runlake ui" in problem and SAFE_COMMAND in problem


def test_runlake_ui_marks_a_public_host_as_intended(tmp_path):
    """`runlake ui --host` with a public address tells the app the exposure is intended;
    a loopback host does not, and both pass every safe option."""
    public = streamlit_command(tmp_path / "s.duckdb", "0.0.0.0", 8600)
    local = streamlit_command(tmp_path / "s.duckdb", "127.0.0.1", 8600)
    assert public[-1] == ALLOW_REMOTE and ALLOW_REMOTE not in local
    for argv, host in ((public, "0.0.0.0"), (local, "127.0.0.1")):
        assert argv[argv.index("--server.address") + 1] == host
        assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"
    assert not is_loopback("0.0.0.0")


@pytest.mark.slow
def test_server_bound_to_every_interface_refuses_to_show_the_store(tmp_path, ui):
    """A server started on 0.0.0.0 without --allow-remote (a flag overriding the safe
    config) serves only the refusal; the store named is an empty path, so nothing is
    readable during the few seconds it listens."""
    port = ui.free_port()
    argv = [str(Path(sys.executable).with_name("streamlit")), "run", "dashboard/app.py",
            "--server.address", "0.0.0.0", "--server.port", str(port),
            "--", "--db", str(tmp_path / "none.duckdb")]
    proc = _launch(argv, port, ui)
    try:
        _, text = served_session(port)
        assert "has no login" in text and "0.0.0.0" in text
        assert "No store at" not in text, "the app went past the refusal"
    finally:
        ui.stop(proc)
