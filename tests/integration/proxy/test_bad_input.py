"""Malformed and hostile input: each gets the right status or a clean close, is never
forwarded, and never disturbs other requests."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration.proxy import rawhttp
from tests.integration.proxy.conftest import RunningProxy, StartBackends, StartProxy
from tests.support.backends import Backend

DRIBBLE_LIMIT = 200  # bytes of request head sent one by one before giving up


@pytest.fixture
async def setup(
    start_backends: StartBackends, start_proxy: StartProxy
) -> tuple[RunningProxy, Backend]:
    (backend,) = await start_backends(1)
    proxy = await start_proxy(
        [backend],
        limits={"max_body_bytes": 100_000, "max_header_bytes": 2048, "max_header_count": 20},
        timeouts={"client_header_seconds": 0.5, "client_body_idle_seconds": 0.5},
    )
    return proxy, backend


async def _still_serves(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as client, client.get(proxy.url + "/") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n", id="header-no-colon"),
        pytest.param(b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", id="bad-version"),
        pytest.param(b"GET /\x00 HTTP/1.1\r\nHost: t\r\n\r\n", id="nul-in-target"),
    ],
)
async def test_malformed_requests_get_400(setup: tuple[RunningProxy, Backend], raw: bytes) -> None:
    proxy, backend = setup
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status == 400
    assert backend.requests == 0
    await _still_serves(proxy)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(rawhttp.request("GET", "/", "X-Big: " + "a" * 3000), id="long-header"),
        pytest.param(rawhttp.request("GET", "/" + "p" * 3000), id="long-request-line"),
        pytest.param(
            rawhttp.request("GET", "/", *(f"X-H{i}: v" for i in range(40))), id="many-headers"
        ),
    ],
)
async def test_oversized_heads_get_431(setup: tuple[RunningProxy, Backend], raw: bytes) -> None:
    proxy, backend = setup
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status == 431
    assert backend.requests == 0


async def test_body_over_the_limit_by_content_length_gets_413_unread(
    setup: tuple[RunningProxy, Backend],
) -> None:
    proxy, backend = setup
    raw = rawhttp.request("POST", "/upload", "Content-Length: 200000")  # body never sent
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status == 413
    assert backend.requests == 0


async def test_chunked_body_over_the_limit_gets_413_while_streaming(
    setup: tuple[RunningProxy, Backend],
) -> None:
    proxy, _ = setup
    chunk = b"8000\r\n" + b"c" * 0x8000 + b"\r\n"
    raw = (
        rawhttp.request("POST", "/upload", "Transfer-Encoding: chunked") + chunk * 5 + b"0\r\n\r\n"
    )
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status == 413
    await _still_serves(proxy)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(("Content-Length: 5", "Transfer-Encoding: chunked"), id="cl-and-te"),
        pytest.param(("Transfer-Encoding: chunked", "Content-Length: 5"), id="te-and-cl"),
        pytest.param(("Content-Length: 5", "Content-Length: 6"), id="two-cl"),
        pytest.param(("Transfer-Encoding: gzip, chunked",), id="te-not-chunked-only"),
        pytest.param(("Transfer-Encoding: identity",), id="te-identity"),
    ],
)
async def test_ambiguous_framing_is_refused_never_forwarded(
    setup: tuple[RunningProxy, Backend], framing: tuple[str, ...]
) -> None:
    proxy, backend = setup
    raw = rawhttp.request("POST", "/upload", *framing, body=b"5\r\nhello\r\n0\r\n\r\n")
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status == 400
    assert backend.requests == 0


async def test_absolute_form_target_is_refused_and_the_named_host_never_contacted(
    setup: tuple[RunningProxy, Backend], start_backends: StartBackends
) -> None:
    proxy, backend = setup
    (canary,) = await start_backends(1)
    raw = rawhttp.request(
        "GET", f"http://127.0.0.1:{canary.port}/", host=f"127.0.0.1:{canary.port}"
    )
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status == 400
    assert canary.requests == 0 and backend.requests == 0


async def test_connect_is_refused(setup: tuple[RunningProxy, Backend]) -> None:
    proxy, backend = setup
    raw = b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n"
    response = await rawhttp.exchange(proxy.port, raw)
    assert response is not None and response.status in (400, 405)
    assert backend.requests == 0


async def test_slowloris_head_is_cut_off(setup: tuple[RunningProxy, Backend]) -> None:
    proxy, backend = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    head = rawhttp.request("GET", "/", *(f"X-Slow-{i}: v" for i in range(10)))
    closed = False
    try:
        for byte in head[:DRIBBLE_LIMIT]:
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            await asyncio.sleep(0.05)
            if reader.at_eof() or writer.transport.is_closing():
                closed = True
                break
            if reader._buffer:  # type: ignore[attr-defined]  # the server answered already
                closed = True
                break
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert closed, "the server kept reading a head dribbled over many seconds"
    assert answer.startswith(b"HTTP/1.1 408")
    assert backend.requests == 0
    await _still_serves(proxy)


async def test_idle_connection_that_sends_nothing_is_closed(
    setup: tuple[RunningProxy, Backend],
) -> None:
    proxy, _ = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_client_leaving_mid_request_body_disturbs_nothing(
    setup: tuple[RunningProxy, Backend],
) -> None:
    proxy, _ = setup
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(rawhttp.request("POST", "/upload", "Content-Length: 90000") + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()
    await _still_serves(proxy)


async def test_client_leaving_mid_response_disturbs_nothing(
    setup: tuple[RunningProxy, Backend],
) -> None:
    proxy, _ = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(rawhttp.request("GET", "/stream?bytes=50000000"))
    await writer.drain()
    await reader.readexactly(100_000)
    writer.transport.abort()
    await _still_serves(proxy)
    assert proxy.plane.pool.has_candidates("default")  # the backend was not blamed


@pytest.mark.parametrize(
    "length",
    [pytest.param(500, id="held-small-body"), pytest.param(90_000, id="streamed-body")],
)
async def test_a_client_that_stalls_mid_body_gets_408(
    setup: tuple[RunningProxy, Backend], length: int
) -> None:
    """Slow-body attack: the head arrives, the body starts, then nothing. The connection must
    not be held forever (timeouts.client_body_idle_seconds, 0.5 s here)."""
    proxy, _ = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(rawhttp.request("POST", "/upload", f"Content-Length: {length}") + b"x" * 100)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    await _still_serves(proxy)
