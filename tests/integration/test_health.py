"""The active health checker against real aiohttp backends on 127.0.0.1, with a real Pool.

Intervals are short and every wait is a bounded poll on a condition (`eventually`); the
assertions count probes and transitions, never elapsed time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from proxy.health import HealthChecker, ProbeObserver, StatusSink
from proxy.model import Endpoint, HealthSpec, UpstreamSpec
from proxy.pool import HealthTransition, Pool
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

FAST = HealthSpec(interval_seconds=0.1, timeout_seconds=1.0)


@dataclass
class Backend:
    """A health endpoint whose answers the test scripts; counts the probes it gets."""

    status: int = 200
    script: list[int] = field(default_factory=list)  # answered first, one per probe
    hang: bool = False
    hits: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    endpoint: Endpoint = field(init=False)  # set once the server is listening

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if self.hang:
            # Bounded: released at teardown so the server can shut down promptly.
            await asyncio.wait_for(self.release.wait(), timeout=10)
        status = self.script.pop(0) if self.script else self.status
        return web.Response(status=status, text="ok" if status < 400 else "not ok")


StartBackend = Callable[..., Awaitable[Backend]]


@pytest.fixture
async def start_backend(aiohttp_server: AiohttpServer) -> AsyncIterator[StartBackend]:
    started: list[Backend] = []

    async def start(**fields: object) -> Backend:
        backend = Backend(**fields)  # type: ignore[arg-type]
        app = web.Application()
        app.router.add_get("/{path:.*}", backend.handle)
        server = await aiohttp_server(app, host="127.0.0.1")
        assert server.port is not None
        backend.endpoint = Endpoint("127.0.0.1", server.port)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.release.set()


class Transitions:
    def __init__(self) -> None:
        self.events: list[HealthTransition] = []

    def __call__(self, transition: HealthTransition) -> None:
        self.events.append(transition)

    def of(self, endpoint: Endpoint) -> list[tuple[bool, str, str]]:
        return [(t.healthy, t.reason, t.source) for t in self.events if t.endpoint == endpoint]


@pytest.fixture
def transitions() -> Transitions:
    return Transitions()


@pytest.fixture
def pool(transitions: Transitions) -> Pool:
    return Pool(rng=random.Random(1), on_transition=transitions)


MakeChecker = Callable[..., HealthChecker]


@pytest.fixture
async def make_checker(start_backend: StartBackend, pool: Pool) -> AsyncIterator[MakeChecker]:
    # Depends on start_backend so checkers are closed before the backends go away.
    checkers: list[HealthChecker] = []

    def make(
        sink: StatusSink | None = None, on_probe: ProbeObserver | None = None
    ) -> HealthChecker:
        checker = HealthChecker(sink or pool, rng=random.Random(5), on_probe=on_probe)
        checkers.append(checker)
        return checker

    yield make
    for checker in checkers:
        await checker.close()


def install(pool: Pool, checker: HealthChecker, *specs: UpstreamSpec) -> None:
    """What the sync loop does: push the snapshot to the pool, then reconcile the probes."""
    for spec in specs:
        pool.replace(spec)
    checker.reconcile(pool.specs())


async def probed_backend(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> tuple[Backend, HealthChecker]:
    """One backend, installed as upstream `web` with FAST checks and probed by a new checker."""
    backend = await start_backend()
    checker = make_checker()
    install(pool, checker, UpstreamSpec("web", (backend.endpoint,), health=FAST))
    return backend, checker


async def more_hits(backend: Backend, count: int) -> None:
    target = len(backend.hits) + count
    await eventually(lambda: len(backend.hits) >= target, message=f"{count} more probes")


async def test_failing_backend_goes_down_and_comes_back(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool, transitions: Transitions
) -> None:
    backend, _ = await probed_backend(start_backend, make_checker, pool)
    await more_hits(backend, 2)
    assert pool.is_healthy("web", backend.endpoint)
    assert backend.hits[0] == "/healthz"

    backend.status = 503
    await eventually(lambda: not pool.is_healthy("web", backend.endpoint))
    backend.status = 200
    await eventually(lambda: pool.is_healthy("web", backend.endpoint))
    # Further passing probes repeat the verdict; the pool turns none of them into events.
    await more_hits(backend, 3)
    assert transitions.of(backend.endpoint) == [
        (False, "GET /healthz -> 503", "active"),
        (True, "GET /healthz -> 200", "active"),
    ]


async def test_expected_statuses_are_honoured(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool, transitions: Transitions
) -> None:
    teapot = await start_backend(status=418)
    plain = await start_backend(status=200)
    checker = make_checker()
    install(
        pool,
        checker,
        UpstreamSpec(
            "teapot",
            (teapot.endpoint,),
            health=HealthSpec(interval_seconds=0.1, expected_statuses=((200, 299), (418, 418))),
        ),
        UpstreamSpec(
            "strict",
            (plain.endpoint,),
            health=HealthSpec(interval_seconds=0.1, expected_statuses=((204, 204),)),
        ),
    )
    await eventually(lambda: not pool.is_healthy("strict", plain.endpoint))
    assert transitions.of(plain.endpoint) == [(False, "GET /healthz -> 200", "active")]
    await more_hits(teapot, 3)
    assert pool.is_healthy("teapot", teapot.endpoint)
    assert transitions.of(teapot.endpoint) == []


async def test_thresholds_two_up_three_down(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> None:
    backend = await start_backend(script=[500, 500, 200, 500, 500, 500, 200, 200])
    # Probe number at which each transition happened: exact, since the next probe is only
    # sent an interval after the verdict of the previous one.
    marks: list[tuple[bool, int]] = []
    pool.on_transition = lambda t: marks.append((t.healthy, len(backend.hits)))
    checker = make_checker()
    spec = HealthSpec(interval_seconds=0.05, healthy_threshold=2, unhealthy_threshold=3)
    install(pool, checker, UpstreamSpec("web", (backend.endpoint,), health=spec))
    await eventually(lambda: len(marks) == 2)
    # Two failures are not enough (probe 3 passes); the third in a row (probe 6) is. One pass
    # is not enough to return (probe 7); the second in a row (probe 8) is.
    assert marks == [(False, 6), (True, 8)]
    await more_hits(backend, 2)
    assert len(marks) == 2


async def test_hanging_backend_times_out_without_delaying_the_others(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool, transitions: Transitions
) -> None:
    slow = await start_backend(hang=True)
    fast = [await start_backend(), await start_backend()]
    checker = make_checker()
    spec = HealthSpec(interval_seconds=0.1, timeout_seconds=0.5)
    endpoints = (slow.endpoint, *(b.endpoint for b in fast))
    install(pool, checker, UpstreamSpec("web", endpoints, health=spec))

    await eventually(lambda: len(slow.hits) >= 1)
    during = [len(b.hits) for b in fast]
    await eventually(lambda: not pool.is_healthy("web", slow.endpoint))
    # While the slow probe waited for its timeout, the fast backends kept being probed.
    assert all(len(b.hits) - before >= 2 for b, before in zip(fast, during, strict=True))
    assert transitions.of(slow.endpoint) == [(False, "timeout after 0.5s", "active")]
    assert all(pool.is_healthy("web", b.endpoint) for b in fast)


async def test_removed_endpoint_stops_being_probed(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> None:
    kept, dropped = await start_backend(), await start_backend()
    checker = make_checker()
    install(pool, checker, UpstreamSpec("web", (kept.endpoint, dropped.endpoint), health=FAST))
    await more_hits(dropped, 1)

    install(pool, checker, UpstreamSpec("web", (kept.endpoint,), health=FAST))
    assert set(checker.targets()) == {("web", kept.endpoint.key)}
    await more_hits(kept, 1)  # a probe to `dropped` in flight at reconcile has landed by now
    settled = len(dropped.hits)
    await more_hits(kept, 3)
    assert len(dropped.hits) == settled


async def test_disabled_health_checks_do_not_probe(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> None:
    checked, unchecked = await start_backend(), await start_backend()
    checker = make_checker()
    install(
        pool,
        checker,
        UpstreamSpec("on", (checked.endpoint,), health=FAST),
        UpstreamSpec("off", (unchecked.endpoint,), health=HealthSpec(enabled=False)),
    )
    await more_hits(checked, 3)
    assert unchecked.hits == []


async def test_changed_health_spec_restarts_the_probe(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> None:
    backend, checker = await probed_backend(start_backend, make_checker, pool)
    await more_hits(backend, 1)
    ready = HealthSpec(path="/ready", interval_seconds=0.1)
    install(pool, checker, UpstreamSpec("web", (backend.endpoint,), health=ready))
    await eventually(lambda: backend.hits.count("/ready") >= 2)
    assert [t.health for t in checker.targets().values()] == [ready]


async def test_connection_refused(
    make_checker: MakeChecker, pool: Pool, transitions: Transitions
) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = Endpoint("127.0.0.1", port)
    checker = make_checker()
    install(pool, checker, UpstreamSpec("web", (closed,), health=FAST))
    await eventually(lambda: not pool.is_healthy("web", closed))
    assert transitions.of(closed) == [(False, "connect refused", "active")]


async def test_passive_failure_is_undone_by_the_next_passing_probe(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool, transitions: Transitions
) -> None:
    backend, _ = await probed_backend(start_backend, make_checker, pool)
    await more_hits(backend, 1)
    pool.report_failure("web", backend.endpoint, "connection reset")
    await eventually(lambda: pool.is_healthy("web", backend.endpoint))
    assert transitions.of(backend.endpoint) == [
        (False, "connection reset", "passive"),
        (True, "GET /healthz -> 200", "active"),
    ]


async def test_observer_sees_every_probe(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> None:
    backend = await start_backend(script=[200, 500])
    seen: list[tuple[str, str, bool, float]] = []
    checker = make_checker(on_probe=lambda u, e, ok, seconds: seen.append((u, e.key, ok, seconds)))
    install(pool, checker, UpstreamSpec("web", (backend.endpoint,), health=FAST))
    await eventually(lambda: len(seen) >= 3)
    assert [(u, key, ok) for u, key, ok, _ in seen[:3]] == [
        ("web", backend.endpoint.key, True),
        ("web", backend.endpoint.key, False),
        ("web", backend.endpoint.key, True),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


class BrokenSink:
    def __init__(self) -> None:
        self.calls = 0

    def report(self, upstream: str, endpoint: Endpoint, *, healthy: bool, reason: str) -> None:
        self.calls += 1
        raise RuntimeError("sink bug")


async def test_a_failing_sink_is_logged_and_probing_goes_on(
    start_backend: StartBackend, make_checker: MakeChecker, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await start_backend()
    sink = BrokenSink()
    checker = make_checker(sink=sink)
    checker.reconcile({"web": UpstreamSpec("web", (backend.endpoint,), health=FAST)})
    with caplog.at_level(logging.ERROR, logger="kubeferry.health"):
        await eventually(lambda: sink.calls >= 3)
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events and set(events) == {"health_probe_error"}
    assert caplog.records[0].endpoint == backend.endpoint.key  # type: ignore[attr-defined]


async def test_close_stops_all_probes(
    start_backend: StartBackend, make_checker: MakeChecker, pool: Pool
) -> None:
    backend, checker = await probed_backend(start_backend, make_checker, pool)
    await more_hits(backend, 1)
    await checker.close()
    assert repr(checker) == "<HealthChecker 0 probes, 0 stopping>"
    with pytest.raises(RuntimeError, match="closed"):
        checker.reconcile(pool.specs())
    await checker.close()  # idempotent
