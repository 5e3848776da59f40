"""The binaries are what they claim; the control plane survives an apiserver restart."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client

from tests.kube.controlplane import ControlPlane, pinned_versions, version_of
from tests.kube.manifests import body
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


def test_binaries_report_their_real_version(control_plane: ControlPlane) -> None:
    pinned = pinned_versions()
    kubernetes, etcd = pinned["KUBERNETES_VERSION"], pinned["ETCD_VERSION"]
    assets = control_plane.assets
    assert version_of(assets / "kube-apiserver") == f"Kubernetes {kubernetes}"
    assert version_of(assets / "kube-controller-manager") == f"Kubernetes {kubernetes}"
    assert version_of(assets / "etcd") == f"etcd Version: {etcd.removeprefix('v')}"
    assert control_plane.version()["gitVersion"] == kubernetes


async def slice_conditions(api: client.ApiClient, namespace: str, service: str) -> dict[str, bool]:
    slices = await client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return {
        address: bool(endpoint.conditions.ready)
        for endpoint_slice in slices.items
        for endpoint in endpoint_slice.endpoints or []
        for address in endpoint.addresses
    }


@pytest.mark.timeout(240)
async def test_restart_apiserver_leaves_the_fixture_usable(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
) -> None:
    core = client.CoreV1Api(kube_api)
    service = {"selector": {"app": "steady"}, "ports": [{"port": 80, "targetPort": 8080}]}
    await core.create_namespaced_service(
        kube_namespace, body({"metadata": {"name": "steady"}, "spec": service})
    )
    first = await stand_in_pods.create(kube_namespace, "steady-0", {"app": "steady"})

    async def first_ready() -> None:
        assert await slice_conditions(kube_api, kube_namespace, "steady") == {first.ip: True}

    await eventually(first_ready)
    before = await core.read_namespaced_service("steady", kube_namespace)

    await asyncio.to_thread(control_plane.restart_apiserver)

    # The same client goes on working, and the data comes back unchanged from etcd.
    after = await core.read_namespaced_service("steady", kube_namespace)
    assert (after.metadata.uid, after.metadata.resource_version) == (
        before.metadata.uid,
        before.metadata.resource_version,
    )
    # The controllers work again: a change made after the restart reaches the existing Service's
    # slice, and so does a new pod.
    await stand_in_pods.set_ready(first, False)
    second = await stand_in_pods.create(kube_namespace, "steady-1", {"app": "steady"})

    async def both_seen() -> None:
        assert await slice_conditions(kube_api, kube_namespace, "steady") == {
            first.ip: False,
            second.ip: True,
        }

    await eventually(both_seen, timeout_seconds=60)
