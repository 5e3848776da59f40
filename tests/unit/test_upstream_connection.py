"""UpstreamConnection fed bytes through a fake transport: parsing, 1xx, HEAD, framing, flow
control and how each way of breaking is classified. No sockets, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from proxy.upstream import BrokenResponse, NoResponse, StaleConnection, UpstreamTimeout
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.framing import chunk_frame, ends_at_close, keeps_alive
from proxy.upstream.timers import Watchdog


class FakeTransport:
    """Records writes and flow-control calls; `abort` reports the loss like a real one."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.aborted = False
        self.protocol: UpstreamConnection | None = None

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, pieces: tuple[bytes, ...]) -> None:
        for piece in pieces:
            self.written += piece

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default  # no socket: the kernel cannot be asked what it acknowledged

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        if not self.aborted and self.protocol is not None:
            self.aborted = True
            self.protocol.connection_lost(None)


def connection(
    *, idle_seconds: float = 60.0, total_seconds: float | None = None
) -> tuple[UpstreamConnection, FakeTransport]:
    watchdog = Watchdog(idle_seconds=idle_seconds, total_seconds=total_seconds)
    conn = UpstreamConnection(asyncio.get_running_loop(), watchdog=watchdog)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def whole_body(conn: UpstreamConnection) -> bytes:
    data = conn.take()
    assert conn.drained
    return data


async def test_a_response_with_content_length_completes_and_keeps_the_connection() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello")
    await conn.wait_head()
    assert (conn.status, conn.reason) == (200, b"OK")
    assert conn.headers == [(b"Content-Length", b"5"), (b"X-A", b"1")]
    assert whole_body(conn) == b"hello"
    assert conn.finish() is True
    assert repr(conn) == "<UpstreamConnection idle, 1 exchanges>"


async def test_interim_answers_are_skipped() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    )
    assert not conn.head_done
    conn.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    await conn.wait_head()
    assert (conn.status, conn.headers) == (201, [(b"Content-Length", b"0")])
    assert whole_body(conn) == b""


async def test_head_answer_has_no_body_and_the_next_exchange_parses_cleanly() -> None:
    conn, _ = connection()
    conn.begin(head_only=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    await conn.wait_head()
    assert whole_body(conn) == b""
    assert conn.finish() is True
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await conn.wait_head()
    assert whole_body(conn) == b"ok"


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(status: int) -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(f"HTTP/1.1 {status} X\r\nETag: a\r\n\r\n".encode())
    await conn.wait_head()
    assert whole_body(conn) == b""
    assert conn.finish() is True


async def test_chunked_body_is_unframed() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    await conn.wait_head()
    assert conn.take() == b"abc"
    assert not conn.drained
    conn.data_received(b"2\r\nde\r\n0\r\n\r\n")
    assert whole_body(conn) == b"de"


async def test_body_until_close_ends_at_eof_and_the_connection_is_not_reused() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc")
    await conn.wait_head()
    assert conn.take() == b"abc"
    conn.connection_lost(None)
    assert whole_body(conn) == b""
    assert conn.finish() is False


async def test_connection_close_from_the_backend_means_no_reuse() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await conn.wait_head()
    assert conn.finish() is False
    assert transport.aborted


async def test_broken_mid_body() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await conn.wait_head()
    conn.connection_lost(ConnectionResetError())
    assert conn.take() == b"abc"  # what arrived still goes out first
    with pytest.raises(BrokenResponse):
        await conn.wait_body()


async def test_closed_before_a_response_on_a_fresh_connection_is_no_response() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.connection_lost(None)
    with pytest.raises(NoResponse) as caught:
        await conn.wait_head()
    assert not isinstance(caught.value, StaleConnection)


async def test_reused_connection_closed_without_a_byte_is_stale() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await conn.wait_head()
    assert conn.finish()
    conn.begin(head_only=False)
    conn.connection_lost(ConnectionResetError())
    with pytest.raises(StaleConnection):
        await conn.wait_head()


async def test_reused_connection_closed_after_part_of_a_head_is_not_stale() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await conn.wait_head()
    assert conn.finish()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200")
    conn.connection_lost(None)
    with pytest.raises(NoResponse) as caught:
        await conn.wait_head()
    assert not isinstance(caught.value, StaleConnection)


async def test_garbage_is_no_response_and_drops_the_connection() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    conn.data_received(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(NoResponse):
        await conn.wait_head()
    assert transport.aborted


async def test_bytes_while_idle_drop_the_connection() -> None:
    conn, transport = connection()
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.aborted and not conn.usable()


async def test_reading_pauses_while_the_buffer_is_full_and_resumes_when_taken() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    size = 1024 * 1024
    conn.data_received(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
    await conn.wait_head()
    conn.data_received(b"x" * (300 * 1024))
    assert not transport.reading
    assert len(conn.take()) == 300 * 1024
    assert transport.reading


async def test_idle_deadline_counts_only_the_backends_silence() -> None:
    conn, _ = connection(idle_seconds=10.0)
    conn.begin(head_only=False)
    now = asyncio.get_running_loop().time()
    conn.check(now + 5)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await conn.wait_head()
    conn.check(now + 30)  # data untaken: the client is the slow side
    assert conn.take() == b"abc"
    conn.check(now + 39)
    assert conn.error is None
    conn.check(now + 41)  # silent for 10 s since the client took the data
    with pytest.raises(UpstreamTimeout, match="silent"):
        await conn.wait_body()


async def test_total_deadline() -> None:
    conn, _ = connection(total_seconds=30.0)
    conn.begin(head_only=False)
    conn.check(asyncio.get_running_loop().time() + 31)
    with pytest.raises(UpstreamTimeout, match="limit"):
        await conn.wait_head()


class Recorder:
    def __init__(self) -> None:
        self.checked: list[float] = []

    def check(self, now: float) -> None:
        self.checked.append(now)


def test_watchdog_sweeps_only_what_is_in_flight() -> None:
    watchdog = Watchdog(idle_seconds=60.0, total_seconds=5.0)
    assert watchdog.tick_seconds == 0.5
    busy, done = Recorder(), Recorder()
    watchdog._busy.update((busy, done))  # watch() would arm the loop's timer
    watchdog.unwatch(done)
    watchdog.sweep(7.0)
    assert (busy.checked, done.checked) == ([7.0], [])
    assert repr(watchdog) == "<Watchdog 1 exchanges, tick 0.5 s>"


def test_framing_rules() -> None:
    assert ends_at_close([(b"Connection", b"close")])
    assert not ends_at_close([(b"content-length", b"0")])
    assert not ends_at_close([(b"Transfer-Encoding", b"chunked")])
    assert keeps_alive([], "1.1")
    assert not keeps_alive([(b"Connection", b"Keep-Alive, Close")], "1.1")
    assert not keeps_alive([], "1.0")
    assert keeps_alive([(b"connection", b"keep-alive")], "1.0")
    assert chunk_frame(b"x" * 26) == (b"1a\r\n", b"x" * 26, b"\r\n")
