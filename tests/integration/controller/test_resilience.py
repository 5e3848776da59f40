"""The API server goes away and comes back: the proxy keeps serving the last known endpoints,
no request fails, and the watch resumes (relisting cleanly when its version expired)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from controller.app import ControllerOptions
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import (
    Forwarder,
    Traffic,
    compact_etcd,
    create_service,
    enrolled,
    get,
    ingress_over_pods,
    served_by,
    serving,
)
from tests.kube.controlplane import ControlPlane
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]

WATCH_LOGGER = "kubeferry.controller.watch"


def watch_records(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [
        r.__dict__
        for r in caplog.records
        if r.name == WATCH_LOGGER and r.__dict__.get("event") == event
    ]


@pytest.mark.timeout(240)
async def test_restarting_the_api_server_mid_traffic_fails_no_request_and_state_resumes(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, WATCH_LOGGER)
    ns = kube_namespace
    controller, _ = await ingress_over_pods(
        kube_api, ns, stand_in_pods, start_controller, names=("web-a", "web-b"), host="web.test"
    )
    port = controller.ports[0]
    await serving(http, port, {"web-a", "web-b"}, host="web.test")

    traffic = Traffic(http, port, host="web.test", max_seconds=180).start()
    await asyncio.to_thread(control_plane.restart_apiserver)
    await traffic.stop()

    assert traffic.failures == []
    assert set(traffic.ok) == {"web-a", "web-b"}
    assert watch_records(caplog, "watch_restart"), "the watches noticed the restart"

    # The watches resumed: a new pod reaches the pool.
    await stand_in_pods.create(ns, "web-c", {"app": "web"})
    await serving(http, port, {"web-a", "web-b", "web-c"}, host="web.test")


@pytest.mark.timeout(240)
async def test_an_expired_watch_relists_cleanly(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cut one controller off the API server (a TCP forwarder in between), change the cluster,
    compact etcd and restart the API server (its watch cache restarts at the new revision):
    the controller's resourceVersion is then history. On reconnect it gets 410 Gone, relists,
    and the relist replaces the cache whole: a Service deleted meanwhile disappears. While cut
    off it kept serving what it last knew."""
    caplog.set_level(logging.INFO, WATCH_LOGGER)
    ns = kube_namespace
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(kube_api, ns, "web", app="web", annotations=enrolled("web.test"))
    await create_service(kube_api, ns, "old", app="web", annotations=enrolled("old.test"))

    forwarder = await Forwarder(int(control_plane.server.rsplit(":", 1)[1])).start()
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(control_plane.kubeconfig), client_configuration=configuration
    )
    configuration.host = f"https://127.0.0.1:{forwarder.port}"
    cut_api = client.ApiClient(configuration)
    try:
        controller = await start_controller(
            ControllerOptions("ingress", namespaces=(ns,)), api=cut_api
        )
        port = controller.ports[0]

        async def both_routes() -> None:
            assert await get(http, port, host="web.test") == (200, "web-a")
            assert await get(http, port, host="old.test") == (200, "web-a")

        await eventually(both_routes)
        relists_before = len(watch_records(caplog, "relist"))

        forwarder.cut()
        await client.CoreV1Api(kube_api).delete_namespaced_service("old", ns)
        await stand_in_pods.create(ns, "web-b", {"app": "web"})
        await asyncio.sleep(1.0)  # let the EndpointSlice controller publish web-b
        await compact_etcd(control_plane.etcd_url)
        await asyncio.to_thread(control_plane.restart_apiserver)
        # Cut off, the proxy still serves the last known state, deleted Service included.
        assert await get(http, port, host="old.test") == (200, "web-a")
        forwarder.restore()

        async def relisted() -> None:
            assert (await get(http, port, host="old.test"))[0] == 404
            seen = await served_by(http, port, host="web.test", requests=8)
            assert set(seen) == {"web-a", "web-b"}

        await eventually(relisted)
        gone = [r for r in watch_records(caplog, "watch_restart") if r["reason"] == "gone"]
        assert gone, "a 410 Gone was seen"
        relists = watch_records(caplog, "relist")[relists_before:]
        assert {r["kind"] for r in relists} >= {r["kind"] for r in gone}
        assert repr(controller.cache) == "<Cache 1 services, 1 slices, synced>"
    finally:
        await forwarder.close()
        await cut_api.close()
