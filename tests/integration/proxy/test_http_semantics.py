"""HTTP semantics byte for byte, through a real proxy: a raw-socket backend sends exactly the
bytes in question (1xx answers, trailers, oversized heads) and a raw-socket client reads
exactly what the proxy sends back, status lines included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.integration.proxy import rawhttp
from tests.integration.proxy.conftest import RunningProxy, StartProxy, free_port
from tests.integration.proxy.subprocess_proxy import spawn_proxy
from tests.support.waiting import eventually

LIMIT_SECONDS = 10.0

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class ScriptedBackend:
    """A TCP server that reads each request head (and a Content-Length body) and answers it
    with `answer(writer)`: exactly the bytes it writes. Counts requests, and connections the
    proxy closed (EOF while waiting for the next request)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.closed_by_proxy = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_proxy += 1
                    return
                length = _content_length(head)
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                await self.answer(writer)
                await writer.drain()
        except ConnectionError:
            self.closed_by_proxy += 1
        finally:
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Answer], Awaitable[ScriptedBackend]]]:
    started: list[ScriptedBackend] = []

    async def start(answer: Answer) -> ScriptedBackend:
        backend = ScriptedBackend(answer)
        await backend.start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.stop()


StartScripted = Callable[[Answer], Awaitable[ScriptedBackend]]


def sends(*pieces: bytes) -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        for piece in pieces:
            writer.write(piece)

    return answer


async def proxy_for(
    start_proxy: StartProxy, backend: ScriptedBackend, **settings: Any
) -> RunningProxy:
    # No probes: a probe would get the scripted answer too.
    return await start_proxy([backend], health={"enabled": False}, **settings)


