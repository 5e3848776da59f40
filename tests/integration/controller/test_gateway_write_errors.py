"""Failed Gateway API writes against the real API server: a ServiceAccount that may read the
Gateway API kinds and own the Gateway Services but not write `/status` gets 403s; the
controller logs them (gateway_write_failed), keeps serving the Gateway, retries with
backoff, and writes the statuses as soon as RBAC allows it, with no restart."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service, get
from tests.kube.manifests import body
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]

READ = ["get", "list", "watch"]


def binding(kind: str, name: str, namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "kubeferry", "namespace": namespace}],
    }


@pytest.mark.timeout(180)
async def test_status_writes_refused_are_logged_and_retried_until_allowed(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    sa_kubeconfig: Callable[[str, str], Awaitable[Path]],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller")
    ns = kube_namespace
    rbac = client.RbacAuthorizationV1Api(kube_api)
    cluster_role = f"kubeferry-{ns}"
    read_kinds = {
        "apiGroups": [gw.GROUP],
        "resources": ["gatewayclasses", "gateways", "httproutes", "referencegrants"],
        "verbs": READ,
    }
    namespaces = {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}
    await rbac.create_cluster_role(
        body({"metadata": {"name": cluster_role}, "rules": [read_kinds, namespaces]})
    )
    await rbac.create_cluster_role_binding(body(binding("ClusterRole", cluster_role, ns)))
    own = [
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": [*READ, "create", "patch", "delete"],
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": READ},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    await rbac.create_namespaced_role(ns, body({"metadata": {"name": "kubeferry"}, "rules": own}))
    await rbac.create_namespaced_role_binding(ns, body(binding("Role", "kubeferry", ns)))
    sa_api = await config.new_client_from_config(
        config_file=str(await sa_kubeconfig(ns, "kubeferry")), persist_config=False
    )
    try:
        await stand_in_pods.create(ns, "web-a", {"app": "web"})
        await create_service(kube_api, ns, "web", app="web")
        await gw.create(kube_api, "Gateway", gw.gateway_manifest("gw", gateway_class), ns)
        await gw.create(
            kube_api, "HTTPRoute", gw.route_manifest("web", "gw", {"name": "web", "port": 80}), ns
        )
        controller = await start_controller(gw.gateway_options(ns), api=sa_api)

        def refused() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if getattr(r, "event", "") == "gateway_write_failed" and "403" in r.getMessage()
            ]

        async def served_though_refused() -> None:
            assert len(refused()) >= 2, "refused and retried"
            service = await gw.owned_service(kube_api, ns, ns)
            assert service is not None
            port = int(service.spec.ports[0].target_port)
            assert await get(http, port, host="web.test") == (200, "web-a")

        await eventually(served_though_refused)
        route = await gw.read(kube_api, "HTTPRoute", "web", ns)
        assert gw.our_parent(route) == {}
        assert controller.gateway_writes == 0

        # RBAC allows /status now: the next retry writes every status.
        status = {
            "apiGroups": [gw.GROUP],
            "resources": ["gatewayclasses/status", "gateways/status", "httproutes/status"],
            "verbs": ["patch"],
        }
        await rbac.patch_cluster_role(
            cluster_role, body({"rules": [read_kinds, namespaces, status]})
        )

        async def written() -> None:
            route = await gw.read(kube_api, "HTTPRoute", "web", ns)
            assert gw.summary(gw.our_parent(route), "Accepted") == {
                "Accepted": ("True", "Accepted")
            }
            got = await gw.read(kube_api, "Gateway", "gw", ns)
            assert gw.summary(got.get("status"), "Programmed") == {
                "Programmed": ("True", "Programmed")
            }

        await eventually(written)
    finally:
        await sa_api.close()
        await rbac.delete_cluster_role_binding(cluster_role)
        await rbac.delete_cluster_role(cluster_role)
