"""The controller runs with a ServiceAccount holding exactly the permissions the docs list
(services, endpointslices, secrets: get/list/watch; events: create/patch) and nothing more,
TLS from a Secret included."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client, config

from controller.app import ControllerOptions
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service, enrolled, get
from tests.integration.controller.tls_support import handshake_serial, tls_secret
from tests.kube.manifests import body
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually
from tests.support.ports import free_port
from tests.support.tls_certs import TestCA

pytestmark = [pytest.mark.kube, pytest.mark.integration]

DOCS = Path(__file__).resolve().parents[3] / "docs" / "annotations.md"


def documented_rules() -> list[dict[str, Any]]:
    """The rules of the ClusterRole in the RBAC section of docs/annotations.md."""
    text = DOCS.read_text().split("## RBAC", 1)[1]
    manifest = yaml.safe_load(text.split("```yaml", 1)[1].split("```", 1)[0])
    rules: list[dict[str, Any]] = manifest["rules"]
    return rules


def test_the_documented_permissions_are_the_minimal_ones() -> None:
    granted = {
        (group, resource, verb)
        for rule in documented_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("", "services", "get"),
        ("", "services", "list"),
        ("", "services", "watch"),
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("discovery.k8s.io", "endpointslices", "get"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("", "events", "create"),
        ("", "events", "patch"),
    }


@pytest.mark.timeout(180)
async def test_the_controller_works_with_only_the_documented_permissions(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    sa_kubeconfig: Callable[[str, str], Awaitable[Path]],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller")
    ns = kube_namespace
    rbac = client.RbacAuthorizationV1Api(kube_api)
    await rbac.create_namespaced_role(
        ns, body({"metadata": {"name": "kubeferry"}, "rules": documented_rules()})
    )
    await rbac.create_namespaced_role_binding(
        ns,
        body(
            {
                "metadata": {"name": "kubeferry"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "kubeferry",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "kubeferry", "namespace": ns}],
            }
        ),
    )
    kubeconfig = await sa_kubeconfig(ns, "kubeferry")
    sa_api = await config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    try:
        # Least privilege for real: anything else is forbidden.
        with pytest.raises(client.ApiException) as denied:
            await client.CoreV1Api(sa_api).list_namespaced_pod(ns)
        assert denied.value.status == 403

        ca = TestCA()
        leaf = ca.issue("web.test")
        await client.CoreV1Api(kube_api).create_namespaced_secret(
            ns, tls_secret("web-tls", leaf.chain_pem, leaf.key_pem)
        )
        await stand_in_pods.create(ns, "web-a", {"app": "web"})
        await create_service(
            kube_api,
            ns,
            "web",
            app="web",
            annotations=enrolled("web.test", **{"kubeferry.io/tls-secret": "web-tls"}),
        )
        await create_service(
            kube_api,
            ns,
            "typo",
            app="web",
            annotations={**enrolled("typo.test"), "kubeferry.io/strategy": "fastest"},
        )
        controller = await start_controller(
            ControllerOptions("ingress", namespaces=(ns,)),
            api=sa_api,
            settings={"tls_port": free_port(), "tls": {"enabled": True}},
        )
        port, tls_port = controller.ports
        ca_file = ca.write(tmp_path)

        async def works() -> None:
            assert await get(http, port, host="web.test") == (200, "web-a")
            assert await handshake_serial(tls_port, "web.test", ca_file) == leaf.serial
            events = (await client.CoreV1Api(kube_api).list_namespaced_event(ns)).items
            assert any(
                e.involved_object.name == "typo" and e.reason == "InvalidAnnotation" for e in events
            )

        await eventually(works)
        failures = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.WARNING and "403" in r.getMessage()
        ]
        assert failures == []
    finally:
        await sa_api.close()
