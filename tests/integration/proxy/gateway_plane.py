"""A data plane run as the Gateway mode runs it: no static listener, upstreams named like the
controller names Services (`ns/name`), listeners set with `DataPlane.set_listeners`.

`start_gateway_plane(backends)` (a fixture factory: import the fixture into the test module)
returns a `GatewayPlane` whose `listen(*specs)` sets the listeners and returns the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from proxy.app import DataPlane
from proxy.listeners import ListenerReport, ListenerSpec
from proxy.model import Endpoint, HealthSpec, UpstreamSpec
from proxy.settings import load_settings
from tests.integration.proxy.conftest import DEFAULTS
from tests.support.backends import Backend


def upstream_of(backend: Backend) -> str:
    return f"ns/{backend.name}"


@dataclass
class GatewayPlane:
    plane: DataPlane
    task: asyncio.Task[int]

    async def listen(self, *specs: ListenerSpec) -> ListenerReport:
        return await self.plane.set_listeners(specs)

    async def stop(self) -> int:
        self.plane.stop()
        return await asyncio.wait_for(self.task, 30)


StartGatewayPlane = Callable[..., Awaitable[GatewayPlane]]


@pytest.fixture
async def start_gateway_plane() -> AsyncIterator[StartGatewayPlane]:
    running: list[GatewayPlane] = []

    async def start(
        backends: Sequence[Backend], *, before_start: Sequence[ListenerSpec] = (), **settings: Any
    ) -> GatewayPlane:
        loaded = load_settings(overrides={**DEFAULTS, "admin_port": 0, **settings})
        plane = DataPlane(loaded, listeners=[])
        plane.apply(
            {
                upstream_of(b): UpstreamSpec(
                    name=upstream_of(b),
                    endpoints=(Endpoint(b.host, b.port),),
                    health=HealthSpec(enabled=False),
                )
                for b in backends
            }
        )
        if before_start:
            await plane.set_listeners(before_start)
        task = asyncio.create_task(plane.serve())
        while not plane.readiness.reasons():
            if task.done():
                task.result()  # raise the startup failure
            await asyncio.sleep(0.01)
        running.append(GatewayPlane(plane, task))
        return running[-1]

    yield start
    for gateway in running:
        if not gateway.task.done():
            assert await gateway.stop() == 0
