"""The real EndpointSlice controller publishes what the stand-in pods report."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.kube.manifests import body
from tests.kube.pods import StandInPod, StandInPods
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def create_service(api: client.ApiClient, namespace: str, name: str) -> None:
    await client.CoreV1Api(api).create_namespaced_service(
        namespace,
        body(
            {
                "metadata": {"name": name},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            }
        ),
    )


async def endpoints_by_ip(
    api: client.ApiClient, namespace: str, service: str
) -> dict[str, dict[str, Any]]:
    """Every endpoint address of the Service's slices -> its conditions as the API returns them."""
    slices = await client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    found: dict[str, dict[str, Any]] = {}
    for endpoint_slice in slices.items:
        for endpoint in endpoint_slice.endpoints or []:
            for address in endpoint.addresses:
                found[address] = {
                    "ready": endpoint.conditions.ready,
                    "serving": endpoint.conditions.serving,
                    "terminating": endpoint.conditions.terminating,
                    "pod": endpoint.target_ref.name if endpoint.target_ref else None,
                    "ports": [(p.name, p.port) for p in endpoint_slice.ports or []],
                }
    return found


async def test_three_ready_pods_then_not_ready_then_terminating(
    kube_api: client.ApiClient, kube_namespace: str, stand_in_pods: StandInPods
) -> None:
    await create_service(kube_api, kube_namespace, "web")
    pods: list[StandInPod] = [
        await stand_in_pods.create(kube_namespace, f"web-{i}", {"app": "web"}) for i in range(3)
    ]

    async def three_ready() -> None:
        found = await endpoints_by_ip(kube_api, kube_namespace, "web")
        assert found == {
            p.ip: {
                "ready": True,
                "serving": True,
                "terminating": False,
                "pod": p.name,
                "ports": [("http", 8080)],
            }
            for p in pods
        }

    await eventually(three_ready)

    not_ready, terminating, steady = pods
    await stand_in_pods.set_ready(not_ready, False)

    async def one_not_ready() -> None:
        found = await endpoints_by_ip(kube_api, kube_namespace, "web")
        assert found[not_ready.ip]["ready"] is False
        assert found[not_ready.ip]["terminating"] is False
        assert found[steady.ip]["ready"] is True

    await eventually(one_not_ready)

    await stand_in_pods.terminate(terminating)

    async def one_terminating() -> None:
        found = await endpoints_by_ip(kube_api, kube_namespace, "web")
        # A terminating pod stays in the slice, not ready, still serving while its Ready
        # condition holds: what lets a load balancer drain it instead of dropping it.
        assert found[terminating.ip] | {"ports": None} == {
            "ready": False,
            "serving": True,
            "terminating": True,
            "pod": terminating.name,
            "ports": None,
        }
        assert found[steady.ip]["ready"] is True

    await eventually(one_terminating)


async def test_deleted_pod_leaves_the_slice(
    kube_api: client.ApiClient, kube_namespace: str, stand_in_pods: StandInPods
) -> None:
    await create_service(kube_api, kube_namespace, "api")
    gone = await stand_in_pods.create(kube_namespace, "api-0", {"app": "api"})
    stays = await stand_in_pods.create(kube_namespace, "api-1", {"app": "api"})

    async def both_listed() -> None:
        assert set(await endpoints_by_ip(kube_api, kube_namespace, "api")) == {gone.ip, stays.ip}

    await eventually(both_listed)
    await stand_in_pods.delete(gone)

    async def one_listed() -> None:
        assert set(await endpoints_by_ip(kube_api, kube_namespace, "api")) == {stays.ip}

    await eventually(one_listed)
