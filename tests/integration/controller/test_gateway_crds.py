"""Gateway API watches against the real API server: without the CRDs the controller says so
once and serves annotated Services as usual; once they are installed, it lists them by
itself (backoff, no restart)."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from kubernetes_asyncio import client

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service, enrolled, serving
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def test_missing_crds_are_said_once_and_picked_up_when_installed(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "kubeferry.controller.watch")
    ns = kube_namespace
    await gw.remove_crds(kube_api)
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(kube_api, ns, "web", app="web", annotations=enrolled("web.test"))
    controller = await start_controller(gw.gateway_options(ns))

    # Annotated mode does not wait for the Gateway API.
    await serving(http, controller.ports[0], {"web-a"}, host="web.test")
    assert controller.plane.readiness.ready

    def missing_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", "") == "gateway_api_missing"]

    async def said() -> None:
        assert missing_lines()
        # The Gateway stream failed and retried at least twice by now, quietly after the first.
        restarts = [
            r
            for r in caplog.records
            if getattr(r, "event", "") == "watch_restart" and getattr(r, "kind", "") == "Gateway"
        ]
        assert len(restarts) >= 2

    await eventually(said)
    [line] = missing_lines()
    assert line.levelno == logging.WARNING
    assert "not installed" in line.getMessage()
    assert not controller.cache.gateway_listed

    await gw.install_crds(kube_api)
    await gw.create(
        kube_api,
        "GatewayClass",
        {"metadata": {"name": f"{ns}-class"}, "spec": {"controllerName": gw.CONTROLLER_NAME}},
    )

    async def listed() -> None:
        assert controller.cache.gateway_listed
        assert ("", f"{ns}-class") in controller.cache.gateway_objects("GatewayClass")

    await eventually(listed, timeout_seconds=40)
    assert [r for r in caplog.records if getattr(r, "event", "") == "gateway_api_found"]
    assert len(missing_lines()) == 1
    await gw.delete(kube_api, "GatewayClass", f"{ns}-class")
