"""`runlake ui`: start the Streamlit dashboard over the store.

The server binds to 127.0.0.1 by default, with Streamlit's usage statistics off
(``runlake.dashboard.exposure.SAFE_OPTIONS``): the dashboard has no authentication, so
exposing it on another interface shows every run, config and log line to anyone who can
reach the port. Any non-loopback ``--host`` prints a loud warning first, and tells the app
the exposure is intended (``--allow-remote``), which it otherwise refuses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runlake.cli._common import add_store_args, store_paths, subcommand
from runlake.dashboard.exposure import ALLOW_REMOTE, SAFE_OPTIONS, is_loopback

__all__ = ["app_path", "is_loopback", "register", "streamlit_command"]


def register(sub) -> None:
    p = subcommand(
        sub,
        "ui",
        "open the dashboard (Streamlit) over the store; localhost only unless --host",
        "runlake ui --root ./runlake-data --port 8501",
    )
    add_store_args(p)
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; anything else exposes the dashboard, "
        "which has no login)",
    )
    p.set_defaults(func=_run)


def app_path() -> Path:
    """The dashboard's entry script inside the installed package."""
    from runlake.dashboard import APP

    return APP


def _flag_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def streamlit_command(db: Path, host: str, port: int, root: Path | None = None) -> list[str]:
    """The argv that serves the dashboard: ``streamlit run`` through
    ``runlake.dashboard._serve`` (which warms the app's imports while the server starts),
    with the safe options and ``host`` as the address; a non-loopback host adds
    ``--allow-remote`` for the app. ``root``: where the Media view finds the runs' blobs
    (default: the store's folder)."""
    options = {**SAFE_OPTIONS, "server.address": host, "server.port": port}
    flags = [part for name, value in options.items() for part in (f"--{name}", _flag_value(value))]
    script_args = ["--db", str(db)] + (["--root", str(root)] if root is not None else [])
    script_args += [] if is_loopback(host) else [ALLOW_REMOTE]
    return [sys.executable, "-m", "runlake.dashboard._serve", "run", str(app_path()), *flags,
            "--", *script_args]


def _run(args) -> int:
    from runlake.schemas.errors import ConfigError

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    root, db = store_paths(args)
    if not is_loopback(args.host):
        bar = "!" * 78
        print(
            f"{bar}\nWARNING: binding the dashboard to {args.host}: it has NO authentication.\n"
            f"Everyone who can reach port {args.port} on this address can read every run,\n"
            f"config, log line and run SQL on the store. Use the default 127.0.0.1 with an\n"
            f"SSH tunnel (ssh -L {args.port}:127.0.0.1:{args.port} host) instead.\n{bar}",
            file=sys.stderr,
        )
    if not db.exists():
        print(f"note: no store at {db} yet; the dashboard waits for `runlake ingest`.", file=sys.stderr)
    print(f"runlake ui: starting http://{args.host}:{args.port}  (store {db}; Ctrl-C stops); "
          f"it answers once Streamlit prints its URL below", file=sys.stderr)
    # the Media view reads blobs under the root: name it when the user did (--root or
    # $RUNLAKE_DIR); else the app takes the store's own folder, which `--db X` alone means
    named = getattr(args, "root", None) or os.environ.get("RUNLAKE_DIR")
    argv = streamlit_command(db, args.host, args.port, root if named else None)
    sys.stderr.flush()
    if os.name == "posix":
        # Replace this process, so signals (Ctrl-C, SIGTERM) reach the server directly.
        os.execv(argv[0], argv)
    return subprocess.call(argv)