class RawClient:
    """One client connection: send raw bytes, read heads and chunked bodies as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def head(self) -> str:
        async with asyncio.timeout(LIMIT_SECONDS):
            return (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")

    async def chunked_body(self) -> tuple[bytes, str]:
        """The body of a chunked message and its trailer section as text ('' if empty)."""
        body = b""
        async with asyncio.timeout(LIMIT_SECONDS):
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    break
                body += await self.reader.readexactly(size)
                assert await self.reader.readexactly(2) == b"\r\n"
            trailers = b""
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                trailers += line
        return body, trailers.decode("latin-1")

    async def rest(self) -> bytes:
        async with asyncio.timeout(LIMIT_SECONDS):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raw_client() -> AsyncIterator[Callable[[int], Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def connect(port: int) -> RawClient:
        client = await RawClient.connect(port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


RawConnect = Callable[[int], Awaitable[RawClient]]

GET_11 = b"GET /page HTTP/1.1\r\nHost: test\r\n\r\n"
GET_10 = b"GET /page HTTP/1.0\r\nHost: test\r\n\r\n"


def field_lines(head: str) -> list[str]:
    return [line.lower() for line in head.split("\r\n")[1:] if line]


# -- 1xx ---------------------------------------------------------------------------------

EARLY_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\n"
    b"Link: </style.css>; rel=preload; as=style\r\n"
    b"Link: </app.js>; rel=preload; as=script\r\n"
    b"Connection: X-Hop\r\nX-Hop: gone\r\n\r\n"
)
FINAL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


async def test_1xx_answers_reach_an_http11_client_in_order_as_they_arrive(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect
) -> None:
    go_on = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter) -> None:
        # 100 Continue answers no one (the proxy sent the request unasked): not relayed.
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + EARLY_HINTS)
        await writer.drain()
        await go_on.wait()  # the final answer waits until the client holds the hints
        writer.write(b"HTTP/1.1 102 Processing\r\n\r\n" + FINAL)

    backend = await scripted(answer)
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(GET_11)

    hints = await client.head()
    assert hints.startswith("HTTP/1.1 103 Early Hints\r\n")
    assert field_lines(hints) == [
        "link: </style.css>; rel=preload; as=style",
        "link: </app.js>; rel=preload; as=script",
    ]  # in order; Connection and the field it names are hop-by-hop
    go_on.set()
    assert (await client.head()).startswith("HTTP/1.1 102 Processing\r\n")
    final = await client.head()
    assert final.startswith("HTTP/1.1 200 OK\r\n")
    assert "link:" not in final.lower()
    assert await client.reader.readexactly(5) == b"hello"

    # The connection stays good for the next request.
    go_on.set()
    client.send(GET_11)
    assert (await client.head()).startswith("HTTP/1.1 103 ")


async def test_1xx_answers_never_reach_an_http10_client(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect
) -> None:
    backend = await scripted(sends(EARLY_HINTS, b"HTTP/1.1 102 Processing\r\n\r\n", FINAL))
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(GET_10)
    head = await client.head()
    assert head.startswith("HTTP/1.0 200 OK\r\n")
    assert "link:" not in head.lower()
    assert await client.rest() == b"hello"


async def test_the_proxys_own_100_continue_comes_once_then_the_backends_hints(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect
) -> None:
    backend = await scripted(sends(b"HTTP/1.1 100 Continue\r\n\r\n", EARLY_HINTS, FINAL))
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    assert await client.head() == "HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"data")
    assert (await client.head()).startswith("HTTP/1.1 103 Early Hints\r\n")
    assert (await client.head()).startswith("HTTP/1.1 200 OK\r\n")
    assert await client.reader.readexactly(5) == b"hello"
    assert backend.requests == 1


# -- trailers ----------------------------------------------------------------------------

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
    b"Trailer: X-Checksum, Set-Cookie\r\n\r\n"
)
TRAILERS = (
    b"0\r\n"
    b"X-Checksum: abc123\r\n"
    b"Server-Timing: db;dur=53\r\n"
    b"Set-Cookie: from-trailer=1\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Content-Type: text/html\r\n"
    b"Host: evil.example\r\n"
    b"Authorization: Basic Zm9vOmJhcg==\r\n"
    b"WWW-Authenticate: Basic\r\n"
    b"Cache-Control: no-store\r\n"
    b"Location: /elsewhere\r\n"
    b"X-Request-ID: from-trailer\r\n"
    b"\r\n"
)
KEPT = "x-checksum: abc123\r\nserver-timing: db;dur=53\r\n"


@pytest.mark.parametrize("in_pieces", [False, True], ids=["whole", "in-pieces"])
async def test_trailers_reach_an_http11_client_as_trailers_and_only_allowed_ones(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect, in_pieces: bool
) -> None:
    go_on = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_HEAD + b"5\r\nhello\r\n")
        if in_pieces:
            await writer.drain()
            await go_on.wait()  # the client holds the first chunk before the rest is sent
        writer.write(b"6\r\n world\r\n" + TRAILERS)

    backend = await scripted(answer)
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(GET_11)
    head = await client.head()
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    fields = field_lines(head)
    assert "transfer-encoding: chunked" in fields
    for merged in ("x-checksum", "set-cookie", "server-timing", "content-length", "location"):
        assert not any(line.startswith(merged + ":") for line in fields), merged
    assert fields.count("content-type: text/plain") == 1
    if in_pieces:
        first = await client.reader.readuntil(b"hello\r\n")
        go_on.set()
        body, trailers = await _rest_of_chunked(client, first)
    else:
        body, trailers = await client.chunked_body()
    assert body == b"hello world"
    assert trailers.lower() == KEPT


async def _rest_of_chunked(client: RawClient, first: bytes) -> tuple[bytes, str]:
    assert first.endswith(b"5\r\nhello\r\n")
    body, trailers = await client.chunked_body()
    return b"hello" + body, trailers


async def test_trailers_are_dropped_for_an_http10_client(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect
) -> None:
    backend = await scripted(sends(CHUNKED_HEAD, b"5\r\nhello\r\n", TRAILERS))
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(GET_10)
    head = await client.head()
    assert head.startswith("HTTP/1.0 200 OK\r\n")
    assert "x-checksum" not in head.lower() and "set-cookie" not in head.lower()
    assert await client.rest() == b"hello"  # the body as is, ended by the close


async def test_an_answer_with_only_forbidden_trailers_ends_with_an_empty_trailer_section(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect
) -> None:
    backend = await scripted(
        sends(
            CHUNKED_HEAD, b"5\r\nhello\r\n0\r\nSet-Cookie: a=1\r\nContent-Type: text/html\r\n\r\n"
        )
    )
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(GET_11)
    assert "set-cookie" not in (await client.head()).lower()
    assert await client.chunked_body() == (b"hello", "")


async def test_a_content_length_trailer_breaks_the_answer_and_never_reaches_the_client(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect
) -> None:
    # The parser itself refuses Content-Length beside chunked framing, in trailers too: the
    # body is already on its way, so the client's transfer is cut short (no last chunk).
    backend = await scripted(sends(CHUNKED_HEAD, b"5\r\nhello\r\n0\r\nContent-Length: 999\r\n\r\n"))
    proxy = await proxy_for(start_proxy, backend)
    client = await raw_client(proxy.port)
    client.send(GET_11)
    assert "content-length" not in (await client.head()).lower()
    rest = await client.rest()
    assert b"hello" in rest and b"999" not in rest and not rest.endswith(b"0\r\n\r\n")


# -- response head limits ----------------------------------------------------------------

OK_TAIL = b"Content-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-Field-%05d: %s\r\n" % (i, b"v" * 90) for i in range(20_000)),
            id="2MiB-header-block",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * (2 << 20) + b"\r\n", id="2MiB-line"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Long: " + b"l" * 17_000 + b"\r\n", id="one-line-over-16KiB"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(101)),
            id="101-fields",
        ),
        pytest.param(
            (b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"x" * 8000 + b">\r\n\r\n") * 9
            + b"HTTP/1.1 200 OK\r\n",
            id="72KiB-of-1xx-heads",
        ),
    ],
)
async def test_an_upstream_head_over_the_limits_gets_502_and_the_connection_is_closed(
    scripted: StartScripted, start_proxy: StartProxy, raw_client: RawConnect, head: bytes
) -> None:
    backend = await scripted(sends(head, OK_TAIL))
    proxy = await proxy_for(start_proxy, backend)
    for attempt in (1, 2):
        client = await raw_client(proxy.port)
        client.send(GET_11)
        answer = await client.head()
        while answer.startswith("HTTP/1.1 103 "):
            answer = await client.head()  # hints relayed before the limit was crossed
        assert answer.startswith("HTTP/1.1 502 Bad Gateway\r\n")
        await eventually(lambda: backend.closed_by_proxy == attempt)  # noqa: B023
        # Not retried: another endpoint would answer alike.
        assert backend.requests == attempt
        # The endpoint stays in rotation (it is alive; its answer was too big): the second
        # attempt gets 502 again, not 503.


async def test_a_head_within_the_default_limits_passes_whole(
    scripted: StartScripted, start_proxy: StartProxy
) -> None:
    # 99 fields + Content-Length, 58 KiB, the longest line 16,000 bytes.
    fields = b"".join(b"X-F%02d: %s\r\n" % (i, b"v" * 430) for i in range(98))
    head = b"HTTP/1.1 200 OK\r\n" + fields + b"X-Long: " + b"l" * 15_980 + b"\r\n"
    backend = await scripted(sends(head, OK_TAIL))
    proxy = await proxy_for(start_proxy, backend)
    response = await rawhttp.exchange(proxy.port, rawhttp.request())
    assert response is not None and response.status == 200 and response.body == b"ok"
    assert "x-long: " + "l" * 15_980 in response.head.lower()


async def test_head_limits_are_configurable(
    scripted: StartScripted, start_proxy: StartProxy
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 100) for i in range(50))
    backend = await scripted(sends(head, OK_TAIL))
    strict = await proxy_for(
        start_proxy,
        backend,
        limits={"max_response_head_bytes": 4096, "max_response_field_bytes": 1024},
    )
    response = await rawhttp.exchange(strict.port, rawhttp.request())
    assert response is not None and response.status == 502
    few = await proxy_for(start_proxy, backend, limits={"max_response_header_count": 20})
    response = await rawhttp.exchange(few.port, rawhttp.request())
    assert response is not None and response.status == 502
    roomy = await proxy_for(start_proxy, backend)
    response = await rawhttp.exchange(roomy.port, rawhttp.request())
    assert response is not None and response.status == 200


async def test_an_over_limit_head_is_logged_as_json_with_why(scripted: StartScripted) -> None:
    backend = await scripted(sends(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 70_000 + b"\r\n"))
    proxy = await spawn_proxy(
        [backend.url],
        port=free_port(),
        admin_port=free_port(),
        env={"KUBEFERRY_HEALTH__ENABLED": "false"},
    )
    try:
        response = await rawhttp.exchange(proxy.port, rawhttp.request())
        assert response is not None and response.status == 502
        await eventually(lambda: len(proxy.events("access")) == 1)
    finally:
        await proxy.stop()
    (failure,) = proxy.events("upstream_failure")
    assert failure["kind"] == "head_too_large"
    assert "upstream response head of" in str(failure["message"])
    assert "over the 61440-byte limit" in str(failure["message"])
    (access,) = proxy.events("access")
    assert access["status"] == 502 and "61440-byte limit" in str(access["error"])


# -- the proxy's own answers speak the client's version -----------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="unparsable"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400, id="bad-field"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            id="cl-and-te",
        ),
        pytest.param(b"GET http://elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="absolute-form"),
        pytest.param(rawhttp.request("GET", "/", "X-Big: " + "a" * 9000), 431, id="431"),
        pytest.param(rawhttp.request("POST", "/", "Content-Length: 200000"), 413, id="413"),
        pytest.param(b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 405, id="405"),
    ],
)
async def test_the_proxys_own_error_answers_use_http11_status_lines(
    scripted: StartScripted, start_proxy: StartProxy, raw: bytes, status: int
) -> None:
    backend = await scripted(sends(FINAL))
    proxy = await proxy_for(start_proxy, backend, limits={"max_body_bytes": 100_000})
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None
    assert response.head.startswith(f"HTTP/1.1 {status} "), response.head
    assert backend.requests == 0


async def test_upstream_failures_answer_in_the_clients_version(
    scripted: StartScripted, start_proxy: StartProxy
) -> None:
    released = asyncio.Event()

    async def never(writer: asyncio.StreamWriter) -> None:
        await released.wait()

    try:
        for version in ("1.1", "1.0"):  # one proxy each: a timeout takes the endpoint out
            silent = await scripted(never)
            proxy = await proxy_for(start_proxy, silent, timeouts={"upstream_idle_seconds": 0.3})
            raw = f"GET / HTTP/{version}\r\nHost: t\r\n\r\n".encode()
            response = await rawhttp.exchange(proxy.port, raw)
            assert response is not None
            assert response.head.startswith(f"HTTP/{version} 504 "), response.head
    finally:
        released.set()

    huge = await scripted(sends(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 70_000 + b"\r\n"))
    proxy = await proxy_for(start_proxy, huge)
    response = await rawhttp.exchange(proxy.port, GET_11)
    assert response is not None and response.head.startswith("HTTP/1.1 502 ")

    gone = await proxy_for(start_proxy, huge)
    await huge.stop()
    response = await rawhttp.exchange(gone.port, GET_11)
    assert response is not None and response.head.startswith("HTTP/1.1 503 ")
