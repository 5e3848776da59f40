"""A backend that vanished, hung up or stopped answering, as the upstream client sees it:
the first-byte deadline, a connection the kernel timed out, a pooled connection already hung
up, a write that failed at once. Fake transports and a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from proxy.errors import classify
from proxy.model import Endpoint
from proxy.retry_budget import RetryBudget
from proxy.upstream import (
    FirstByteTimeout,
    NoResponse,
    RequestNotSent,
    StaleConnection,
    UpstreamClient,
)
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.timers import Watchdog
from tests.unit.test_upstream_connection import FakeTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def connection(
    *, first_byte_seconds: float | None = 1.0, idle_seconds: float = 60.0
) -> tuple[UpstreamConnection, FakeTransport]:
    watchdog = Watchdog(idle_seconds=idle_seconds, first_byte_seconds=first_byte_seconds)
    conn = UpstreamConnection(asyncio.get_running_loop(), watchdog=watchdog)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


async def test_no_byte_within_the_first_byte_limit_fails_the_attempt() -> None:
    conn, transport = connection(first_byte_seconds=1.0)
    conn.begin(head_only=False)
    now = asyncio.get_running_loop().time()
    conn.check(now + 0.9)
    assert conn.error is None
    conn.check(now + 1.0)
    with pytest.raises(FirstByteTimeout, match="within 1 s"):
        await conn.wait_head()
    assert transport.aborted
    assert classify(conn.error or Exception()).kind == "first_byte_timeout"


async def test_the_first_byte_limit_ends_with_the_first_byte() -> None:
    conn, _ = connection(first_byte_seconds=1.0, idle_seconds=60.0)
    conn.begin(head_only=False)
    now = asyncio.get_running_loop().time()
    conn.data_received(b"HTTP/1.1 200")  # a slow head is the idle limit's business
    conn.check(now + 30)
    assert conn.error is None


async def test_the_first_byte_limit_waits_for_a_streamed_body_to_be_sent() -> None:
    conn, _ = connection(first_byte_seconds=1.0)
    conn.begin(head_only=False)
    stalled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        await stalled.wait()  # the client is still uploading
        yield b"late"

    conn.send_body(body(), chunked=True)
    conn.check(asyncio.get_running_loop().time() + 5)
    assert conn.error is None
    conn.finish()


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(110, "Connection timed out"),
        # What TCP_USER_TIMEOUT reports when retransmissions met an unreachable host (a pod
        # whose network was deleted), instead of ETIMEDOUT.
        OSError(113, "No route to host"),
    ],
)
async def test_a_connection_the_kernel_gave_up_on_is_not_a_stale_one(error: OSError) -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await conn.wait_head()
    assert conn.finish()
    conn.begin(head_only=False)  # reused: a silent close would be StaleConnection
    conn.connection_lost(error)
    with pytest.raises(NoResponse, match="unreachable") as caught:
        await conn.wait_head()
    assert not isinstance(caught.value, StaleConnection)
    assert classify(caught.value).backend_fault  # it leaves the rotation


async def test_a_connection_whose_peer_hung_up_is_not_usable() -> None:
    conn, _ = connection()
    hung_up = False
    conn.hung_up = lambda: hung_up  # type: ignore[assignment]
    assert conn.usable()
    hung_up = True  # the backend's FIN is in the kernel, not yet read by the loop
    assert not conn.usable()


def test_the_watchdog_ticks_for_the_shortest_limit() -> None:
    assert Watchdog(idle_seconds=60.0, first_byte_seconds=2.0).tick_seconds == 0.2
    assert Watchdog(idle_seconds=60.0).tick_seconds == 1.0


class _Client:
    """An UpstreamClient whose new connections are fake ones, answered or reset at once."""

    def __init__(self, *fresh: str) -> None:
        self.client = UpstreamClient(
            connect_timeout_seconds=1.0, idle_timeout_seconds=60.0, keepalive_seconds=4.0
        )
        self.fresh = list(fresh)  # "answer" or "reset", one per connection made
        self.client._connect = self._connect  # type: ignore[method-assign]

    async def _connect(self, key: tuple[str, int]) -> UpstreamConnection:
        conn, transport = connection(first_byte_seconds=None)
        _behave(conn, transport, self.fresh.pop(0))
        return conn


def _behave(conn: UpstreamConnection, transport: FakeTransport, how: str) -> None:
    def write(data: bytes) -> None:
        if how == "reset":
            transport.aborted = True  # as a real transport does when send() raises
            return
        transport.written += data
        asyncio.get_running_loop().call_soon(conn.data_received, OK)

    transport.write = write  # type: ignore[method-assign]


ENDPOINT = Endpoint("127.0.0.1", 8080)
REQUEST = b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n"


async def test_a_fresh_connection_reset_before_the_write_is_request_not_sent() -> None:
    fake = _Client("reset")
    with pytest.raises(RequestNotSent):
        await fake.client.send(ENDPOINT, REQUEST, b"x")
    assert classify(RequestNotSent("x")).nothing_sent


async def test_a_fresh_connection_the_backend_closed_before_the_write_is_not_written_to() -> None:
    fake = _Client("answer")
    fresh, transport = connection(first_byte_seconds=None)
    transport.aborted = True  # its EOF was handled while the request waited for the loop

    async def connect(key: tuple[str, int]) -> UpstreamConnection:
        return fresh

    fake.client._connect = connect  # type: ignore[method-assign]
    with pytest.raises(RequestNotSent):
        await fake.client.send(ENDPOINT, REQUEST, b"x")
    assert transport.written == b""


async def test_a_pooled_connection_reset_before_the_write_gives_way_to_a_fresh_one() -> None:
    fake = _Client("answer")
    pooled, transport = connection(first_byte_seconds=None)
    _behave(pooled, transport, "reset")
    fake.client.park((ENDPOINT.host, ENDPOINT.port), pooled)

    response = await fake.client.send(ENDPOINT, REQUEST, b"x")  # a POST: no retry_stale

    assert (response.status, fake.fresh) == (200, [])


async def test_a_pooled_connection_already_hung_up_is_never_written_to() -> None:
    fake = _Client("answer")
    pooled, transport = connection(first_byte_seconds=None)
    pooled.hung_up = lambda: True  # type: ignore[assignment]
    fake.client.park((ENDPOINT.host, ENDPOINT.port), pooled)

    response = await fake.client.send(ENDPOINT, REQUEST, b"x")

    assert response.status == 200
    assert transport.written == b"" and transport.aborted


async def test_close_idle_drops_the_idle_connections_of_the_given_endpoints_only() -> None:
    fake = _Client()
    leaving, leaving_transport = connection()
    staying, staying_transport = connection()
    fake.client.park((ENDPOINT.host, ENDPOINT.port), leaving)
    fake.client.park(("127.0.0.1", 9090), staying)

    assert fake.client.close_idle([ENDPOINT]) == 1

    assert leaving_transport.aborted and not staying_transport.aborted
    assert repr(fake.client) == "<UpstreamClient 1 idle connections to 1 endpoints>"


def test_a_budget_refusal_reads_well_in_an_access_line() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=3)
    for _ in range(40):
        budget.request_started()
    while budget.try_start_retry():
        pass
    assert str(budget) == "8 retries in flight for 40 requests, limit 8"
