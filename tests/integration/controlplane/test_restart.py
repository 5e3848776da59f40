"""The session's control plane survives a kube-apiserver restart."""

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
    assert version_of(control_plane.assets / "kube-apiserver") == f"Kubernetes {kubernetes}"
    assert (
        version_of(control_plane.assets / "kube-controller-manager") == f"Kubernetes {kubernetes}"
    )
    assert version_of(control_plane.assets / "etcd") == f"etcd Version: {etcd.removeprefix('v')}"
    assert control_plane.version()["gitVersion"] == kubernetes


@pytest.mark.timeout(240)
async def test_restart_apiserver_leaves_the_fixture_usable(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
) -> None:
    core = client.CoreV1Api(kube_api)
    before = await core.list_namespaced_service(kube_namespace)

    await asyncio.to_thread(control_plane.restart_apiserver)

    # Same client, same namespace: the data is in etcd, the resource versions continue.
    after = await core.list_namespaced_service(kube_namespace)
    assert int(after.metadata.resource_version) >= int(before.metadata.resource_version)
    # And the controller manager reconnected: a new Service still gets its EndpointSlice.
    await core.create_namespaced_service(
        kube_namespace,
        body(
            {
                "metadata": {"name": "later"},
                "spec": {"selector": {"app": "later"}, "ports": [{"port": 80}]},
            }
        ),
    )
    pod = await stand_in_pods.create(kube_namespace, "later-0", {"app": "later"}, port=80)

    async def published() -> None:
        slices = await client.DiscoveryV1Api(kube_api).list_namespaced_endpoint_slice(
            kube_namespace, label_selector="kubernetes.io/service-name=later"
        )
        addresses = [a for s in slices.items for e in s.endpoints or [] for a in e.addresses]
        assert addresses == [pod.ip]

    await eventually(published, timeout_seconds=60)
