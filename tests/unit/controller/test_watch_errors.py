"""Failures never clear the cache: the watch backs off with growing delays, rewatches from the
version it had, and resumes when the API server answers again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from controller.watch import WatchTiming
from tests.support.ports import free_port
from tests.unit.controller.canned_api import (
    FAST,
    Harness,
    ServerFactory,
    event,
    hang,
    is_watch,
    list_body,
    service,
    slice_info,
    start,
    stream,
    svc_info,
    watch_events,
)


async def test_watch_errors_back_off_growing_keep_the_cache_and_rewatch_from_the_same_version(
    aiohttp_server: ServerFactory, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    watches: list[str] = []
    healthy = asyncio.Event()

    async def services(request: web.Request) -> web.StreamResponse:
        if not is_watch(request):
            return web.json_response(list_body([service("shop", "web")], "10"))
        watches.append(request.query["resourceVersion"])
        if not healthy.is_set():
            return web.json_response({"kind": "Status", "code": 500}, status=500)
        return await stream(request, event("ADDED", service("shop", "api", "12")))

    harness = await start(aiohttp_server, harnesses, services)
    await harness.until(lambda: len(harness.sleep.delays) >= 8)

    assert set(watches) == {"10"}  # no relist for errors: same version every time
    assert harness.metrics.relists.count("Service") == 1
    caps = [min(30.0, 0.5 * 2**n) for n in range(8)]
    assert all(0 <= d <= cap for d, cap in zip(harness.sleep.delays, caps, strict=False))
    assert max(harness.sleep.delays[4:8]) > 0.5  # they grow (seeded: deterministic)
    assert set(harness.cache.services()) == {("shop", "web")}  # the last good state stays
    reasons = {r["reason"] for r in watch_events(caplog, "watch_restart")}
    assert reasons == {"http_500"}

    healthy.set()  # the API server is back: state resumes
    await harness.until(lambda: ("shop", "api") in harness.cache.services())
    assert harness.metrics.relists.count("Service") == 1


async def test_an_unreachable_api_server_leaves_the_cache_as_it_was(
    harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    harness = Harness(f"http://127.0.0.1:{free_port()}")
    harnesses.append(harness)
    harness.cache.replace_all("Service", [svc_info("shop", "web")])
    harness.cache.replace_all("EndpointSlice", [slice_info("shop", "web-a", "web", "10.244.0.1")])
    before = repr(harness.cache)
    harness.start()
    await harness.until(lambda: len(harness.sleep.delays) >= 10)

    assert repr(harness.cache) == before
    assert harness.metrics.relists == []
    assert len(harness.metrics.restarts) >= 10
    reasons = {r["reason"] for r in watch_events(caplog, "watch_restart")}
    assert reasons == {"connection"}


async def test_an_error_event_rewatches_after_a_backoff(
    aiohttp_server: ServerFactory, harnesses: list[Harness]
) -> None:
    watches: list[str] = []

    async def services(request: web.Request) -> web.StreamResponse:
        if not is_watch(request):
            return web.json_response(list_body([], "10"))
        watches.append(request.query["resourceVersion"])
        if len(watches) == 1:
            status = {"kind": "Status", "code": 500, "message": "internal error"}
            return await stream(
                request, event("ADDED", service("shop", "web", "11")), event("ERROR", status)
            )
        return await hang(request)

    harness = await start(aiohttp_server, harnesses, services)
    await harness.until(lambda: len(watches) == 2)
    assert watches == ["10", "11"]
    assert len(harness.sleep.delays) == 1
    assert harness.metrics.relists.count("Service") == 1


async def test_a_healthy_period_resets_the_backoff(
    aiohttp_server: ServerFactory, harnesses: list[Harness]
) -> None:
    """Failures, then a watch that streams longer than the reset period, then one more
    failure: its delay is drawn from the first cap again."""
    watches = 0

    async def services(request: web.Request) -> web.StreamResponse:
        nonlocal watches
        if not is_watch(request):
            return web.json_response(list_body([], "10"))
        watches += 1
        if watches <= 6 or watches == 8:
            return web.json_response({"code": 503}, status=503)
        if watches == 7:
            response = web.StreamResponse()
            await response.prepare(request)
            await asyncio.sleep(0.3)  # healthy for longer than backoff_reset_after_seconds
            raise ConnectionResetError  # then the connection drops
        return await hang(request)

    timing = WatchTiming(
        server_timeout_seconds=FAST.server_timeout_seconds,
        connect_timeout_seconds=2,
        backoff_initial_seconds=0.5,
        backoff_max_seconds=30,
        backoff_reset_after_seconds=0.2,
    )
    harness = await start(aiohttp_server, harnesses, services, timing=timing)
    await harness.until(lambda: watches == 9)
    delays = harness.sleep.delays
    assert len(delays) == 8
    # delay 7 follows the dropped healthy stream, delay 8 the 503 right after it
    assert delays[6] <= 0.5 and delays[7] <= 1.0


async def test_410s_in_a_row_back_off_after_the_first(
    aiohttp_server: ServerFactory, harnesses: list[Harness]
) -> None:
    lists = 0

    async def services(request: web.Request) -> web.StreamResponse:
        nonlocal lists
        if not is_watch(request):
            lists += 1
            return web.json_response(list_body([service("shop", "web")], str(lists)))
        return web.json_response({"kind": "Status", "code": 410}, status=410)

    harness = await start(aiohttp_server, harnesses, services)
    await harness.until(lambda: harness.metrics.relists.count("Service") >= 6)
    relisted, delays = harness.metrics.relists.count("Service"), list(harness.sleep.delays)
    # The first 410 relists at once; every further one in a row waits a growing backoff.
    assert len(delays) in (relisted - 2, relisted - 1)
    caps = [min(30.0, 0.5 * 2**n) for n in range(len(delays))]
    assert all(0 <= d <= c for d, c in zip(delays, caps, strict=True))
