"""Gateway API statuses written by the controller against the real API server (the v1.6.3
standard-channel CRDs): HTTPRoute ResolvedRefs with the reasons of invalid backend references
(BackendNotFound, RefNotPermitted) and their repair (the Service made, a ReferenceGrant),
observedGeneration following the spec, and no write at all while nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.integration.controller import gateway_support as gw
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service
from tests.kube.manifests import body
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def test_invalid_backend_references_and_their_repair(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    start_controller: StartController,
) -> None:
    ns = kube_namespace
    other = f"{ns}-b"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(body({"metadata": {"name": other}}))
    try:
        await gw.create(kube_api, "Gateway", gw.gateway_manifest("gw", gateway_class), ns)
        await gw.create(
            kube_api,
            "HTTPRoute",
            gw.route_manifest("missing", "gw", {"name": "nothere", "port": 80}),
            ns,
        )
        await gw.create(
            kube_api,
            "HTTPRoute",
            gw.route_manifest(
                "far",
                "gw",
                {"name": "far", "namespace": other, "port": 80},
                hostnames=("far.test",),
            ),
            ns,
        )
        await create_service(kube_api, other, "far", app="far")
        await start_controller(gw.gateway_options(ns, other))

        async def resolved(name: str, expected: tuple[str, str]) -> dict[str, Any]:
            got = await gw.read(kube_api, "HTTPRoute", name, ns)
            parent = gw.our_parent(got)
            assert gw.summary(parent, "Accepted", "ResolvedRefs") == {
                "Accepted": ("True", "Accepted"),
                "ResolvedRefs": expected,
            }
            return got

        async def refused() -> None:
            await resolved("missing", ("False", "BackendNotFound"))
            await resolved("far", ("False", "RefNotPermitted"))

        await eventually(refused)

        # The missing Service appears: resolved.
        await create_service(kube_api, ns, "nothere", app="nothere")

        async def found() -> None:
            await resolved("missing", ("True", "ResolvedRefs"))

        await eventually(found)

        # The other namespace grants HTTPRoutes of ours its Services: resolved.
        await gw.create(
            kube_api,
            "ReferenceGrant",
            {
                "metadata": {"name": "routes-of-a"},
                "spec": {
                    "from": [{"group": gw.GROUP, "kind": "HTTPRoute", "namespace": ns}],
                    "to": [{"group": "", "kind": "Service"}],
                },
            },
            other,
        )

        async def granted() -> None:
            await resolved("far", ("True", "ResolvedRefs"))

        await eventually(granted)
    finally:
        await core.delete_namespace(other)


async def test_observed_generation_follows_and_unchanged_status_is_not_rewritten(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    start_controller: StartController,
) -> None:
    ns = kube_namespace
    await create_service(kube_api, ns, "web", app="web")
    await gw.create(kube_api, "Gateway", gw.gateway_manifest("gw", gateway_class), ns)
    await gw.create(
        kube_api, "HTTPRoute", gw.route_manifest("web", "gw", {"name": "web", "port": 80}), ns
    )
    controller = await start_controller(gw.gateway_options(ns))

    async def route_at(generation: int) -> dict[str, Any]:
        got = await gw.read(kube_api, "HTTPRoute", "web", ns)
        assert got["metadata"]["generation"] == generation
        parent = gw.our_parent(got)
        for type_ in ("Accepted", "ResolvedRefs"):
            assert gw.condition(parent, type_).get("observedGeneration") == generation
        return got

    first = await eventually(lambda: route_at(1))

    async def settled() -> dict[str, Any]:
        got = await gw.read(kube_api, "Gateway", "gw", ns)
        assert got["status"]["listeners"][0]["attachedRoutes"] == 1
        assert gw.condition(got["status"], "Accepted").get("observedGeneration") == 1
        assert got["status"]["addresses"]
        # The controller's last sync found the cluster showing everything it wants.
        assert controller.gateway is not None and controller.gateway.pending == 0
        return got

    gateway = await eventually(settled)
    first = await route_at(1)

    # Nothing changes: nothing is written, however often the controller syncs.
    writes = controller.gateway_writes
    await gw.settle()
    controller.cache.changed.notify()  # wake the sync with nothing new
    await gw.settle()
    again = await gw.read(kube_api, "HTTPRoute", "web", ns)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    gateway_again = await gw.read(kube_api, "Gateway", "gw", ns)
    assert gateway_again["metadata"]["resourceVersion"] == gateway["metadata"]["resourceVersion"]
    assert controller.gateway_writes == writes

    # A spec change bumps the generation; the conditions follow it, and a condition whose
    # status and reason stay keeps its lastTransitionTime.
    since = gw.condition(gw.our_parent(first), "Accepted")["lastTransitionTime"]
    await gw.patch(kube_api, "HTTPRoute", "web", {"spec": {"hostnames": ["web2.test"]}}, ns)
    second = await eventually(lambda: route_at(2))
    assert gw.condition(gw.our_parent(second), "Accepted")["lastTransitionTime"] == since


async def test_allowed_routes_selector_follows_namespace_labels(
    kube_api: client.ApiClient,
    kube_namespace: str,
    gateway_class: str,
    start_controller: StartController,
) -> None:
    ns = kube_namespace
    apps = f"{ns}-apps"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(body({"metadata": {"name": apps}}))
    try:
        listener = {
            "name": "http",
            "protocol": "HTTP",
            "port": 80,
            "allowedRoutes": {
                "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "edge"}}}
            },
        }
        await gw.create(kube_api, "Gateway", gw.gateway_manifest("gw", gateway_class, listener), ns)
        await create_service(kube_api, apps, "web", app="web")
        await gw.create(
            kube_api,
            "HTTPRoute",
            gw.route_manifest("web", "gw", {"name": "web", "port": 80}, gateway_namespace=ns),
            apps,
        )
        await start_controller(gw.gateway_options(ns, apps))

        async def accepted(expected: tuple[str, str], attached: int) -> None:
            route = await gw.read(kube_api, "HTTPRoute", "web", apps)
            assert gw.summary(gw.our_parent(route), "Accepted") == {"Accepted": expected}
            gateway = await gw.read(kube_api, "Gateway", "gw", ns)
            assert gateway["status"]["listeners"][0]["attachedRoutes"] == attached

        await eventually(lambda: accepted(("False", "NotAllowedByListeners"), 0))

        # The Namespace gets the label: the route attaches, with no change to the route.
        await core.patch_namespace(apps, body({"metadata": {"labels": {"team": "edge"}}}))
        await eventually(lambda: accepted(("True", "Accepted"), 1))
    finally:
        await core.delete_namespace(apps)
