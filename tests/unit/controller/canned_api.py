"""Raw API JSON for Services and EndpointSlices, and a loopback stand-in for the API server
that answers list and watch requests from handlers the test defines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import ApiClient, Configuration

from controller.cache import Cache, WatchScope
from controller.objects import SERVICE_NAME_LABEL, ServiceInfo, SliceInfo
from controller.watch import WatchTiming, run_watches
from tests.support.waiting import eventually
from tests.unit.controller.factories import service_json


def service(namespace: str, name: str, rv: str = "1") -> dict[str, Any]:
    """factories.service_json at resourceVersion `rv` (watch events carry new versions)."""
    raw = service_json(name, namespace)
    raw["metadata"]["resourceVersion"] = rv
    return raw


def endpoint_slice(
    namespace: str, name: str, service_name: str, *addresses: str, rv: str = "1"
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "resourceVersion": rv,
            "labels": {SERVICE_NAME_LABEL: service_name} if service_name else {},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


def svc_info(namespace: str, name: str, rv: str = "1") -> ServiceInfo:
    return ServiceInfo.from_api(service(namespace, name, rv))


def slice_info(
    namespace: str, name: str, service_name: str, *addresses: str, rv: str = "1"
) -> SliceInfo:
    return SliceInfo.from_api(endpoint_slice(namespace, name, service_name, *addresses, rv=rv))


def list_body(items: Iterable[dict[str, Any]], rv: str, cont: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": list(items)}


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def bookmark(rv: str) -> bytes:
    return event("BOOKMARK", {"metadata": {"resourceVersion": rv}})


def gone_event(message: str = "too old resource version: 1 (5)") -> bytes:
    status = {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired"}
    return event("ERROR", {**status, "message": message})


def gone_status() -> web.Response:
    body = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    return web.json_response(body, status=410)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerFactory = Callable[..., Awaitable[TestServer]]

SERVICES_PATHS = ("/api/v1/services", "/api/v1/namespaces/{ns}/services")
SLICES_PATHS = (
    "/apis/discovery.k8s.io/v1/endpointslices",
    "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
)


def api_app(services: Handler, slices: Handler) -> web.Application:
    """An app routing the cluster-wide and namespaced list/watch paths of both kinds."""
    app = web.Application()
    for path in SERVICES_PATHS:
        app.router.add_get(path, services)
    for path in SLICES_PATHS:
        app.router.add_get(path, slices)
    return app


def is_watch(request: web.Request) -> bool:
    return request.query.get("watch") in ("true", "True", "1")


async def stream(request: web.Request, *lines: bytes) -> web.StreamResponse:
    """A 200 watch response writing `lines`, then ending (as a server timeout does)."""
    response = web.StreamResponse()
    response.content_type = "application/json"
    await response.prepare(request)
    for line in lines:
        await response.write(line)
    await response.write_eof()
    return response


async def hang(request: web.Request) -> web.StreamResponse:
    """A 200 watch response that sends headers and then nothing, ever (until the client goes)."""
    response = web.StreamResponse()
    response.content_type = "application/json"
    await response.prepare(request)
    await asyncio.Event().wait()
    return response


async def empty(request: web.Request) -> web.StreamResponse:
    """A kind with no objects: an empty list, then a watch that stays open and silent."""
    if is_watch(request):
        return await hang(request)
    return web.json_response(list_body([], "10"))


class RecordingMetrics:
    """A WatchMetrics that remembers every call."""

    def __init__(self) -> None:
        self.restarts: list[str] = []
        self.relists: list[str] = []

    def watch_restart(self, *, kind: str) -> None:
        self.restarts.append(kind)

    def relist(self, *, kind: str) -> None:
        self.relists.append(kind)


class RecordingSleep:
    """Records backoff delays and returns at once (the loop does not really wait)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


# Fast but realistic: long server timeouts unless a test shrinks them.
FAST = WatchTiming(
    server_timeout_seconds=60,
    server_timeout_jitter_seconds=5,
    inactivity_slack_seconds=30,
    connect_timeout_seconds=2,
    list_timeout_seconds=5,
)


class Harness:
    """run_watches against a loopback API stand-in; `stop()` cancels and checks it ended so."""

    def __init__(self, url: str, *, scopes: tuple[WatchScope, ...] = (WatchScope(),)) -> None:
        self.api = ApiClient(Configuration(host=url))
        self.cache = Cache(scopes)
        self.metrics = RecordingMetrics()
        self.sleep = RecordingSleep()
        self.task: asyncio.Task[None] | None = None

    def start(self, timing: WatchTiming = FAST, *, seed: int = 1) -> None:
        self.task = asyncio.create_task(
            run_watches(
                self.api,
                self.cache,
                metrics=self.metrics,
                timing=timing,
                rng=random.Random(seed),
                sleep=self.sleep,
            )
        )

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait for `predicate`; fail at once if the watch task ended first."""

        def holds() -> bool:
            if predicate():
                return True
            assert self.task is None or not self.task.done(), self.task
            return False

        await eventually(holds, timeout=within, interval=0.005)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            assert self.task.cancelled()  # CancelledError is never swallowed
        await self.api.close()


async def start(
    aiohttp_server: ServerFactory,
    harnesses: list[Harness],
    services: Handler,
    slices: Handler = empty,
    *,
    scopes: tuple[WatchScope, ...] = (WatchScope(),),
    timing: WatchTiming = FAST,
) -> Harness:
    """A Harness watching a loopback API stand-in that answers with `services` and `slices`;
    added to `harnesses` (the fixture stops them)."""
    server = await aiohttp_server(api_app(services, slices))
    harness = Harness(str(server.make_url("")).rstrip("/"), scopes=scopes)
    harnesses.append(harness)
    harness.start(timing)
    return harness


def watch_events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The fields of the watch loop's log records with `event` = `name`."""
    return [
        r.__dict__
        for r in caplog.records
        if r.name == "kubeferry.controller.watch" and r.__dict__.get("event") == name
    ]
