"""Kernel-level care of upstream sockets: noticing a peer that vanished, and one that hung up.

A peer whose network vanished (node lost, pod network deleted) sends neither FIN nor RST. A
request written to it sits unacknowledged while the kernel retransmits for about 15 minutes
(tcp_retries2), and a connection waiting for a slow answer sees no traffic at all. Two socket
options bound both without touching slow but healthy backends, whose kernels keep
acknowledging: TCP_USER_TIMEOUT fails the connection once written data stayed unacknowledged
that long, and TCP keep-alive probes a connection that has been silent, so the user timeout
also covers a connection with nothing of ours in flight.

`HungUp` answers, before a pooled connection is reused, whether the backend already closed it
(its FIN or RST is in the kernel but the event loop has not read it yet): then the request is
never written there, and goes out on a fresh connection instead.
"""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass

# Anything readable, or a hang-up, on an idle HTTP/1.1 connection means it is done for: a
# backend sends nothing unasked, except perhaps a last 408 before it closes.
_EVENTS = select.POLLIN | select.POLLPRI | getattr(select, "POLLRDHUP", 0x2000)


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """TCP options for every upstream connection; None leaves the kernel's default."""

    user_timeout_seconds: float | None = None
    keepalive_idle_seconds: float | None = None
    keepalive_interval_seconds: float = 1.0
    keepalive_probes: int = 3

    def apply(self, sock: socket.socket) -> None:
        """Set the options on a connected socket (Linux names; others only keep-alive)."""
        if self.keepalive_idle_seconds is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (
                ("TCP_KEEPIDLE", self.keepalive_idle_seconds),
                ("TCP_KEEPINTVL", self.keepalive_interval_seconds),
            ):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), _whole(value))
            if hasattr(socket, "TCP_KEEPCNT"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, self.keepalive_probes)
        if self.user_timeout_seconds is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            milliseconds = max(1, round(self.user_timeout_seconds * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)


def _whole(seconds: float) -> int:
    # The keep-alive options take whole seconds, at least one.
    return max(1, round(seconds))


class HungUp:
    """Polls one socket, without waiting, for the signs of a closed peer (one system call)."""

    __slots__ = ("_poll",)

    def __init__(self, fileno: int) -> None:
        self._poll = select.poll()
        self._poll.register(fileno, _EVENTS)

    def __call__(self) -> bool:
        # POLLERR and POLLHUP are always reported, registered or not.
        return bool(self._poll.poll(0))
