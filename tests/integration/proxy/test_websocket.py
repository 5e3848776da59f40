"""WebSocket upgrade proxied both ways."""

from __future__ import annotations

import aiohttp
from aiohttp import WSMsgType

from proxy.model import Endpoint
from tests.integration.proxy.conftest import RunningProxy, StartBackends, StartProxy
from tests.support.waiting import eventually


async def test_websocket_messages_pings_and_close_codes_pass_through(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    (backend,) = await start_backends(1)
    proxy = await start_proxy([backend])

    async with client.ws_connect(
        proxy.url + "/ws", protocols=("echo",), autoping=False, timeout=aiohttp.ClientWSTimeout(5)
    ) as ws:
        assert ws.protocol == "echo"
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
        await ws.send_bytes(b"\x00\x01binary")
        message = await ws.receive(timeout=5)
        assert (message.type, message.data) == (WSMsgType.BINARY, b"\x00\x01binary")

        await ws.ping(b"are-you-there")
        pong = await ws.receive(timeout=5)
        assert (pong.type, pong.data) == (WSMsgType.PONG, b"are-you-there")
        assert backend.pings == [b"are-you-there"]  # relayed, not answered by the proxy

        await ws.send_str("close:4001")
        closing = await ws.receive(timeout=5)
        assert closing.type is WSMsgType.CLOSE
        assert closing.data == 4001


async def test_client_close_code_reaches_the_backend_and_proxy_keeps_serving(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    (backend,) = await start_backends(1)
    proxy = await start_proxy([backend])

    ws = await client.ws_connect(proxy.url + "/ws", timeout=aiohttp.ClientWSTimeout(5))
    await ws.send_str("x")
    await ws.receive(timeout=5)
    await ws.close(code=4002)

    await eventually(lambda: backend.close_codes == [4002])
    await eventually(lambda: proxy.plane.pool.inflight(_only_endpoint(proxy)) == 0)
    async with client.get(proxy.url + "/") as response:
        assert response.status == 200


async def test_websocket_to_an_unreachable_backend_fails_cleanly(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    (backend,) = await start_backends(1)
    proxy = await start_proxy([backend])
    await backend.stop()

    async with client.get(
        proxy.url + "/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as response:
        assert response.status == 502


def _only_endpoint(proxy: RunningProxy) -> Endpoint:
    spec = proxy.plane.pool.spec("default")
    assert spec is not None
    return spec.endpoints[0]


async def test_backend_close_code_and_reason_reach_the_client_and_its_reply_the_backend(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    (backend,) = await start_backends(1)
    proxy = await start_proxy([backend])

    ws = await client.ws_connect(
        proxy.url + "/ws", autoclose=False, timeout=aiohttp.ClientWSTimeout(5, 5)
    )
    await ws.send_str("close:4001")  # the backend closes with 4001 "bye"
    closing = await ws.receive(timeout=5)
    assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 4001, "bye")
    await ws.close(code=4005)  # the client's answer to the backend's close

    assert ws.close_code == 4001
    await eventually(lambda: backend.close_replies == [4005])
    await eventually(lambda: proxy.plane.pool.inflight(_only_endpoint(proxy)) == 0)
