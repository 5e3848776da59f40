"""UpstreamClient against real backends on loopback: an aiohttp server, and raw-socket servers
that misbehave on cue (close idle connections, break off mid-body, answer 1xx first)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.model import Endpoint
from proxy.upstream import (
    BrokenResponse,
    ConnectFailed,
    RequestNotSent,
    StaleConnection,
    UpstreamClient,
    UpstreamResponse,
    UpstreamTimeout,
)
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.timers import Watchdog
from tests.integration.proxy.conftest import StartBackends, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
LIMIT_SECONDS = 10.0


class RawBackend:
    """A TCP server that runs `script(reader, writer, connection_number)` per connection and
    counts connections and request heads."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.connections = 0
        self.heads: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> Endpoint:
        assert self._server is not None
        return Endpoint("127.0.0.1", int(self._server.sockets[0].getsockname()[1]))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.heads.append(head)
        return head

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._script(reader, writer, self.connections)
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_backend() -> AsyncIterator[Callable[[Script], Awaitable[RawBackend]]]:
    started: list[RawBackend] = []

    async def start(script: Script) -> RawBackend:
        backend = RawBackend(script)
        await backend.start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.stop()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(
        connect_timeout_seconds=2.0, idle_timeout_seconds=5.0, keepalive_seconds=30.0
    )
    yield upstream
    await upstream.close()


def get(path: str = "/", method: str = "GET", *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *extra, "", ""]
    return "\r\n".join(lines).encode()


async def body_of(response: UpstreamResponse) -> bytes:
    parts = []
    async with asyncio.timeout(LIMIT_SECONDS):
        while True:
            parts.append(response.take())
            if response.done:
                break
            if not parts[-1]:
                await response.wait()
    response.release()
    return b"".join(parts)


