"""The idle section's client against a real aiohttp server on 127.0.0.1: connections opened
with one request each and then held, a sample asked again, the server's closes seen, and the
failures it counts (a refused port, an answer that ends the connection)."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bench.idle_client import ask_sample, close_all, closed_by_peer, open_idle
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def app(*, close: bool = False) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        response = web.Response(text=f"hello {request.path}\n")
        if close:
            response.force_close()
        return response

    application = web.Application()
    application.router.add_get("/{tail:.*}", answer)
    return application


def port_of(server: TestServer) -> int:
    assert server.port is not None, "the test server is listening"
    return server.port


async def test_connections_are_opened_held_and_sampled(aiohttp_server: AiohttpServer) -> None:
    server = await aiohttp_server(app(), host="127.0.0.1")
    opened = await open_idle(port_of(server), 150, deadline_seconds=30)
    try:
        assert (len(opened.sockets), sum(opened.failures.values())) == (150, 0)
        assert closed_by_peer(opened.sockets) == 0
        sampled = await ask_sample(opened.sockets, 20, deadline_seconds=30)
        assert (sampled.asked, sampled.answered, sum(sampled.failures.values())) == (20, 20, 0)
        # Still held after the second request, and still answering.
        assert closed_by_peer(opened.sockets) == 0
        again = await ask_sample(opened.sockets, 150, deadline_seconds=30)
        assert again.answered == 150
    finally:
        close_all(opened.sockets)
    assert all(sock.fileno() == -1 for sock in opened.sockets)


async def test_connections_the_server_closes_are_counted(aiohttp_server: AiohttpServer) -> None:
    server = await aiohttp_server(app(), host="127.0.0.1")
    opened = await open_idle(port_of(server), 30, deadline_seconds=30)
    try:
        assert len(opened.sockets) == 30
        await server.close()  # closes every kept-alive connection
        await eventually(lambda: closed_by_peer(opened.sockets) == 30, timeout=10)
        sampled = await ask_sample(opened.sockets, 10, deadline_seconds=30)
        assert sampled.answered == 0
        assert sum(sampled.failures.values()) == 10
    finally:
        close_all(opened.sockets)


async def test_an_answer_that_ends_the_connection_is_not_an_idle_connection(
    aiohttp_server: AiohttpServer,
) -> None:
    server = await aiohttp_server(app(close=True), host="127.0.0.1")
    opened = await open_idle(port_of(server), 10, deadline_seconds=30)
    assert opened.sockets == ()
    assert opened.failures == {"ValueError: status 200, keep-alive False": 10}


async def test_a_refused_port_is_counted_with_its_reason() -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        opened = await open_idle(port, 5, deadline_seconds=30)
    assert opened.sockets == ()
    assert opened.failures == {"ConnectionRefusedError [Errno 111]": 5}
