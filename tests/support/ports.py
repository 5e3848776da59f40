"""Loopback ports for processes and settings that cannot take port 0."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port that was free a moment ago. The small race until the listener binds it is
    accepted: the alternative (every component picking its port and reporting it) does not exist
    for the control-plane binaries, the container or the CLI's settings."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
