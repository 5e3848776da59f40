"""Helpers for the Gateway API tests against the real API server: the v1.6.3 standard-channel
CRDs from the gateway-api module (`hack/gateway-api.sh crds`, never copied into git),
installed or removed on the session's control plane, and Gateway API objects made, read and
changed as plain dicts."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from controller.app import ControllerOptions, GatewayOptions
from tests.kube.pods import REPO_ROOT
from tests.kube.wait import eventually

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
CONTROLLER_NAME = "kubeferry.io/gateway-controller"
PLURALS = {
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
    "ReferenceGrant": "referencegrants",
}
# The kinds the controller watches: waiting for these to be served is enough.
WATCHED_CRDS = tuple(f"{plural}.{GROUP}" for plural in PLURALS.values())


def crd_directory() -> Path:
    """The module's config/crd/standard (downloaded into the Go module cache if needed)."""
    done = subprocess.run(
        [str(REPO_ROOT / "hack" / "gateway-api.sh"), "crds"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, f"hack/gateway-api.sh crds failed: {done.stderr}"
    return Path(done.stdout.strip())


def crd_manifests() -> list[dict[str, Any]]:
    """Every CustomResourceDefinition of the standard channel (the ValidatingAdmissionPolicy
    beside them guards upgrades between channels, which these tests do not do)."""
    manifests = []
    for path in sorted(crd_directory().glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                manifests.append(doc)
    assert {m["metadata"]["name"] for m in manifests} >= set(WATCHED_CRDS)
    return manifests


async def install_crds(api: client.ApiClient) -> None:
    """Create the CRDs unless present, and wait until the watched kinds are served."""
    extensions = client.ApiextensionsV1Api(api)
    for manifest in crd_manifests():
        try:
            await extensions.create_custom_resource_definition(manifest)
        except ApiException as error:
            if error.status != 409:
                raise

    async def served() -> None:
        for name in WATCHED_CRDS:
            crd = await extensions.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in crd.status.conditions or ()}
            assert conditions.get("Established") == "True", f"{name}: {conditions}"
        for plural in PLURALS.values():
            try:
                await client.CustomObjectsApi(api).list_cluster_custom_object(
                    GROUP, VERSION, plural
                )
            except ApiException as error:
                # 404 before the API server serves it, 429 while its storage initializes.
                raise AssertionError(f"{plural}: {error.status} {error.reason}") from error

    await eventually(served, timeout_seconds=60)


async def remove_crds(api: client.ApiClient) -> None:
    """Delete the Gateway API CRDs (and so every object of their kinds); wait until the API
    server no longer serves them."""
    extensions = client.ApiextensionsV1Api(api)
    crds = await extensions.list_custom_resource_definition()
    for crd in crds.items:
        if crd.spec.group == GROUP:
            try:
                await extensions.delete_custom_resource_definition(crd.metadata.name)
            except ApiException as error:
                if error.status != 404:
                    raise

    async def gone() -> None:
        for plural in PLURALS.values():
            try:
                await client.CustomObjectsApi(api).list_cluster_custom_object(
                    GROUP, VERSION, plural
                )
            except ApiException as error:
                assert error.status == 404
            else:
                raise AssertionError(f"{plural} still served")

    await eventually(gone, timeout_seconds=60)


def gateway_options(
    namespace: str, *watched: str, port_range: tuple[int, int] = (20000, 29999)
) -> ControllerOptions:
    """An ingress controller watching `namespace` (and `watched`) with Gateway API on, its
    Gateway Services in `namespace`."""
    gateway = GatewayOptions(
        controller_name=CONTROLLER_NAME,
        service_namespace=namespace,
        service_selector=(("app.kubernetes.io/name", "kubeferry-test"),),
        port_range=port_range,
    )
    return ControllerOptions("ingress", namespaces=(namespace, *watched), gateway=gateway)


async def create(
    api: client.ApiClient, kind: str, manifest: Mapping[str, Any], namespace: str = ""
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **manifest}
    plural = PLURALS[kind]
    if namespace:
        made = await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    else:
        made = await custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
    assert isinstance(made, dict)
    return made


async def read(api: client.ApiClient, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    plural = PLURALS[kind]
    if namespace:
        got = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    else:
        got = await custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
    assert isinstance(got, dict)
    return got


async def patch(
    api: client.ApiClient, kind: str, name: str, body: Mapping[str, Any], namespace: str = ""
) -> None:
    """A merge patch of the object (its spec, say; never its status)."""
    custom = client.CustomObjectsApi(api)
    plural = PLURALS[kind]
    merge = "application/merge-patch+json"
    if namespace:
        await custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, dict(body), _content_type=merge
        )
    else:
        await custom.patch_cluster_custom_object(
            GROUP, VERSION, plural, name, dict(body), _content_type=merge
        )


async def delete(api: client.ApiClient, kind: str, name: str, namespace: str = "") -> None:
    custom = client.CustomObjectsApi(api)
    plural = PLURALS[kind]
    if namespace:
        await custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    else:
        await custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)


def condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition `type_` of a status (or of a listener or parent entry); {} if none."""
    for item in (status or {}).get("conditions") or ():
        if item.get("type") == type_:
            return dict(item)
    return {}


def summary(status: Mapping[str, Any] | None, *types: str) -> dict[str, tuple[str, str]]:
    """{type: (status, reason)} of the named conditions: what a test compares."""
    found = {t: condition(status, t) for t in types}
    return {t: (c.get("status", ""), c.get("reason", "")) for t, c in found.items()}


async def settle(seconds: float = 1.0) -> None:
    """Let a controller that has nothing to do prove it: used only before asserting that
    something did not happen (a resourceVersion that stays), never as a wait for an event."""
    await asyncio.sleep(seconds)


def gateway_manifest(name: str, class_name: str, *listeners: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": list(listeners)
            or [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": 80,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }


def route_manifest(
    name: str,
    gateway: str,
    *backends: dict[str, Any],
    hostnames: tuple[str, ...] = ("web.test",),
    gateway_namespace: str | None = None,
) -> dict[str, Any]:
    parent: dict[str, Any] = {"name": gateway}
    if gateway_namespace is not None:
        parent["namespace"] = gateway_namespace
    return {
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [parent],
            "hostnames": list(hostnames),
            "rules": [{"backendRefs": list(backends)}],
        },
    }


def our_parent(route: Mapping[str, Any]) -> dict[str, Any]:
    """The HTTPRoute's status.parents entry of our controller ({} while there is none)."""
    for parent in (route.get("status") or {}).get("parents") or ():
        if parent.get("controllerName") == CONTROLLER_NAME:
            return dict(parent)
    return {}


async def owned_service(api: client.ApiClient, namespace: str, gateway_namespace: str) -> Any:
    """The one Service the controller owns for Gateways of `gateway_namespace` (None: none)."""
    services = await client.CoreV1Api(api).list_namespaced_service(
        namespace, label_selector=f"gateway.kubeferry.io/namespace={gateway_namespace}"
    )
    assert len(services.items) <= 1, [s.metadata.name for s in services.items]
    return services.items[0] if services.items else None
