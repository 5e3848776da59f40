"""The Gateway API watches through an API server outage: cut off, the controller keeps serving
its Gateways' last known routes and deletes nothing; on reconnect its Gateway API streams get
410 Gone (etcd compacted, API server restarted), relist, and the relist is the new truth: a
route deleted meanwhile stops being served and stops being counted, the Gateway's Service stays
the same object."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import Forwarder, compact_etcd, create_service, get
from tests.kube.controlplane import ControlPlane
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]

WATCH_LOGGER = "kubeferry.controller.watch"


@pytest.mark.timeout(240)
async def test_an_outage_keeps_the_gateways_and_a_relist_is_the_new_truth(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, WATCH_LOGGER)
    ns = kube_namespace
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(kube_api, ns, "web", app="web")
    await gw.create(kube_api, "Gateway", gw.gateway_manifest("gw", gateway_class), ns)
    for name in ("web", "old"):
        manifest = gw.route_manifest(
            name, "gw", {"name": "web", "port": 80}, hostnames=(f"{name}.test",)
        )
        await gw.create(kube_api, "HTTPRoute", manifest, ns)

    forwarder = await Forwarder(int(control_plane.server.rsplit(":", 1)[1])).start()
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(control_plane.kubeconfig), client_configuration=configuration
    )
    configuration.host = f"https://127.0.0.1:{forwarder.port}"
    cut_api = client.ApiClient(configuration)
    try:
        await start_controller(gw.gateway_options(ns), api=cut_api)

        async def attached(count: int) -> None:
            gateway = await gw.read(kube_api, "Gateway", "gw", ns)
            assert gw.summary(gateway.get("status"), "Programmed") == {
                "Programmed": ("True", "Programmed")
            }
            assert gateway["status"]["listeners"][0]["attachedRoutes"] == count

        await eventually(lambda: attached(2))
        service = await gw.owned_service(kube_api, ns, ns)
        assert service is not None
        port = int(service.spec.ports[0].target_port)

        async def both_routes() -> None:
            assert await get(http, port, host="web.test") == (200, "web-a")
            assert await get(http, port, host="old.test") == (200, "web-a")

        await eventually(both_routes)

        forwarder.cut()
        await gw.delete(kube_api, "HTTPRoute", "old", ns)
        await compact_etcd(control_plane.etcd_url)
        await asyncio.to_thread(control_plane.restart_apiserver)
        # Cut off: the last known routes are served, the deleted one included.
        assert await get(http, port, host="old.test") == (200, "web-a")
        forwarder.restore()

        async def relisted() -> None:
            assert (await get(http, port, host="old.test"))[0] == 404
            assert await get(http, port, host="web.test") == (200, "web-a")
            await attached(1)

        await eventually(relisted, timeout_seconds=60)
        gone = [
            r.__dict__
            for r in caplog.records
            if r.__dict__.get("event") == "watch_restart" and r.__dict__.get("reason") == "gone"
        ]
        assert {"Gateway", "HTTPRoute"} & {r["kind"] for r in gone}, "a 410 Gone was seen"
        after = await gw.owned_service(kube_api, ns, ns)
        assert after is not None and after.metadata.uid == service.metadata.uid
    finally:
        await forwarder.close()
        await cut_api.close()
