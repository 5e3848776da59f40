"""What an operator sees: `kubectl logs` (JSON, access lines), /metrics through port-forward,
and Warning Events for a badly annotated Service (read with a Python Kubernetes client)."""

from __future__ import annotations

import json
import urllib.request

from kubernetes_asyncio import client, config

from tests.integration.proxy.test_access_log import ACCESS_FIELDS
from tests.kind.cluster import Cluster
from tests.kind.test_routing import get
from tests.kind.workloads import APPS, KUBEFERRY, KUBEFERRY_NAMESPACE, Backend
from tests.support.waiting import eventually

SERIES = (
    "kubeferry_requests_total",
    "kubeferry_request_duration_seconds",
    "kubeferry_backend_up",
    "kubeferry_health_checks_total",
    "kubeferry_retries_total",
    "kubeferry_upstream_errors_total",
)


def test_every_log_line_is_json_and_access_lines_carry_the_documented_fields(
    cluster: Cluster, backends: dict[str, Backend]
) -> None:
    with cluster.port_forward(KUBEFERRY_NAMESPACE, f"svc/{KUBEFERRY}", 80) as port:
        for _ in range(20):
            assert get(port, "hello.test", "/observability")[0] == 200
    logs = cluster.kubectl(
        "-n", KUBEFERRY_NAMESPACE, "logs", "-l", "app.kubernetes.io/name=kubeferry", "--tail=-1"
    )
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
    access = [p for p in parsed if p.get("event") == "access" and p.get("path") == "/observability"]
    assert access, "no access line for the requests just made"
    for line in access:
        assert line.keys() >= ACCESS_FIELDS, ACCESS_FIELDS - line.keys()
        assert line["status"] == 200 and line["method"] == "GET"


def test_metrics_show_the_documented_series(cluster: Cluster, backends: dict[str, Backend]) -> None:
    with (
        cluster.port_forward(KUBEFERRY_NAMESPACE, f"deployment/{KUBEFERRY}", 9000) as port,
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response,
    ):
        text = response.read().decode()
    for name in SERIES:
        # A labelled series without samples yet still announces itself.
        assert f"# TYPE {name} " in text, name
    assert "kubeferry_backend_up{" in text


async def test_a_badly_annotated_service_gets_a_warning_event(
    cluster: Cluster, backends: dict[str, Backend]
) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "badly-annotated",
            "annotations": {"kubeferry.io/enabled": "true", "kubeferry.io/strategy": "fastest"},
        },
        "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster.apply(json.dumps(bad), APPS)
    api = await config.new_client_from_config(context=cluster.context)
    try:
        core = client.CoreV1Api(api)

        async def warning() -> object:
            events = await core.list_namespaced_event(
                APPS, field_selector="involvedObject.name=badly-annotated"
            )
            return [
                e
                for e in events.items
                if e.type == "Warning"
                and e.reason == "InvalidAnnotation"
                and "kubeferry.io/strategy" in e.message
                and "fastest" in e.message
            ]

        await eventually(
            warning, timeout=60, interval=1, message="an InvalidAnnotation Warning Event"
        )
        # kubectl shows it too, as a user would look for it.
        shown = cluster.kubectl(
            "-n", APPS, "get", "events", "--field-selector=reason=InvalidAnnotation"
        )
        assert "badly-annotated" in shown
    finally:
        await api.close()
        cluster.kubectl("-n", APPS, "delete", "service", "badly-annotated", check=False)
