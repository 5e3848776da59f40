"""A Gateway and an HTTPRoute end to end against the real API server (the v1.6.3
standard-channel CRDs): accepted and programmed with the address of the Service the controller
owns for the Gateway, requests on the data plane's internal port for the Gateway's listener
reach a stand-in pod, and the Service goes when the Gateway does."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service, get
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def test_gateway_and_route_are_accepted_programmed_and_serve_a_pod(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every log line of the Gateway path is made (a bad `extra` key raises only then).
    caplog.set_level(logging.DEBUG, "kubeferry.controller")
    ns = kube_namespace
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(kube_api, ns, "web", app="web")
    await gw.create(kube_api, "Gateway", gw.gateway_manifest("gw", gateway_class), ns)
    await gw.create(
        kube_api, "HTTPRoute", gw.route_manifest("web", "gw", {"name": "web", "port": 80}), ns
    )
    controller = await start_controller(gw.gateway_options(ns))

    async def class_accepted() -> None:
        got = await gw.read(kube_api, "GatewayClass", gateway_class)
        assert gw.summary(got.get("status"), "Accepted") == {"Accepted": ("True", "Accepted")}
        assert gw.condition(got["status"], "Accepted")["observedGeneration"] == 1
        features = [f["name"] for f in got["status"].get("supportedFeatures") or ()]
        assert "HTTPRoute" in features and features == sorted(features)

    await eventually(class_accepted)

    async def gateway_programmed() -> dict[str, Any]:
        got = await gw.read(kube_api, "Gateway", "gw", ns)
        status = got.get("status") or {}
        assert gw.summary(status, "Accepted", "Programmed") == {
            "Accepted": ("True", "Accepted"),
            "Programmed": ("True", "Programmed"),
        }
        [listener] = status["listeners"]
        assert listener["name"] == "http" and listener["attachedRoutes"] == 1
        assert gw.summary(listener, "Accepted", "Programmed", "ResolvedRefs") == {
            "Accepted": ("True", "Accepted"),
            "Programmed": ("True", "Programmed"),
            "ResolvedRefs": ("True", "ResolvedRefs"),
        }
        return got

    gateway = await eventually(gateway_programmed)
    service = await gw.owned_service(kube_api, ns, ns)
    assert service is not None and service.metadata.name.startswith("kf-gw-")
    assert gateway["status"]["addresses"] == [
        {"type": "IPAddress", "value": service.spec.cluster_ip}
    ]
    assert service.metadata.annotations["gateway.kubeferry.io/gateway"] == f"{ns}/gw"
    assert service.spec.selector == {"app.kubernetes.io/name": "kubeferry-test"}
    [port] = service.spec.ports
    assert (port.name, port.port) == ("gw-80", 80)
    assert 20000 <= int(port.target_port) <= 29999

    async def route_accepted() -> None:
        got = await gw.read(kube_api, "HTTPRoute", "web", ns)
        parent = gw.our_parent(got)
        assert parent["parentRef"]["name"] == "gw"
        assert gw.summary(parent, "Accepted", "ResolvedRefs") == {
            "Accepted": ("True", "Accepted"),
            "ResolvedRefs": ("True", "ResolvedRefs"),
        }

    await eventually(route_accepted)

    # The Service's targetPort is the data plane's socket for (gw, 80): a request there with
    # the route's host reaches the pod; another host finds no route.
    async def served() -> None:
        assert await get(http, int(port.target_port), host="web.test") == (200, "web-a")

    await eventually(served)
    assert (await get(http, int(port.target_port), host="other.test"))[0] == 404
    assert (await get(http, controller.ports[0], host="web.test"))[0] == 404  # not annotated

    # The Gateway goes: its Service goes with it.
    await gw.delete(kube_api, "Gateway", "gw", ns)

    async def service_deleted() -> None:
        assert await gw.owned_service(kube_api, ns, ns) is None

    await eventually(service_deleted)
    logged = {getattr(r, "event", "") for r in caplog.records}
    assert {"gateway_service", "gateway_status"} <= logged
