"""Fixtures of the kind tests: one cluster per session, kubeferry installed with helm, and the
echo backends behind annotated Services.

The cluster is deleted at the end of the session, pass or fail, unless KEEP_CLUSTER=1
(KIND_CLUSTER names it; its context is kind-<name> in the default kubeconfig).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kind.cluster import CHART, Cluster, wait_for
from tests.kind.workloads import (
    APPS,
    HELLO,
    KUBEFERRY,
    KUBEFERRY_NAMESPACE,
    RELEASE,
    WORLD,
    Backend,
    backend_manifest,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Cold, the first kind test also waits for the node image build (tens of minutes).
    for item in items:
        if "tests/kind/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kind)
            item.add_marker(pytest.mark.timeout(3600))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    up = Cluster.up(os.environ.get("KIND_CLUSTER", "kubeferry-e2e"))
    try:
        yield up
    finally:
        up.down()


@pytest.fixture(scope="session")
def kubeferry(cluster: Cluster) -> str:
    """helm install of the chart with 2 replicas and the locally built image; its defaults
    otherwise. Returns the release's Service name."""
    repository, _, tag = cluster.kubeferry_image.rpartition(":")
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        KUBEFERRY_NAMESPACE,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "replicaCount=2",
        "--wait",
        "--timeout=240s",
        timeout=300,
    )
    cluster.rollout_status(KUBEFERRY_NAMESPACE, KUBEFERRY)
    return KUBEFERRY


@pytest.fixture(scope="session")
def backends(cluster: Cluster, kubeferry: str) -> dict[str, Backend]:
    cluster.kubectl("create", "namespace", APPS, check=False)
    for backend in (HELLO, WORLD):
        cluster.apply(backend_manifest(backend, cluster.echo_image), APPS)
    for backend in (HELLO, WORLD):
        cluster.rollout_status(APPS, backend.name)
    return {backend.name: backend for backend in (HELLO, WORLD)}


@pytest.fixture
def restore_backends(cluster: Cluster, backends: dict[str, Backend]) -> Iterator[None]:
    """Puts every backend back to its image, size and readiness after a test that changes them."""
    yield
    for backend in backends.values():
        cluster.apply(backend_manifest(backend, cluster.echo_image), APPS)
        cluster.kubectl(
            "-n", APPS, "scale", f"deployment/{backend.name}", f"--replicas={backend.replicas}"
        )
    for backend in backends.values():
        cluster.rollout_status(APPS, backend.name)
        wait_for(
            lambda b=backend: len(cluster.ready_pod_names(APPS, b.selector)) == b.replicas,
            timeout_seconds=120,
        )
