"""Two kubeferry replicas serve the same Gateway against the real API server, as the chart
deploys them (two pods, one Service per Gateway): each binds the Gateway's internal port (on
its own loopback address here, as on its own pod IP in a cluster), both compute the same
statuses and the same Service, so they converge: one Service, statuses written once and left
alone, no ping-pong. A listener added and removed patches the Service's ports in place."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service, get
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually
from tests.support.ports import free_port

pytestmark = [pytest.mark.kube, pytest.mark.integration]


def http_listener(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "HTTP",
        "port": port,
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }


@pytest.mark.timeout(120)
async def test_two_replicas_converge_and_listener_changes_patch_the_service(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(kube_api, ns, "web", app="web")
    manifest = gw.gateway_manifest("gw", gateway_class, http_listener("http", 80))
    await gw.create(kube_api, "Gateway", manifest, ns)
    await gw.create(
        kube_api, "HTTPRoute", gw.route_manifest("web", "gw", {"name": "web", "port": 80}), ns
    )
    replicas = [
        await start_controller(gw.gateway_options(ns), settings={"host": host, "port": free_port()})
        for host in ("127.0.0.1", "127.0.0.2")
    ]

    async def converged() -> tuple[dict[str, Any], int]:
        got = await gw.read(kube_api, "Gateway", "gw", ns)
        assert gw.summary(got.get("status"), "Programmed") == {"Programmed": ("True", "Programmed")}
        service = await gw.owned_service(kube_api, ns, ns)  # exactly one, or none yet
        assert service is not None
        for replica in replicas:
            assert replica.gateway is not None and replica.gateway.pending == 0
        return got, int(service.spec.ports[0].target_port)

    gateway, port = await eventually(converged)
    # Both replicas serve the Gateway's internal port, each on its own address.
    for host in ("127.0.0.1", "127.0.0.2"):
        async with http.get(f"http://{host}:{port}/", headers={"Host": "web.test"}) as answer:
            assert (answer.status, await answer.text()) == (200, "web-a")
    writes = [replica.gateway_writes for replica in replicas]
    await gw.settle(2.0)
    again = await gw.read(kube_api, "Gateway", "gw", ns)
    assert again["metadata"]["resourceVersion"] == gateway["metadata"]["resourceVersion"], (
        gateway.get("status"),
        again.get("status"),
        writes,
        [replica.gateway_writes for replica in replicas],
    )
    assert [replica.gateway_writes for replica in replicas] == writes

    # A second listener: the one Service gets a second port, in place.
    uid = (await gw.owned_service(kube_api, ns, ns)).metadata.uid
    both = [http_listener("http", 80), http_listener("alt", 8080)]
    await gw.patch(kube_api, "Gateway", "gw", {"spec": {"listeners": both}}, ns)

    async def two_ports() -> int:
        service = await gw.owned_service(kube_api, ns, ns)
        assert service is not None and service.metadata.uid == uid
        ports = {p.name: (p.port, int(p.target_port)) for p in service.spec.ports}
        assert set(ports) == {"gw-80", "gw-8080"}
        assert ports["gw-80"][1] == port  # the older port keeps its socket
        return ports["gw-8080"][1]

    alt = await eventually(two_ports)

    async def served_on_alt() -> None:
        assert await get(http, alt, host="web.test") == (200, "web-a")

    await eventually(served_on_alt)

    # Back to one listener: the port goes from the Service, the socket from the data plane.
    await gw.patch(kube_api, "Gateway", "gw", {"spec": {"listeners": both[:1]}}, ns)

    async def one_port() -> None:
        service = await gw.owned_service(kube_api, ns, ns)
        assert service is not None and service.metadata.uid == uid
        assert [p.name for p in service.spec.ports] == ["gw-80"]
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, alt, host="web.test")

    await eventually(one_port)