async def test_keep_alive_reuses_one_connection_and_never_pipelines(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    async def answer_each(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        while await backend.read_head(reader) is not None:
            await asyncio.sleep(0.05)  # a second request would arrive here if pipelined
            assert not reader._buffer  # type: ignore[attr-defined]  # nothing queued behind
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    backend = await raw_backend(answer_each)
    for _ in range(3):
        response = await client.send(backend.endpoint, get())
        assert await body_of(response) == b"ok"
    assert backend.connections == 1
    both = await asyncio.gather(*(client.send(backend.endpoint, get()) for _ in range(2)))
    assert [await body_of(r) for r in both] == [b"ok", b"ok"]
    assert backend.connections == 2  # the second concurrent request got its own connection


async def test_stale_keep_alive_connection_is_retried_on_a_fresh_one(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    async def close_on_second_request(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        await writer.drain()
        if await backend.read_head(reader) is not None:
            # The race a keep-alive timeout causes: the request arrived as the backend
            # decided to close. It goes without a byte of answer.
            writer.transport.abort()

    backend = await raw_backend(close_on_second_request)
    assert await body_of(await client.send(backend.endpoint, get())) == b"1"
    retried = await client.send(backend.endpoint, get(), retry_stale=True)
    assert await body_of(retried) == b"1"
    assert backend.connections == 2
    with pytest.raises(StaleConnection):
        await client.send(backend.endpoint, get("/", "POST", "Content-Length: 0"))


async def test_connection_closed_while_idle_is_never_reused(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        await writer.drain()
        # Closes without Connection: close, as a backend's keep-alive timeout does.

    backend = await raw_backend(one_answer_then_close)
    assert await body_of(await client.send(backend.endpoint, get())) == b"x"
    assert repr(client) == "<UpstreamClient 1 idle connections to 1 endpoints>"
    # Until the backend's close reached the connection:
    await eventually(lambda: repr(client) == "<UpstreamClient 0 idle connections to 1 endpoints>")
    assert await body_of(await client.send(backend.endpoint, get("/", "POST"))) == b"x"
    assert backend.connections == 2


async def test_connection_close_from_the_backend_is_honoured(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    async def answer_with_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nc")
        await writer.drain()
        await reader.read()  # keep the socket open: only the header says close

    backend = await raw_backend(answer_with_close)
    for _ in range(2):
        assert await body_of(await client.send(backend.endpoint, get())) == b"c"
    assert backend.connections == 2
    assert repr(client) == "<UpstreamClient 0 idle connections to 0 endpoints>"


async def test_interim_answers_are_skipped_and_no_body_statuses_keep_the_connection(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",  # to a HEAD
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
    ]

    async def scripted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for answer in answers:
            if await backend.read_head(reader) is None:
                return
            writer.write(answer)
            await writer.drain()

    backend = await raw_backend(scripted)
    got = []
    for head, head_only in [(get(), False), (get(), False), (get(), False)]:
        response = await client.send(backend.endpoint, head, head_only=head_only)
        got.append((response.status, await body_of(response)))
    response = await client.send(backend.endpoint, get("/", "HEAD"), head_only=True)
    got.append((response.status, await body_of(response)))
    response = await client.send(backend.endpoint, get())
    got.append((response.status, await body_of(response)))
    assert got == [(200, b"yes"), (204, b""), (304, b""), (200, b""), (200, b"abc")]
    assert backend.connections == 1


async def test_backend_breaking_off_mid_body(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    async def break_mid_body(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        writer.transport.abort()

    backend = await raw_backend(break_mid_body)
    response = await client.send(backend.endpoint, get())
    received = b""
    with pytest.raises(BrokenResponse):
        async with asyncio.timeout(LIMIT_SECONDS):
            while True:
                received += response.take()
                await response.wait()
    response.close()
    assert received == b"0123456789"


async def test_body_until_close(
    raw_backend: Callable[[Script], Awaitable[RawBackend]], client: UpstreamClient
) -> None:
    async def no_framing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()

    backend = await raw_backend(no_framing)
    assert await body_of(await client.send(backend.endpoint, get())) == b"all of it"


async def test_silent_backend_times_out(
    raw_backend: Callable[[Script], Awaitable[RawBackend]],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await backend.read_head(reader)
        await reader.read()

    backend = await raw_backend(silent)
    impatient = UpstreamClient(
        connect_timeout_seconds=2.0, idle_timeout_seconds=0.2, keepalive_seconds=30.0
    )
    try:
        with pytest.raises(UpstreamTimeout):
            await impatient.send(backend.endpoint, get())
    finally:
        await impatient.close()


async def test_refused_connection(client: UpstreamClient) -> None:
    with pytest.raises(ConnectFailed):
        await client.send(Endpoint("127.0.0.1", free_port()), get())


async def test_chunked_request_body_and_large_response_from_aiohttp(
    start_backends: StartBackends, client: UpstreamClient
) -> None:
    (backend,) = await start_backends(1)
    endpoint = Endpoint("127.0.0.1", backend.port)

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"z" * 16384

    head = get("/upload", "POST", "Transfer-Encoding: chunked")
    response = await client.send(endpoint, head, parts(), chunked=True)
    assert response.status == 200
    assert b'"bytes": 1048576' in await body_of(response)

    response = await client.send(endpoint, get("/stream?bytes=5000000&chunked=1"))
    assert len(await body_of(response)) == 5_000_000


async def test_a_post_the_backend_closed_before_receiving_goes_out_again() -> None:
    """The race of a backend's keep-alive close with our next request, made certain: the
    backend's FIN is in our kernel, unread by the event loop, when the POST is written. The
    FIN acknowledges none of the POST, so nothing received it: RequestNotSent, whatever the
    method. A blocking socket plays the backend so the loop cannot run in between."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        _, conn = await loop.create_connection(
            lambda: UpstreamConnection(loop, watchdog=Watchdog(idle_seconds=LIMIT_SECONDS)),
            "127.0.0.1",
            port,
        )
        peer, _ = server.accept()
        with peer:
            conn.begin(head_only=False)
            conn.write(get())
            peer.settimeout(LIMIT_SECONDS)
            assert peer.recv(65536).startswith(b"GET / ")
            peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
            async with asyncio.timeout(LIMIT_SECONDS):
                await conn.wait_head()
                while not conn.drained:
                    conn.take()
                    if not conn.drained:
                        await conn.wait_body()
            assert conn.finish()
        # The backend closed (FIN sent) with nothing unread; the loop has not run since.
        time.sleep(0.05)  # noqa: ASYNC251 - blocking on purpose: the FIN arrives unread
        conn.begin(head_only=False)
        conn.write(get("/", "POST", "Content-Length: 3") + b"abc")
        with pytest.raises(RequestNotSent, match="before the request reached it"):
            async with asyncio.timeout(LIMIT_SECONDS):
                await conn.wait_head()
