"""The assembled Controller in-process: a loopback API stand-in, a real backend, real sockets.
(The real kube-apiserver version lives in tests/integration.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import ApiClient, Configuration

from controller.app import Controller, ControllerOptions, SidecarUpstream
from proxy.settings import load_settings
from tests.unit.controller.canned_api import (
    ServerFactory,
    api_app,
    endpoint_slice,
    hang,
    is_watch,
    list_body,
)
from tests.unit.controller.factories import RecordingEvents, service_json


async def backend(aiohttp_server: ServerFactory) -> TestServer:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    return await aiohttp_server(app, host="127.0.0.1")


async def fake_api(
    aiohttp_server: ServerFactory, services: list[dict[str, Any]], slices: list[dict[str, Any]]
) -> ApiClient:
    def handler(items: list[dict[str, Any]]) -> Callable[[web.Request], Awaitable[Any]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if is_watch(request):
                return await hang(request)
            return web.json_response(list_body(items, "10"))

        return handle

    server = await aiohttp_server(api_app(handler(services), handler(slices)))
    return ApiClient(Configuration(host=str(server.make_url("")).rstrip("/")))


def enabled_service(name: str, **annotations: str) -> dict[str, Any]:
    full = {"kubeferry.io/enabled": "true"}
    full.update({f"kubeferry.io/{k}": v for k, v in annotations.items()})
    return service_json(
        name,
        "shop",
        annotations=full,
        ports=[{"name": "http", "port": 80, "targetPort": 8080}],
    )


def loopback_slice(name: str, port: int) -> dict[str, Any]:
    raw = endpoint_slice("shop", f"{name}-1", name, "127.0.0.1")
    raw["ports"][0]["port"] = port
    return raw


async def test_ingress_controller_routes_to_the_enrolled_service(
    aiohttp_server: ServerFactory,
) -> None:
    web_backend = await backend(aiohttp_server)
    assert web_backend.port is not None
    api = await fake_api(
        aiohttp_server,
        [enabled_service("web", **{"path-prefix": "/web"}), enabled_service("bad", port="grpc")],
        [loopback_slice("web", web_backend.port)],
    )
    events = RecordingEvents()
    settings = load_settings(overrides={"admin_port": 0, "host": "127.0.0.1"})
    options = ControllerOptions("ingress", listen_port=0)
    async with api, Controller(settings, options, api_client=api, events=events) as controller:
        assert not controller.plane.readiness.ready
        async with asyncio.timeout(5):
            await controller.wait_synced()
        assert controller.plane.readiness.ready
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{controller.ports[0]}"
            async with session.get(f"{url}/web/x") as response:
                assert response.status == 200
                assert await response.text() == "hello from /web/x"
            async with session.get(f"{url}/other") as response:
                assert response.status == 404
        assert [(w[0], w[1]) for w in events.warnings] == [("bad", "InvalidAnnotation")]
    assert not controller.plane.readiness.ready  # drained


async def test_sidecar_controller_serves_each_upstream_on_its_port(
    aiohttp_server: ServerFactory,
) -> None:
    orders = await backend(aiohttp_server)
    assert orders.port is not None
    svc = service_json("orders", "shop", ports=[{"name": "http", "port": 80}])
    api = await fake_api(aiohttp_server, [svc], [loopback_slice("orders", orders.port)])
    settings = load_settings(overrides={"admin_port": 0})
    options = ControllerOptions("sidecar", upstreams=(SidecarUpstream("shop", "orders", 0),))
    async with api, Controller(settings, options, api_client=api, events=RecordingEvents()) as c:
        async with asyncio.timeout(5):
            await c.wait_synced()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{c.ports[0]}/a") as response,
        ):
            assert response.status == 200
            assert await response.text() == "hello from /a"
