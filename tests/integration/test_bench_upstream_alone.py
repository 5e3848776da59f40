"""bench.upstream_alone against a real nginx on 127.0.0.1: both clients complete exactly the
requests asked for, over keep-alive, and a backend answering anything but 200 is an error,
not a measurement."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from bench.backends import start_backends
from bench.processes import ProcessGroup
from bench.upstream_alone import CLIENTS, measure

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_completes_the_requests_asked_for(tmp_path: Path, client: str) -> None:
    with ProcessGroup() as processes:
        [port], _ = start_backends(processes, tmp_path, count=1)
        result = asyncio.run(measure(client, port, requests=500, tasks=8, seconds=30))
    assert result.requests == 500
    assert result.user_seconds + result.system_seconds > 0
    assert f"{client}: 500 requests" in result.line()


@pytest.mark.parametrize("client", CLIENTS)
async def test_an_answer_other_than_200_is_an_error(
    aiohttp_server: AiohttpServer, client: str
) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="no\n")

    application = web.Application()
    application.router.add_get("/", unavailable)
    server = await aiohttp_server(application, host="127.0.0.1")
    assert server.port is not None
    with pytest.raises(RuntimeError, match="backend answered 503"):
        await measure(client, server.port, requests=10, tasks=2, seconds=10)
