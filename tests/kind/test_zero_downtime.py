"""Zero failed requests while backends and kubeferry itself are rolled, deleted and scaled.

The thing ingress-nginx never managed (kubernetes/ingress-nginx#7097). Load runs steadily from a
client pod inside the cluster through the kubeferry Service, and, for the backend disruptions,
also from the host through `kubectl port-forward`. Every disruption must complete with no failed
request and none slower than SLOWEST_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.kind.cluster import Cluster, wait_for
from tests.kind.load import LoadResult, host_load, in_cluster_load
from tests.kind.workloads import APPS, HELLO, KUBEFERRY, KUBEFERRY_NAMESPACE, KUBEFERRY_URL, Backend

# The bound on any single request during a disruption. A request that lands on a backend as it
# stops is retried elsewhere within milliseconds; seconds would mean a hang.
SLOWEST_SECONDS = 3.0
# Load keeps flowing this long after the disruption finished, to catch late failures (a pod
# that stops listening only after its endpoint is gone, a connection left to a dead pod).
SETTLE_SECONDS = 8


def rollout_restart(cluster: Cluster) -> None:
    cluster.kubectl("-n", APPS, "rollout", "restart", "deployment/hello")
    cluster.rollout_status(APPS, "hello")


def image_change(cluster: Cluster) -> None:
    cluster.kubectl("-n", APPS, "set", "image", "deployment/hello", f"echo={cluster.echo_image_v2}")
    cluster.rollout_status(APPS, "hello")


def delete_pod(cluster: Cluster) -> None:
    victim = sorted(cluster.ready_pod_names(APPS, HELLO.selector))[0]
    cluster.kubectl("-n", APPS, "delete", "pod", victim, "--wait=true", timeout=120)
    wait_for(lambda: len(cluster.ready_pod_names(APPS, HELLO.selector)) == 3, timeout_seconds=120)


def scale_down_and_up(cluster: Cluster) -> None:
    for replicas in (1, 3):
        cluster.kubectl("-n", APPS, "scale", "deployment/hello", f"--replicas={replicas}")
        cluster.rollout_status(APPS, "hello")
        wait_for(
            lambda r=replicas: (
                len(cluster.ready_pod_names(APPS, HELLO.selector)) == r
                and len(cluster.pods(APPS, HELLO.selector)) == r
            ),
            timeout_seconds=120,
        )


def kubeferry_rollout(cluster: Cluster) -> None:
    cluster.kubectl("-n", KUBEFERRY_NAMESPACE, "rollout", "restart", f"deployment/{KUBEFERRY}")
    cluster.rollout_status(KUBEFERRY_NAMESPACE, KUBEFERRY, timeout_seconds=300)
    # Old pods still draining count as part of the disruption.
    wait_for(
        lambda: len(cluster.pods(KUBEFERRY_NAMESPACE, "app.kubernetes.io/name=kubeferry")) == 2,
        timeout_seconds=120,
    )


def assert_clean(result: LoadResult, what: str) -> None:
    assert result.requests > 500, f"{what}: too little load to mean anything: {result.describe()}"
    assert result.failures == 0, f"{what}: {result.describe()}"
    assert result.max_seconds < SLOWEST_SECONDS, f"{what}: {result.describe()}"


@pytest.mark.parametrize(
    "disruption",
    [rollout_restart, image_change, delete_pod, scale_down_and_up],
    ids=lambda f: f.__name__,
)
def test_backend_disruption_fails_no_request(
    cluster: Cluster,
    backends: dict[str, Backend],
    restore_backends: None,
    disruption: Callable[[Cluster], None],
) -> None:
    with (
        cluster.port_forward(KUBEFERRY_NAMESPACE, f"svc/{KUBEFERRY}", 80) as port,
        in_cluster_load(cluster, url=KUBEFERRY_URL, host="hello.test") as inside,
        host_load(port, host="hello.test") as outside,
    ):
        before = set(cluster.ready_pod_names(APPS, HELLO.selector))
        disruption(cluster)
        time.sleep(SETTLE_SECONDS)
    after = set(cluster.ready_pod_names(APPS, HELLO.selector))
    try:
        assert_clean(inside, "client pod")
        assert_clean(outside, "through port-forward")
    except AssertionError:
        print(cluster.diagnostics(APPS))
        raise
    # The disruption really moved traffic: both the old and the new pods answered.
    if disruption is not delete_pod and disruption is not scale_down_and_up:
        assert before & set(inside.answers) and (after - before) & set(inside.answers), (
            before,
            after,
            inside.answers,
        )


def test_rolling_restart_of_kubeferry_fails_no_request(
    cluster: Cluster, backends: dict[str, Backend]
) -> None:
    """PDB, preStop pause and drain: the client pod hits the kubeferry Service throughout."""
    with in_cluster_load(cluster, url=KUBEFERRY_URL, host="hello.test") as inside:
        kubeferry_rollout(cluster)
        time.sleep(SETTLE_SECONDS)
    try:
        assert_clean(inside, "client pod through the kubeferry Service")
    except AssertionError:
        print(cluster.diagnostics(KUBEFERRY_NAMESPACE))
        raise
