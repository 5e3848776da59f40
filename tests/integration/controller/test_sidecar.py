"""Sidecar mode end to end: one named Service on its own loopback port, whatever its
annotations say, and nothing else watched."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio import client

from controller.app import ControllerOptions, SidecarUpstream
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import (
    create_service,
    enrolled,
    get,
    served_by,
    serving,
)
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def test_sidecar_serves_its_named_service_on_its_own_port(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    for name in ("orders-a", "orders-b"):
        await stand_in_pods.create(ns, name, {"app": "orders"})
    await stand_in_pods.create(ns, "other-a", {"app": "other"})
    await create_service(kube_api, ns, "orders", app="orders")  # no enabled annotation
    await create_service(kube_api, ns, "other", app="other", annotations=enrolled("x.test"))
    controller = await start_controller(
        ControllerOptions("sidecar", upstreams=(SidecarUpstream(ns, "orders", 0),))
    )
    port = controller.ports[0]

    await serving(http, port, {"orders-a", "orders-b"}, path="/any/path")
    # Only its own Service is listed and watched (field and label selectors).
    assert repr(controller.cache).startswith("<Cache 1 services,")
    assert set(controller.plane.pool.names()) == {f"{ns}/orders"}

    b = await stand_in_pods.create(ns, "orders-c", {"app": "orders"})

    async def scaled() -> None:
        assert "orders-c" in await served_by(http, port, requests=12)

    await eventually(scaled)
    await stand_in_pods.delete(b)
    status, _ = await get(http, port)
    assert status == 200
