"""systemd readiness notification (``Type=notify``) without a dependency.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named
by ``$NOTIFY_SOCKET`` (sd_notify(3)); a name starting with ``@`` is in the
abstract namespace. Written out here rather than taken from the ``sdnotify``
package, which has not been released since 2017 and is a dozen lines of this.
Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.

node_agent/sd_notify.py is the same module: hub and node_agent share no code.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "ready", "stopping"]


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; returns whether it was sent.

    A missing or unreachable socket is not an error: the service still runs,
    systemd (if any) then reports a start timeout, which names the problem.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True


def ready(status: str = "", environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the service is up (``READY=1``, with a one-line ``STATUS=``)."""
    lines = ["READY=1", f"MAINPID={os.getpid()}"]
    if status:
        lines.append("STATUS=" + status.replace("\n", " "))
    return notify("\n".join(lines), environ)


def stopping(environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the service is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1", environ)
