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

`bytes_acknowledged` reads how much of what we sent the backend's kernel acknowledged
(TCP_INFO): when the backend's FIN arrives acknowledging none of a request, the backend
closed the connection before the request reached it, and the request can go elsewhere
whatever its method (UpstreamConnection.eof_received).
"""

from __future__ import annotations

import select
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

# Anything readable, or a hang-up, on an idle HTTP/1.1 connection means it is done for: a
# backend sends nothing unasked, except perhaps a last 408 before it closes.
_EVENTS = select.POLLIN | select.POLLPRI | getattr(select, "POLLRDHUP", 0x2000)
# Linux's struct tcp_info: tcpi_bytes_acked (u64, since 4.1) sits at byte 120. It counts the
# SYN as one byte.
_TCP_INFO_SIZE = 128
_BYTES_ACKED_OFFSET = 120
_SYN_BYTES = 1


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


class SocketLike(Protocol):
    """What a transport's "socket" extra gives: asyncio's TransportSocket or uvloop's."""

    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes: ...


def bytes_acknowledged(sock: SocketLike | None) -> int | None:
    """Data bytes of ours the peer's kernel acknowledged on this connection so far, or None
    where the kernel cannot tell (not Linux, too old, socket already closed)."""
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCP_INFO_SIZE:
        return None
    acked: int = struct.unpack_from("Q", info, _BYTES_ACKED_OFFSET)[0]
    return max(0, acked - _SYN_BYTES)
