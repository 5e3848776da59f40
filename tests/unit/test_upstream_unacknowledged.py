"""What the backend's kernel acknowledged decides whether a broken request counts as never
received (proxy.upstream.sockets.bytes_acknowledged, UpstreamConnection.connection_lost).
A fake transport whose socket answers TCP_INFO with a chosen tcpi_bytes_acked: the logic
alone. tests/integration/proxy/test_upstream_client.py and test_failover_concurrency.py run
it on real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from proxy.upstream import NoResponse, RequestNotSent, StaleConnection
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.sockets import bytes_acknowledged
from proxy.upstream.timers import Watchdog
from tests.unit.test_upstream_connection import FakeTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FIRST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"


class TcpInfoSocket:
    """Answers TCP_INFO like Linux: 256 bytes, tcpi_bytes_acked at 120, the SYN counted."""

    def __init__(self) -> None:
        self.acked = 0

    def getsockopt(self, level: int, option: int, buflen: int) -> bytes:
        assert (level, option) == (socket.IPPROTO_TCP, socket.TCP_INFO)
        info = bytearray(256)
        struct.pack_into("Q", info, 120, self.acked + 1)
        return bytes(info[:buflen])


class SocketTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sock = TcpInfoSocket()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.sock if name == "socket" else default


def connection(*, resend: bool = True) -> tuple[UpstreamConnection, SocketTransport]:
    conn = UpstreamConnection(
        asyncio.get_running_loop(),
        watchdog=Watchdog(idle_seconds=60.0),
        resend_unacknowledged=resend,
    )
    transport = SocketTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def reused(*, resend: bool = True) -> tuple[UpstreamConnection, SocketTransport]:
    """A connection that served one exchange, all of it acknowledged."""
    conn, transport = connection(resend=resend)
    conn.begin(head_only=False)
    conn.write(FIRST)
    transport.sock.acked = len(FIRST)
    conn.data_received(OK)
    assert conn.take() == b"ok" and conn.finish()
    return conn, transport


async def test_a_fin_acknowledging_none_of_the_request_means_nothing_received() -> None:
    conn, _ = reused()
    conn.begin(head_only=False)
    conn.write(POST)  # the backend's kernel acknowledges none of it
    conn.eof_received()
    conn.connection_lost(None)
    with pytest.raises(RequestNotSent, match="before the request reached it"):
        await conn.wait_head()


async def test_a_fin_after_the_request_was_acknowledged_may_have_been_read() -> None:
    conn, transport = reused()
    conn.begin(head_only=False)
    conn.write(POST)
    transport.sock.acked += 1  # one byte of it reached the backend
    conn.eof_received()
    conn.connection_lost(None)
    with pytest.raises(StaleConnection):
        await conn.wait_head()


async def test_a_reset_before_acknowledgement_on_a_reused_connection_is_resent() -> None:
    conn, _ = reused()
    conn.begin(head_only=False)
    conn.write(POST)
    conn.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(RequestNotSent, match="reset before the request was acknowledged"):
        await conn.wait_head()


async def test_resend_unacknowledged_off_keeps_a_reset_a_stale_connection() -> None:
    conn, _ = reused(resend=False)
    conn.begin(head_only=False)
    conn.write(POST)
    conn.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(StaleConnection):
        await conn.wait_head()


async def test_a_reset_after_acknowledgement_stays_a_stale_connection() -> None:
    conn, transport = reused()
    conn.begin(head_only=False)
    conn.write(POST)
    transport.sock.acked += len(POST)
    conn.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(StaleConnection):
        await conn.wait_head()


async def test_a_reset_on_a_fresh_connection_proves_nothing() -> None:
    # Its first request may have been read: a backend's accept queue acknowledges data too.
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.write(POST)
    conn.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(NoResponse) as raised:
        await conn.wait_head()
    assert not isinstance(raised.value, StaleConnection | RequestNotSent)


def test_bytes_acknowledged_reads_tcp_info_and_discounts_the_syn() -> None:
    sock = TcpInfoSocket()
    sock.acked = 500
    assert bytes_acknowledged(sock) == 500
    assert bytes_acknowledged(None) is None


def test_bytes_acknowledged_is_none_when_the_kernel_cannot_tell() -> None:
    class Short(TcpInfoSocket):
        def getsockopt(self, level: int, option: int, buflen: int) -> bytes:
            return bytes(104)  # a kernel older than 4.1: no tcpi_bytes_acked

    class Closed(TcpInfoSocket):
        def getsockopt(self, level: int, option: int, buflen: int) -> bytes:
            raise OSError(9, "Bad file descriptor")

    assert bytes_acknowledged(Short()) is None
    assert bytes_acknowledged(Closed()) is None
