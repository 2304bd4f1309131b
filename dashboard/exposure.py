"""Who can reach the dashboard: the loopback rule and the options that keep it private.

Why this module exists: the dashboard has no login, so anyone who can reach its port reads
every run, config and log line and runs SQL on the store; and Streamlit's own defaults
listen on every interface and gather usage statistics. One home for the safe settings:

* ``runlake ui`` passes :data:`SAFE_OPTIONS` on the ``streamlit run`` command line;
* ``dashboard/.streamlit/config.toml`` carries the same values for ``streamlit run
  dashboard/app.py`` (Streamlit reads the ``.streamlit`` folder next to the entry script;
  a test checks the file matches :data:`SAFE_OPTIONS`);
* the app itself (``app.py``) asks :func:`exposure_problem` before showing anything, so a
  server bound beyond loopback anyway (an older Streamlit that ignores the script's folder,
  a ``--server.address`` flag or ``STREAMLIT_SERVER_ADDRESS``) shows a refusal instead of
  the store, unless the launcher passed :data:`ALLOW_REMOTE` after ``--``, as ``runlake
  ui --host`` does after its warning.

Importing this module is light (no Streamlit).
"""

from __future__ import annotations

import ipaddress

__all__ = ["ALLOW_REMOTE", "SAFE_COMMAND", "SAFE_OPTIONS", "exposure_problem", "is_loopback"]

SAFE_OPTIONS: dict[str, object] = {
    "server.address": "127.0.0.1",
    "server.headless": True,
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "viewer",
}
"""Streamlit options every launch of the dashboard uses (``--host`` replaces the address)."""

ALLOW_REMOTE = "--allow-remote"
"""Script argument (after ``--``) that says a non-loopback bind is intended."""

SAFE_COMMAND = ("streamlit run dashboard/app.py --server.address 127.0.0.1 "
                "--browser.gatherUsageStats false -- --db PATH")
"""The documented way to start the app without the CLI (docs/dashboard.md)."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(address: str | None, *, allow_remote: bool = False) -> str | None:
    """Why a server bound to ``address`` must not show the store, or None when it may.

    Args:
        address: Streamlit's ``server.address`` (None or "" means every interface).
        allow_remote: the launcher passed :data:`ALLOW_REMOTE` (an intended exposure).

    Returns:
        A message naming the address and the safe commands, or None for a loopback
        address, a unix socket, or an intended exposure.
    """
    if allow_remote:
        return None
    address = (address or "").strip()
    if address.startswith("unix://") or (address and is_loopback(address)):
        return None
    where = address or "every network interface"
    return (f"This dashboard is listening on {where}, and it has no login: anyone who can "
            f"reach the port could read every run and run SQL on the store, so it shows "
            f"nothing. Start it with `runlake ui` (127.0.0.1 only), or `{SAFE_COMMAND}`. "
            f"To expose it on purpose use `runlake ui --host ADDRESS`.")
