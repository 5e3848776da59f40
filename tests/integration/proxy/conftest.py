"""Fixtures: real backends and a real proxy (the `kubeferry proxy` code path) on loopback.

`start_proxy(backends, **settings)` builds settings with load_settings (as the CLI does), the
standalone upstream with cli.standalone_upstream, and runs DataPlane.serve() in this event
loop with the proxy on an ephemeral port. Fixtures are factories with a cleanup list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from proxy.app import DataPlane, Listener
from proxy.cli import standalone_upstream
from proxy.routing import Router, RouteTable
from proxy.settings import load_settings
from tests.support.backends import Backend
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


@dataclass
class RunningProxy:
    plane: DataPlane
    task: asyncio.Task[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.plane.ports[0]}"

    @property
    def port(self) -> int:
        return self.plane.ports[0]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.plane.admin_port}"

    async def stop(self) -> int:
        self.plane.stop()
        return await asyncio.wait_for(self.task, 30)


# Quiet defaults for tests: probes slow enough not to interfere unless a test wants them.
DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "admin_host": "127.0.0.1",
    "health": {"interval_seconds": 30.0},
    "timeouts": {"drain_seconds": 5.0, "connect_seconds": 1.0},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


StartBackends = Callable[[int], Awaitable[list[Backend]]]
StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def start_backends() -> AsyncIterator[StartBackends]:
    started: list[Backend] = []

    async def start(count: int) -> list[Backend]:
        backends = [Backend(f"backend-{len(started) + i}") for i in range(1, count + 1)]
        for backend in backends:
            await backend.start()
            started.append(backend)
        return backends

    yield start
    for backend in started:
        await backend.stop()


@pytest.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    running: list[RunningProxy] = []

    async def start(backends: Sequence[Backend], **settings: Any) -> RunningProxy:
        overrides = _merge(DEFAULTS, settings)
        overrides.setdefault("admin_port", free_port())
        overrides["backends"] = tuple(b.url for b in backends)
        loaded = load_settings(overrides=overrides)
        plane = DataPlane(
            loaded, listeners=[Listener("127.0.0.1", 0, Router(RouteTable.single("default")))]
        )
        plane.apply({"default": standalone_upstream(loaded)})
        task = asyncio.create_task(plane.serve())
        while not plane.ports:
            if task.done():
                task.result()  # raise the startup failure
            await asyncio.sleep(0.01)
        proxy = RunningProxy(plane, task)
        running.append(proxy)
        return proxy

    yield start
    for proxy in running:
        if not proxy.task.done():
            await proxy.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client: no cookies kept, no decompression, fresh connections each time is not
    required, so keep-alive stays on like a real client."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    ) as session:
        yield session
