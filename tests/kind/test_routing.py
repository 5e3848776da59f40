"""Annotated Services routed through `kubectl port-forward svc/<release>-kubeferry`."""

from __future__ import annotations

import http.client
from collections import Counter

import pytest

from tests.kind.cluster import Cluster, wait_for
from tests.kind.workloads import APPS, HELLO, KUBEFERRY, KUBEFERRY_NAMESPACE, WORLD, Backend


def get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def answers(port: int, host: str, path: str, count: int) -> Counter[str]:
    return Counter(
        body if status == 200 else f"<{status}>"
        for status, body in (get(port, host, path) for _ in range(count))
    )


@pytest.fixture
def kubeferry_port(cluster: Cluster, kubeferry: str) -> object:
    with cluster.port_forward(KUBEFERRY_NAMESPACE, f"svc/{KUBEFERRY}", 80) as port:
        yield port


@pytest.mark.parametrize(("backend", "path"), [(HELLO, "/"), (WORLD, "/api/items")])
def test_requests_reach_every_pod_of_the_right_service(
    cluster: Cluster, backends: dict[str, Backend], kubeferry_port: int, backend: Backend, path: str
) -> None:
    pods = cluster.ready_pod_names(APPS, backend.selector)
    assert len(pods) == backend.replicas
    seen = wait_for(
        lambda: (
            (a := answers(kubeferry_port, f"{backend.name}.test", path, 30)).keys() == pods and a
        ),
        timeout_seconds=60,
    )
    assert set(seen) == pods


def test_unknown_host_and_unrouted_path_get_404(
    backends: dict[str, Backend], kubeferry_port: int
) -> None:
    assert get(kubeferry_port, "nobody.test")[0] == 404
    # world.test routes only /api.
    assert get(kubeferry_port, "world.test", "/other")[0] == 404


def test_a_service_scaled_to_zero_gets_503(
    cluster: Cluster, backends: dict[str, Backend], kubeferry_port: int, restore_backends: None
) -> None:
    cluster.kubectl("-n", APPS, "scale", "deployment/world", "--replicas=0")
    _status, body = wait_for(
        lambda: (r := get(kubeferry_port, "world.test", "/api"))[0] == 503 and r,
        timeout_seconds=60,
    )
    assert "No healthy backends available" in body


def test_a_pod_failing_its_readiness_probe_leaves_and_rejoins(
    cluster: Cluster, backends: dict[str, Backend], kubeferry_port: int, restore_backends: None
) -> None:
    pods = sorted(cluster.ready_pod_names(APPS, HELLO.selector))
    victim = pods[0]
    with cluster.port_forward(APPS, f"pod/{victim}", 8080) as pod_port:
        conn = http.client.HTTPConnection("127.0.0.1", pod_port, timeout=10)
        conn.request("POST", "/ready/off")
        assert conn.getresponse().status == 200
        conn.close()
        wait_for(
            lambda: victim not in cluster.ready_pod_names(APPS, HELLO.selector), timeout_seconds=30
        )
        # Gone from the rotation: many requests, none reaches it, none fails.
        wait_for(
            lambda: victim not in answers(kubeferry_port, "hello.test", "/", 10), timeout_seconds=30
        )
        seen = answers(kubeferry_port, "hello.test", "/", 60)
        assert victim not in seen and set(seen) == set(pods[1:]), seen
        conn = http.client.HTTPConnection("127.0.0.1", pod_port, timeout=10)
        conn.request("POST", "/ready/on")
        assert conn.getresponse().status == 200
        conn.close()
    wait_for(lambda: victim in answers(kubeferry_port, "hello.test", "/", 30), timeout_seconds=60)
