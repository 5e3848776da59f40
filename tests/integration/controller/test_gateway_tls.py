"""An HTTPS Gateway listener against the real API server: its certificate comes from the
kubernetes.io/tls Secret its certificateRefs name (a test CA's leaf), served by SNI on the
data plane's internal socket for the listener, to a stand-in pod; a rotated Secret reaches
the next handshake without a restart; a Secret in another namespace is refused without a
ReferenceGrant (RefNotPermitted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service
from tests.integration.controller.tls_support import handshake_serial, put_secret, tls_secret
from tests.integration.proxy.tls_client import TlsConnection
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually
from tests.support.tls_certs import TestCA

pytestmark = [pytest.mark.kube, pytest.mark.integration]


def https_listener(name: str, hostname: str, *refs: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "HTTPS",
        "port": 443,
        "hostname": hostname,
        "tls": {"mode": "Terminate", "certificateRefs": list(refs)},
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }


async def test_https_listener_serves_its_secret_by_sni_and_follows_rotation(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    tmp_path: Path,
) -> None:
    ns = kube_namespace
    other = f"{ns}-certs"
    core = client.CoreV1Api(kube_api)
    ca = TestCA()
    ca_file = ca.write(tmp_path)
    first = ca.issue("secure.test")
    await core.create_namespaced_secret(ns, tls_secret("gw-tls", first.chain_pem, first.key_pem))
    await core.create_namespace({"metadata": {"name": other}})
    try:
        far = ca.issue("far.test")
        await core.create_namespaced_secret(
            other, tls_secret("far-tls", far.chain_pem, far.key_pem)
        )
        await stand_in_pods.create(ns, "web-a", {"app": "web"})
        await create_service(kube_api, ns, "web", app="web")
        manifest = gw.gateway_manifest(
            "gw",
            gateway_class,
            https_listener("secure", "secure.test", {"name": "gw-tls"}),
            https_listener("far", "far.test", {"name": "far-tls", "namespace": other}),
        )
        await gw.create(kube_api, "Gateway", manifest, ns)
        await gw.create(
            kube_api,
            "HTTPRoute",
            gw.route_manifest(
                "web", "gw", {"name": "web", "port": 80}, hostnames=("secure.test", "far.test")
            ),
            ns,
        )
        await start_controller(gw.gateway_options(ns))

        async def listeners() -> dict[str, dict[str, Any]]:
            got = await gw.read(kube_api, "Gateway", "gw", ns)
            by_name = {
                item["name"]: item for item in (got.get("status") or {}).get("listeners") or ()
            }
            assert gw.summary(by_name.get("secure"), "ResolvedRefs", "Programmed") == {
                "ResolvedRefs": ("True", "ResolvedRefs"),
                "Programmed": ("True", "Programmed"),
            }
            assert gw.summary(by_name.get("far"), "ResolvedRefs") == {
                "ResolvedRefs": ("False", "RefNotPermitted")
            }
            return by_name

        await eventually(listeners)
        service = await gw.owned_service(kube_api, ns, ns)
        assert service is not None
        [port] = service.spec.ports
        assert (port.name, port.port) == ("gw-443", 443)
        internal = int(port.target_port)

        assert await handshake_serial(internal, "secure.test", ca_file) == first.serial
        connection = await TlsConnection.open(internal, "secure.test", ca_file)
        try:
            status, _, answer = await connection.get("/", "secure.test")
            assert (status, answer) == (200, b"web-a")
        finally:
            await connection.close()

        # Rotation: the next handshake gets the new certificate, no restart.
        second = ca.issue("secure.test")
        await put_secret(kube_api, ns, "gw-tls", second)

        async def rotated() -> None:
            assert await handshake_serial(internal, "secure.test", ca_file) == second.serial

        await eventually(rotated)
    finally:
        await core.delete_namespace(other)
