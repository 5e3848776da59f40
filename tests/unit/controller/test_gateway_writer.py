"""GatewayWriter against fakes of the data plane and the two API clients (no sockets): the
order of its calls, what it skips, what it leaves to the next sync, retries with backoff, and
the per-object write budget that stops two disagreeing writers from ping-ponging."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from controller.gateway.services import ServiceChange
from controller.gateway.status_writer import StatusWrite
from controller.gateway_sync import GatewayDesired
from controller.gateway_writer import GatewayWriter
from proxy.listeners import ListenerReport, ListenerSpec
from proxy.routing import RouteTable


class ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.reason = "fake"


class FakeApi:
    """Records every call; answers with the next scripted error, if any, per method."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.errors: dict[str, list[int]] = {}

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        script = self.errors.get(method)
        if script:
            raise ApiError(script.pop(0))

    async def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        self._call("status", args[2], args[4], args[5])

    async def patch_cluster_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        self._call("status", "", args[3], args[4])

    async def create_namespaced_service(self, namespace: str, body: Any) -> None:
        self._call("create", body["metadata"]["name"])


class FakePlane:
    def __init__(self) -> None:
        self.calls: list[tuple[ListenerSpec, ...]] = []

    async def set_listeners(self, specs: Sequence[ListenerSpec]) -> ListenerReport:
        self.calls.append(tuple(specs))
        return ListenerReport(bound={spec.name: spec.port for spec in specs})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(name: str, rv: str, value: str = "x") -> StatusWrite:
    # A fresh lastTransitionTime each time, as a writer flipping a condition stamps it.
    condition = {"type": "Accepted", "status": value, "lastTransitionTime": f"t{rv}"}
    return StatusWrite("HTTPRoute", "ns", name, rv, {"parents": [{"conditions": [condition]}]})


def writer(
    api: FakeApi, plane: FakePlane, clock: Clock, bound: list[frozenset[int]]
) -> GatewayWriter:
    return GatewayWriter(
        None,
        listeners=plane,
        service_namespace="kf",
        on_applied=lambda specs, report: bound.append(report.ports),
        clock=clock,
        budget_writes=3,
        budget_seconds=30,
        core=api,
        custom=api,
    )


async def test_listeners_then_services_then_statuses_and_nothing_twice() -> None:
    api, plane, clock, bound = FakeApi(), FakePlane(), Clock(), []
    gw = writer(api, plane, clock, bound)
    spec = ListenerSpec("gateway/ns/gw/80", 20001, RouteTable())
    desired = GatewayDesired(
        listeners=(spec,),
        statuses=(status("web", "5"),),
        services=(ServiceChange("create", "kf-gw-1", {"metadata": {"name": "kf-gw-1"}}),),
    )
    assert await gw.apply(desired) == []
    assert plane.calls == [(spec,)] and bound == [frozenset({20001})]
    assert [c[0] for c in api.calls] == ["create", "status"]
    assert api.calls[1][1] == (
        "ns",
        "web",
        {"metadata": {"resourceVersion": "5"}, "status": status("web", "5").patch},
    )
    # The same again (the watch has not brought the objects back yet): listeners equal, the
    # status already sent from that resourceVersion; the Service create is idempotent.
    assert await gw.apply(desired) == []
    assert len(plane.calls) == 1
    assert [c[0] for c in api.calls] == ["create", "status", "create"]
    assert gw.writes == 1


async def test_conflicts_and_gone_objects_are_left_to_the_next_sync_other_errors_fail() -> None:
    api, plane, clock, bound = FakeApi(), FakePlane(), Clock(), []
    gw = writer(api, plane, clock, bound)
    api.errors["status"] = [409, 404, 403]
    desired = GatewayDesired(statuses=(status("a", "1"), status("b", "1"), status("c", "1")))
    failed = await gw.apply(desired)
    assert failed == ["status of HTTPRoute ns/c: HTTP 403 fake"]
    assert gw.writes == 0


async def test_the_write_budget_holds_back_an_object_that_keeps_coming_back() -> None:
    api, plane, clock, bound = FakeApi(), FakePlane(), Clock(), []
    gw = writer(api, plane, clock, bound)
    for rv in ("1", "2", "3"):  # another writer changes it back each time
        assert await gw.apply(GatewayDesired(statuses=(status("web", rv),))) == []
    [held] = await gw.apply(GatewayDesired(statuses=(status("web", "4"),)))
    assert "held back" in held
    assert gw.writes == 3
    # A different status of it (a real change) and other objects are not held back.
    assert await gw.apply(GatewayDesired(statuses=(status("web", "4", "y"),))) == []
    assert await gw.apply(GatewayDesired(statuses=(status("other", "1"),))) == []
    clock.now += 31
    assert await gw.apply(GatewayDesired(statuses=(status("web", "5"),))) == []
    assert gw.writes == 6


async def test_run_retries_failures_with_backoff_until_they_pass() -> None:
    api, plane, clock, bound = FakeApi(), FakePlane(), Clock(), []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    gw = GatewayWriter(
        None,
        listeners=plane,
        service_namespace="kf",
        on_applied=lambda specs, report: bound.append(report.ports),
        sleep=sleep,
        clock=clock,
        core=api,
        custom=api,
    )
    api.errors["status"] = [500, 500]
    gw.want(GatewayDesired(statuses=(status("web", "1"),)))
    task = asyncio.create_task(gw.run())
    try:
        for _ in range(100):
            if gw.writes:
                break
            await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gw.writes == 1
    assert len(slept) == 2  # two failures, two backoffs
    assert [c[0] for c in api.calls] == ["status", "status", "status"]


async def test_listeners_do_not_wait_behind_an_api_backoff() -> None:
    api, plane, clock, bound = FakeApi(), FakePlane(), Clock(), []
    released = asyncio.Event()
    sleeping = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeping.set()
        await released.wait()  # a long backoff: the API lane is stuck in it

    gw = GatewayWriter(
        None,
        listeners=plane,
        service_namespace="kf",
        on_applied=lambda specs, report: bound.append(report.ports),
        sleep=sleep,
        clock=clock,
        core=api,
        custom=api,
    )
    api.errors["status"] = [500]
    gw.want(GatewayDesired(statuses=(status("web", "1"),)))
    task = asyncio.create_task(gw.run())
    try:
        await asyncio.wait_for(sleeping.wait(), 5)
        spec = ListenerSpec("gateway/ns/gw/80", 20001, RouteTable())
        gw.want(GatewayDesired(listeners=(spec,), statuses=(status("web", "1"),)))
        for _ in range(100):
            if plane.calls[-1:] == [(spec,)]:
                break
            await asyncio.sleep(0)
        assert plane.calls == [(), (spec,)]  # the first desired had none
        assert gw.writes == 0  # the API lane is still backing off
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
