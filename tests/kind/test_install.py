"""helm install onto a real cluster: pods Ready, the controller on the chart's RBAC alone."""

from __future__ import annotations

from tests.kind.cluster import Cluster
from tests.kind.workloads import KUBEFERRY, KUBEFERRY_NAMESPACE

SERVICE_ACCOUNT = f"system:serviceaccount:{KUBEFERRY_NAMESPACE}:{KUBEFERRY}"


def test_two_replicas_ready_from_the_local_image(cluster: Cluster, kubeferry: str) -> None:
    pods = cluster.pods(KUBEFERRY_NAMESPACE, "app.kubernetes.io/name=kubeferry")
    ready = cluster.ready_pod_names(KUBEFERRY_NAMESPACE, "app.kubernetes.io/name=kubeferry")
    assert len(ready) == 2, cluster.diagnostics(KUBEFERRY_NAMESPACE)
    for pod in pods:
        spec = pod["spec"]
        assert spec["serviceAccountName"] == KUBEFERRY
        assert spec["containers"][0]["image"] == cluster.kubeferry_image
        # The chart's zero-downtime defaults: a preStop pause before SIGTERM reaches kubeferry.
        assert spec["containers"][0]["lifecycle"]["preStop"]
    assert (
        cluster.kubectl_json("-n", KUBEFERRY_NAMESPACE, "get", "pdb", KUBEFERRY)["spec"][
            "minAvailable"
        ]
        == 1
    )


def test_the_service_account_holds_exactly_the_documented_permissions(
    cluster: Cluster, kubeferry: str
) -> None:
    def can(verb: str, resource: str, namespace: str = "demo") -> bool:
        answer = cluster.kubectl(
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            f"--as={SERVICE_ACCOUNT}",
            check=False,
        ).strip()
        return answer == "yes"

    # Secrets: for the certificates that Services name with kubeferry.io/tls-secret.
    for resource in ("services", "endpointslices.discovery.k8s.io", "secrets"):
        for verb in ("get", "list", "watch"):
            assert can(verb, resource), f"{verb} {resource}"
        for verb in ("create", "update", "delete"):
            assert not can(verb, resource), f"{verb} {resource}"
    assert can("create", "events") and can("patch", "events")
    for verb, resource in (
        ("create", "secrets"),
        ("list", "pods"),
        ("create", "pods"),
        ("get", "configmaps"),
        ("list", "nodes"),
    ):
        assert not can(verb, resource), f"{verb} {resource}"
    # No other binding gives kubeferry's account anything: its controller works (the routing
    # tests) with these and nothing more.
    bindings = cluster.kubectl_json("get", "clusterrolebindings")["items"]
    bound = [
        b["metadata"]["name"]
        for b in bindings
        if any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == KUBEFERRY
            and s.get("namespace") == KUBEFERRY_NAMESPACE
            for s in b.get("subjects") or []
        )
    ]
    assert bound == [KUBEFERRY]


def test_the_controller_has_no_credentials_but_its_service_account_token(
    cluster: Cluster, kubeferry: str
) -> None:
    """No kubeconfig anywhere: what the controller can do (the routing tests) it does with the
    token Kubernetes mounts for its ServiceAccount."""
    (pod,) = cluster.pods(KUBEFERRY_NAMESPACE, "app.kubernetes.io/name=kubeferry")[:1]
    container = pod["spec"]["containers"][0]
    assert not any("kubeconfig" in arg for arg in container["args"])
    assert "KUBECONFIG" not in {env["name"] for env in container.get("env", [])}
    assert pod["spec"]["automountServiceAccountToken"] is True
    token = cluster.kubectl(
        "-n",
        KUBEFERRY_NAMESPACE,
        "exec",
        pod["metadata"]["name"],
        "--",
        "python3",
        "-c",
        "import pathlib; p = pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/token');"
        " print(p.exists() and len(p.read_text()) > 100)",
    )
    assert token.strip() == "True"
