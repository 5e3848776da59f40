"""The list+watch loop against canned list and watch responses from a loopback server:
resourceVersion tracking through events and bookmarks, 410 relists, the inactivity timeout,
selectors of a sidecar scope and list pagination."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from aiohttp import web

from controller.cache import WatchScope
from controller.watch import WatchTiming
from tests.unit.controller.canned_api import (
    FAST,
    Harness,
    ServerFactory,
    bookmark,
    endpoint_slice,
    event,
    gone_event,
    gone_status,
    hang,
    is_watch,
    list_body,
    service,
    start,
    stream,
    watch_events,
)


async def test_lists_then_watches_from_the_list_version_and_follows_bookmarks(
    aiohttp_server: ServerFactory, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    watches: list[dict[str, str]] = []

    async def services(request: web.Request) -> web.StreamResponse:
        if not is_watch(request):
            return web.json_response(list_body([service("shop", "web", "9")], "10"))
        watches.append(dict(request.query))
        if len(watches) == 1:
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(event("ADDED", service("shop", "api", "11")))
            await response.write(bookmark("15"))
            await asyncio.sleep(0.3)  # then the server's timeoutSeconds runs out
            await response.write_eof()
            return response
        return await hang(request)

    # A watch that streamed longer than this ended normally (not "early").
    timing = dataclasses.replace(FAST, backoff_reset_after_seconds=0.2)
    harness = await start(aiohttp_server, harnesses, services, timing=timing)
    await harness.until(lambda: len(watches) == 2)

    assert repr(harness.cache) == "<Cache 2 services, 0 slices, synced>"
    first, second = watches
    assert first["resourceVersion"] == "10"
    assert first["allowWatchBookmarks"] in ("true", "True")
    assert 55 <= int(first["timeoutSeconds"]) <= 65
    assert second["resourceVersion"] == "15"  # the bookmark moved it past the last event
    assert sorted(harness.metrics.relists) == ["EndpointSlice", "Service"]
    assert harness.metrics.restarts == ["Service"]  # the server ended watch 1
    assert harness.sleep.delays == []  # a server timeout is no failure
    restart = watch_events(caplog, "watch_restart")[0]
    assert (restart["kind"], restart["reason"]) == ("Service", "server_timeout")
    starts = [r["resource_version"] for r in watch_events(caplog, "watch_start")]
    assert "10" in starts and "15" in starts


async def test_410_status_relists_and_the_list_replaces_the_cache_whole(
    aiohttp_server: ServerFactory, harnesses: list[Harness]
) -> None:
    lists = 0
    watches: list[str] = []
    seen_during_relist: list[str] = []

    async def services(request: web.Request) -> web.StreamResponse:
        nonlocal lists
        if not is_watch(request):
            lists += 1
            if lists == 1:
                return web.json_response(
                    list_body([service("shop", "web"), service("shop", "old")], "10")
                )
            # Nothing is cleared before the new list arrives.
            seen_during_relist.append(repr(harness.cache))
            return web.json_response(list_body([service("shop", "web", "20")], "20"))
        watches.append(request.query["resourceVersion"])
        if len(watches) == 1:
            return gone_status()
        return await hang(request)

    harness = await start(aiohttp_server, harnesses, services)
    await harness.until(lambda: len(watches) == 2)

    assert watches == ["10", "20"]
    assert seen_during_relist == ["<Cache 2 services, 0 slices, synced>"]
    assert set(harness.cache.services()) == {("shop", "web")}  # "old" vanished meanwhile
    assert harness.metrics.relists.count("Service") == 2
    assert harness.metrics.restarts == ["Service"]
    assert harness.sleep.delays == []  # the first 410 relists at once


async def test_410_error_event_in_the_stream_relists(
    aiohttp_server: ServerFactory, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    lists = 0
    watches: list[str] = []

    async def slices(request: web.Request) -> web.StreamResponse:
        nonlocal lists
        if not is_watch(request):
            lists += 1
            items = [endpoint_slice("shop", "web-a", "web", "10.244.0.1")] if lists == 1 else []
            return web.json_response(list_body(items, str(10 * lists)))
        watches.append(request.query["resourceVersion"])
        if len(watches) == 1:
            new = endpoint_slice("shop", "web-b", "web", "10.244.0.2", rv="11")
            return await stream(request, event("ADDED", new), gone_event())
        return await hang(request)

    async def services(request: web.Request) -> web.StreamResponse:
        if is_watch(request):
            return await hang(request)
        return web.json_response(list_body([service("shop", "web")], "10"))

    harness = await start(aiohttp_server, harnesses, services, slices)
    await harness.until(lambda: len(watches) == 2)

    assert watches == ["10", "20"]
    assert harness.cache.slices_for("shop", "web") == ()
    assert harness.metrics.relists.count("EndpointSlice") == 2
    restart = watch_events(caplog, "watch_restart")[0]
    assert (restart["kind"], restart["reason"]) == ("EndpointSlice", "gone")
    assert restart["relist"]
    relists = [r for r in watch_events(caplog, "relist") if r["kind"] == "EndpointSlice"]
    assert [r["count"] for r in relists] == [1, 0]


async def test_a_silent_watch_times_out_and_rewatches_from_the_same_version(
    aiohttp_server: ServerFactory, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    watches: list[str] = []

    async def services(request: web.Request) -> web.StreamResponse:
        if not is_watch(request):
            return web.json_response(list_body([], "10"))
        watches.append(request.query["resourceVersion"])
        if len(watches) == 1:
            # One event, then silence on a connection that stays open.
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(event("ADDED", service("shop", "web", "11")))
            await asyncio.Event().wait()
            return response
        return await hang(request)

    timing = WatchTiming(
        server_timeout_seconds=1,
        server_timeout_jitter_seconds=0,
        inactivity_slack_seconds=0.3,
        connect_timeout_seconds=2,
    )
    harness = await start(aiohttp_server, harnesses, services, timing=timing)
    await harness.until(lambda: len(watches) == 2)

    assert watches == ["10", "11"]
    assert harness.metrics.relists.count("Service") == 1  # no relist for a stalled connection
    # (the slices watch hangs too: it times out the same way)
    restart = next(r for r in watch_events(caplog, "watch_restart") if r["kind"] == "Service")
    assert (restart["reason"], restart["relist"]) == ("inactivity", False)
    assert set(harness.cache.services()) == {("shop", "web")}


async def test_a_sidecar_scope_lists_and_watches_only_its_service(
    aiohttp_server: ServerFactory, harnesses: list[Harness]
) -> None:
    requests: list[tuple[str, dict[str, str]]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        requests.append((request.path, dict(request.query)))
        if is_watch(request):
            return await hang(request)
        return web.json_response(list_body([], "10"))

    harness = await start(
        aiohttp_server, harnesses, record, record, scopes=(WatchScope("shop", "web"),)
    )
    await harness.until(lambda: len(requests) == 4)

    by_path: dict[str, list[dict[str, str]]] = {}
    for path, query in requests:
        by_path.setdefault(path, []).append(query)
    services = by_path["/api/v1/namespaces/shop/services"]
    slices = by_path["/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"]
    assert len(services) == len(slices) == 2
    assert all(q["fieldSelector"] == "metadata.name=web" for q in services)
    assert all(q["labelSelector"] == "kubernetes.io/service-name=web" for q in slices)
    assert harness.cache.synced


async def test_a_list_follows_continue_tokens_and_applies_all_pages_at_once(
    aiohttp_server: ServerFactory, harnesses: list[Harness]
) -> None:
    pages: list[dict[str, str]] = []

    async def services(request: web.Request) -> web.StreamResponse:
        if is_watch(request):
            return await hang(request)
        pages.append(dict(request.query))
        if "continue" not in request.query:
            return web.json_response(list_body([service("shop", "a")], "10", cont="page-2"))
        return web.json_response(list_body([service("shop", "b")], "10"))

    harness = await start(aiohttp_server, harnesses, services)
    await harness.until(lambda: harness.cache.synced)

    assert [p.get("continue") for p in pages] == [None, "page-2"]
    assert all(p["limit"] == str(FAST.list_page_size) for p in pages)
    assert set(harness.cache.services()) == {("shop", "a"), ("shop", "b")}


async def test_a_server_that_ends_every_watch_at_once_is_backed_off(
    aiohttp_server: ServerFactory, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    watches: list[str] = []

    async def services(request: web.Request) -> web.StreamResponse:
        if not is_watch(request):
            return web.json_response(list_body([], "10"))
        watches.append(request.query["resourceVersion"])
        return await stream(request)  # 200, then EOF at once

    harness = await start(aiohttp_server, harnesses, services)
    await harness.until(lambda: len(harness.sleep.delays) >= 5)
    assert set(watches) == {"10"}
    restarts = [r for r in watch_events(caplog, "watch_restart") if r["kind"] == "Service"]
    assert {r["reason"] for r in restarts} == {"ended_early"}
    # Every early end waits a backoff drawn from a growing cap: no hot loop.
    delays = [r["delay_seconds"] for r in restarts[:5]]
    assert all(0 <= d <= min(30.0, 0.5 * 2**n) for n, d in enumerate(delays))
