"""Endpoint changes reach the pool: scaling, readiness flips, a terminating pod draining, and
a backend killed mid-traffic (failover, no failed request)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from kubernetes_asyncio import client

from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import Traffic, ingress_over_pods, served_by, serving
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]

HOST = "web.test"


async def test_scale_up_and_down(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    controller, _ = await ingress_over_pods(
        kube_api, ns, stand_in_pods, start_controller, names=("web-a",), host=HOST
    )
    port = controller.ports[0]
    await serving(http, port, {"web-a"}, host=HOST)

    b = await stand_in_pods.create(ns, "web-b", {"app": "web"})
    c = await stand_in_pods.create(ns, "web-c", {"app": "web"})
    await serving(http, port, {"web-a", "web-b", "web-c"}, host=HOST)

    await stand_in_pods.delete(b)
    await stand_in_pods.delete(c)
    await serving(http, port, {"web-a"}, host=HOST)

    async def one_endpoint() -> None:  # gone from the slices, not only failing health checks
        spec = controller.plane.pool.spec(f"{ns}/web")
        assert spec is not None and len(spec.endpoints) == 1

    await eventually(one_endpoint)


async def test_readiness_flips_take_endpoints_out_and_back(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    controller, pods = await ingress_over_pods(
        kube_api, ns, stand_in_pods, start_controller, names=("web-a", "web-b"), host=HOST
    )
    port = controller.ports[0]
    await serving(http, port, {"web-a", "web-b"}, host=HOST)
    b = pods["web-b"]

    await stand_in_pods.set_ready(b, False)
    await serving(http, port, {"web-a"}, host=HOST)
    await stand_in_pods.set_ready(b, True)
    await serving(http, port, {"web-a", "web-b"}, host=HOST)


async def test_a_terminating_endpoint_drains(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    """A terminating pod (serving, not ready) gets no new traffic while a ready one exists,
    and takes it again only when it is the last one serving."""
    ns = kube_namespace
    controller, pods = await ingress_over_pods(
        kube_api, ns, stand_in_pods, start_controller, names=("web-a", "web-b"), host=HOST
    )
    port = controller.ports[0]
    await serving(http, port, {"web-a", "web-b"}, host=HOST)

    await stand_in_pods.terminate(pods["web-a"])

    async def drained() -> None:
        spec = controller.plane.pool.spec(f"{ns}/web")
        assert spec is not None
        by_host = {e.host: e for e in spec.endpoints}
        assert not by_host[pods["web-a"].ip].ready  # still listed: serving, terminating
        assert by_host[pods["web-b"].ip].ready
        assert set(await served_by(http, port, host=HOST, requests=8)) == {"web-b"}

    await eventually(drained)

    await stand_in_pods.set_ready(pods["web-b"], False)  # nothing ready left
    await serving(http, port, {"web-a"}, host=HOST)


@pytest.mark.timeout(180)
async def test_killing_a_backend_mid_traffic_fails_no_request(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    controller, pods = await ingress_over_pods(
        kube_api, ns, stand_in_pods, start_controller, names=("web-a", "web-b"), host=HOST
    )
    port = controller.ports[0]
    await serving(http, port, {"web-a", "web-b"}, host=HOST)

    traffic = Traffic(http, port, host=HOST, max_seconds=30).start()
    await asyncio.sleep(0.5)
    await stand_in_pods.kill_backend(pods["web-a"])  # the Pod stays Ready in the API
    before = traffic.ok["web-b"]
    await asyncio.sleep(2.0)
    await traffic.stop()

    assert traffic.failures == []
    assert traffic.ok["web-a"] > 0 and traffic.ok["web-b"] > before
    # The health checker took it out of rotation, though Kubernetes still calls it ready.
    spec = controller.plane.pool.spec(f"{ns}/web")
    assert spec is not None
    dead = next(e for e in spec.endpoints if e.host == pods["web-a"].ip)

    async def ejected() -> None:
        assert not controller.plane.pool.is_healthy(f"{ns}/web", dead)

    await eventually(ejected)
