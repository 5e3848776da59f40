"""Enrolment by annotation and routing by host and path, end to end: real API server, real
EndpointSlices from the real EndpointSlice controller, real backends in stand-in pods."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio import client

from controller.app import ControllerOptions
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import annotate, create_service, enrolled, get, served_by
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def test_enrol_and_unenrol_by_editing_annotations(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(kube_api, ns, "web", app="web")
    controller = await start_controller(ControllerOptions("ingress", namespaces=(ns,)))
    port = controller.ports[0]

    assert (await get(http, port, host="web.test"))[0] == 404  # not enrolled: no route

    await annotate(kube_api, ns, "web", enrolled("web.test"))

    async def routed() -> None:
        assert await get(http, port, host="web.test") == (200, "web-a")

    await eventually(routed)

    await annotate(kube_api, ns, "web", {"kubeferry.io/enabled": "false"})

    async def gone() -> None:
        assert (await get(http, port, host="web.test"))[0] == 404

    await eventually(gone)
    assert "upstreams" in repr(controller.plane)


async def test_routes_by_host_and_longest_path_prefix(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    for app in ("shop", "api", "blog"):
        await stand_in_pods.create(ns, f"{app}-0", {"app": app})
    await create_service(kube_api, ns, "shop", app="shop", annotations=enrolled("shop.test"))
    await create_service(
        kube_api,
        ns,
        "api",
        app="api",
        annotations=enrolled("shop.test", **{"kubeferry.io/path-prefix": "/api"}),
    )
    await create_service(kube_api, ns, "blog", app="blog", annotations=enrolled("blog.test"))
    controller = await start_controller(ControllerOptions("ingress", namespaces=(ns,)))
    port = controller.ports[0]

    async def all_routed() -> None:
        assert await served_by(http, port, "/", host="shop.test", requests=3) == {"shop-0": 3}
        assert await served_by(http, port, "/api/v1/x", host="shop.test", requests=3) == {
            "api-0": 3
        }
        # Path-segment boundaries: /apix is not under /api.
        assert await served_by(http, port, "/apix", host="shop.test", requests=3) == {"shop-0": 3}
        assert await served_by(http, port, "/api", host="SHOP.test", requests=3) == {"api-0": 3}
        assert await served_by(http, port, "/", host="blog.test", requests=3) == {"blog-0": 3}

    await eventually(all_routed)
    assert (await get(http, port, host="nobody.test"))[0] == 404
