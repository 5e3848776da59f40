"""Traffic from the test process reaches each stand-in backend at its pod address."""

from __future__ import annotations

import ipaddress

import aiohttp
import pytest

from tests.kube.netns import POD_CIDR, PodNetwork, cleanup_stale_sessions, ip
from tests.kube.pods import StandInPods

pytestmark = [pytest.mark.kube, pytest.mark.integration]

QUICK = aiohttp.ClientTimeout(total=2)


async def test_each_backend_answers_at_its_pod_address(
    kube_namespace: str, stand_in_pods: StandInPods
) -> None:
    pods = [
        await stand_in_pods.create(kube_namespace, f"echo-{i}", {"app": "echo"}) for i in range(3)
    ]

    assert len({p.ip for p in pods}) == 3
    async with aiohttp.ClientSession(timeout=QUICK) as http:
        for pod in pods:
            address = ipaddress.IPv4Address(pod.ip)
            assert address in POD_CIDR and not address.is_loopback
            async with http.get(f"{pod.url}/") as response:
                assert response.status == 200
                assert await response.text() == pod.name
                assert response.headers["X-Pod-Name"] == pod.name
            async with http.get(f"{pod.url}/healthz") as response:
                assert (response.status, await response.text()) == (200, "ok")


async def test_kill_restart_cut_and_restore(
    kube_namespace: str, stand_in_pods: StandInPods
) -> None:
    pod = await stand_in_pods.create(kube_namespace, "flaky", {"app": "flaky"})

    async with aiohttp.ClientSession(timeout=QUICK) as http:
        await stand_in_pods.kill_backend(pod)
        with pytest.raises(aiohttp.ClientConnectionError):  # refused: nothing listens
            await http.get(pod.url)

        await stand_in_pods.restart_backend(pod)
        async with http.get(pod.url) as response:
            assert await response.text() == "flaky"

        await stand_in_pods.cut_network(pod)
        # A partition drops packets: no refusal comes back, the client gives up.
        with pytest.raises((aiohttp.ClientConnectionError, TimeoutError)):
            await http.get(pod.url, timeout=aiohttp.ClientTimeout(total=1))

        await stand_in_pods.restore_network(pod)
        async with http.get(pod.url) as response:
            assert await response.text() == "flaky"


async def test_cleanup_removes_namespaces_and_interfaces(
    kube_namespace: str, stand_in_pods: StandInPods, pod_network: PodNetwork
) -> None:
    pod = await stand_in_pods.create(kube_namespace, "short-lived", {"app": "short-lived"})
    assert pod.link.netns in ip("netns", "list")

    await stand_in_pods.close()

    assert pod.link.netns not in ip("netns", "list")
    assert pod.link.host_if not in ip("-o", "link", "show")


def test_a_dead_session_is_cleaned_up_and_a_live_one_kept(pod_network: PodNetwork) -> None:
    # What a pytest killed mid-run leaves behind: a pod namespace and a bridge, no live owner.
    dead = "0dead0"
    ip("netns", "add", f"kf-{dead}-p1")
    ip("link", "add", f"kf{dead}br", "type", "bridge")
    try:
        assert dead in cleanup_stale_sessions()
        assert f"kf-{dead}-p1" not in ip("netns", "list")
        assert f"kf{dead}br" not in ip("-o", "link", "show")
        assert pod_network.bridge in ip("-o", "link", "show")  # this session's own bridge stays
    finally:
        ip("netns", "del", f"kf-{dead}-p1", check=False)
        ip("link", "del", f"kf{dead}br", check=False)
