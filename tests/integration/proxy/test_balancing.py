"""Distribution, passive failover, recovery, and the proxy's own error answers."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import aiohttp

from proxy.settings import parse_backend
from tests.integration.proxy.conftest import StartBackends, StartProxy
from tests.support.waiting import eventually

LOAD_REQUESTS = 300
CONCURRENCY = 10


async def _get_text(client: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with client.get(url) as response:
        return response.status, await response.text()


async def test_round_robin_spreads_evenly_over_three_backends(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(3)
    proxy = await start_proxy(backends)

    answers = Counter()
    for _ in range(30):
        status, body = await _get_text(client, proxy.url + "/")
        assert status == 200
        answers[body] += 1

    assert answers == {b.name: 10 for b in backends}


async def test_killing_a_backend_mid_traffic_loses_no_get(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(3)
    victim = backends[1]
    proxy = await start_proxy(backends)
    statuses: Counter[int] = Counter()
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < LOAD_REQUESTS:
            sent += 1
            if sent == LOAD_REQUESTS // 3:
                await victim.stop()
            status, _ = await _get_text(client, proxy.url + "/")
            statuses[status] += 1

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    assert statuses == {200: LOAD_REQUESTS}
    endpoint = next(e for e in proxy.plane.pool.spec("default").endpoints if e.port == victim.port)
    assert not proxy.plane.pool.is_healthy("default", endpoint)


async def test_failed_backend_leaves_rotation_before_the_next_active_check(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(3)
    # Active checks far apart: only the passive report can take the backend out.
    proxy = await start_proxy(backends, health={"interval_seconds": 300.0})
    await backends[0].stop()

    for _ in range(6):
        status, body = await _get_text(client, proxy.url + "/")
        assert status == 200
        assert body != backends[0].name

    async with client.get(proxy.admin_url + "/backends") as response:
        described = await response.json()
    health = {e["address"]: e["healthy"] for e in described[0]["endpoints"]}
    assert health == {
        f"127.0.0.1:{backends[0].port}": False,
        f"127.0.0.1:{backends[1].port}": True,
        f"127.0.0.1:{backends[2].port}": True,
    }


async def test_backend_rejoins_after_it_recovers(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(2)
    proxy = await start_proxy(backends, health={"interval_seconds": 0.1, "timeout_seconds": 0.5})
    await backends[0].stop()
    for _ in range(4):
        assert (await _get_text(client, proxy.url + "/"))[0] == 200
    before = backends[0].requests

    await backends[0].start()  # same port

    async def served_again() -> bool:
        await _get_text(client, proxy.url + "/")
        return backends[0].requests > before

    await eventually(served_again, timeout=10)


async def test_post_is_retried_elsewhere_when_nothing_reached_the_backend(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(2)
    proxy = await start_proxy(backends)
    await backends[0].stop()
    big = b"z" * 200_000  # over replay_body_bytes: streamed, still safe (nothing was read)

    for body in (b"small", big):
        for _ in range(2):
            async with client.post(proxy.url + "/upload", data=body) as response:
                assert response.status == 200
                assert (await response.json())["bytes"] == len(body)


async def test_post_is_not_replayed_after_the_connection_broke(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(2)
    proxy = await start_proxy(backends)

    async with client.post(proxy.url + "/drop", data=b"once") as response:
        assert response.status == 502
    assert sum(b.requests for b in backends) == 1


async def test_get_is_replayed_after_the_connection_broke(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(3)
    proxy = await start_proxy(backends, retries={"max_retries": 1})

    async with client.get(proxy.url + "/drop") as response:
        # Both attempts dropped; one healthy backend remains, so this is the upstream's fault.
        assert response.status == 502
    assert sum(b.requests for b in backends) == 2


async def test_no_healthy_backend_answers_503_with_the_documented_body(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(2)
    proxy = await start_proxy(backends, health={"interval_seconds": 0.05})
    for backend in backends:
        backend.healthy = False
    await eventually(lambda: not proxy.plane.pool.has_candidates("default"), timeout=10)

    status, body = await _get_text(client, proxy.url + "/")

    assert status == 503
    assert body == "No healthy backends available"


async def test_all_backends_dead_gives_503_not_a_hang(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(3)
    proxy = await start_proxy(backends)
    for backend in backends:
        await backend.stop()

    for _ in range(3):
        status, body = await _get_text(client, proxy.url + "/")
        assert (status, body) == (503, "No healthy backends available")


async def test_slow_upstream_gives_504_and_is_not_retried(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(2)
    proxy = await start_proxy(backends, timeouts={"upstream_idle_seconds": 0.2})

    status, _ = await _get_text(client, proxy.url + "/slow?seconds=3")

    assert status == 504
    assert sum(b.requests for b in backends) == 1


async def test_upstream_breaking_mid_body_aborts_the_client_connection(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    backends = await start_backends(1)
    proxy = await start_proxy(backends)

    async with client.get(proxy.url + "/break-mid") as response:
        assert response.status == 200
        try:
            await response.read()
        except aiohttp.ClientPayloadError:
            pass
        else:
            raise AssertionError("a truncated body must not look complete")


async def test_unmatched_route_is_404(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    from proxy.routing import Route, RouteTable

    backends = await start_backends(1)
    proxy = await start_proxy(backends)
    proxy.plane.listeners[0].router.replace(
        RouteTable.build([Route("default", path_prefix="/api")])
    )

    assert (await _get_text(client, proxy.url + "/other")) == (404, "No route")
    assert (await _get_text(client, proxy.url + "/api/x"))[0] == 200


async def test_a_request_in_flight_finishes_after_its_endpoint_leaves_the_pool(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    """A snapshot without the endpoint (scale-down, pod gone from the slices) takes it out of
    rotation at once, but the request it is already serving runs to completion."""
    backends = await start_backends(2)
    proxy = await start_proxy(backends[:1])
    slow = asyncio.create_task(_get_text(client, proxy.url + "/slow?seconds=0.5"))
    await eventually(lambda: backends[0].requests == 1)

    spec = proxy.plane.pool.spec("default")
    assert spec is not None
    moved = replace(spec, endpoints=(parse_backend(backends[1].url),))
    assert proxy.plane.apply({"default": moved})

    assert await slow == (200, backends[0].name)
    assert await _get_text(client, proxy.url + "/") == (200, backends[1].name)
    assert backends[0].requests == 1
