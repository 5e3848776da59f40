"""The chart's gatewayAPI value, rendered by the real helm and applied to a real kube-apiserver.

What it promises (chart README, "Gateway API"): off by default, and then nothing of it renders;
on, the controller gets --gateway-api, --gateway-controller-name and a --gateway-service-selector
that selects exactly the Deployment's pods, and RBAC grants exactly the Gateway API reads, the
three /status writes, Namespaces, and Service writes in the release namespace alone.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.deploy.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    Manifest,
    Render,
    kinds,
    one,
)
from tests.integration.deploy.test_chart import container, grants
from tests.kube.controlplane import ControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = CHART.parents[2]
FULLNAME = f"{RELEASE}-kubeferry"
GATEWAY_RBAC = f"{FULLNAME}-gateway-api"
GROUP = "gateway.networking.k8s.io"
ON = {"gatewayAPI": {"enabled": True}}

CLUSTER_GRANTS = {
    *(
        (GROUP, resource, verb)
        for resource in ("gatewayclasses", "gateways", "httproutes", "referencegrants")
        for verb in ("get", "list", "watch")
    ),
    *(
        (GROUP, f"{resource}/status", verb)
        for resource in ("gatewayclasses", "gateways", "httproutes")
        for verb in ("update", "patch")
    ),
    *(("", "namespaces", verb) for verb in ("get", "list", "watch")),
}
SERVICE_GRANTS = {
    ("", "services", verb)
    for verb in ("create", "update", "patch", "delete", "get", "list", "watch")
}


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def test_off_by_default_renders_nothing_of_it(render: Render) -> None:
    manifests = render()
    assert not [m for m in manifests if m["metadata"]["name"] == GATEWAY_RBAC]
    assert not [a for a in container(manifests)["args"] if a.startswith("--gateway")]
    # Explicitly off is the same as the default.
    assert render({"gatewayAPI": {"enabled": False}}) == manifests


def test_on_passes_the_flags_with_the_pods_own_selector(render: Render) -> None:
    manifests = render(ON)
    args = container(manifests)["args"]
    gateway_args = [a for a in args if a.startswith("--gateway")]
    assert gateway_args == [
        "--gateway-api",
        "--gateway-controller-name=kubeferry.io/gateway-controller",
        "--gateway-service-selector=app.kubernetes.io/instance=edge,app.kubernetes.io/name=kubeferry",
        "--gateway-port-range=20000-29999",
    ]
    # The selector is the Deployment's: a Gateway's Service reaches exactly these pods.
    deployment = one(manifests, "Deployment")
    selector = dict(pair.split("=", 1) for pair in gateway_args[2].split("=", 1)[1].split(","))
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # extraArgs still come last, so a user can override.
    with_extra = container(render({**ON, "extraArgs": ["--log-level=debug"]}))["args"]
    assert with_extra[-1] == "--log-level=debug"


def test_controller_name_and_name_overrides_reach_the_flags(render: Render) -> None:
    args = container(
        render(
            {
                "gatewayAPI": {"enabled": True, "controllerName": "example.com/gw"},
                "nameOverride": "lb",
            }
        )
    )["args"]
    assert "--gateway-controller-name=example.com/gw" in args
    assert (
        "--gateway-service-selector=app.kubernetes.io/instance=edge,app.kubernetes.io/name=lb"
        in args
    )


def test_port_range_reaches_the_flag_and_may_hold_a_disabled_https_port(render: Render) -> None:
    args = container(render({"gatewayAPI": {"enabled": True, "portRange": "40000-40099"}}))["args"]
    assert "--gateway-port-range=40000-40099" in args
    # ports.https null: no HTTPS listener, so its number is free for Gateway listeners.
    off = {"ports": {"http": 3000, "admin": 9000, "https": None}}
    args = container(render({**off, "gatewayAPI": {"enabled": True, "portRange": "3400-3500"}}))[
        "args"
    ]
    assert "--gateway-port-range=3400-3500" in args


@pytest.mark.parametrize("watch", [[], ["shop", "billing"]])
def test_rbac_grants_exactly_the_design(render: Render, watch: list[str]) -> None:
    manifests = render({**ON, "watchNamespaces": watch})
    # Cluster-wide whatever watchNamespaces says: GatewayClasses and Namespaces have no namespace.
    role = named(manifests, "ClusterRole", GATEWAY_RBAC)
    assert grants(role) == CLUSTER_GRANTS
    binding = named(manifests, "ClusterRoleBinding", GATEWAY_RBAC)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": GATEWAY_RBAC,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    # Service writes: one Role, in the release namespace only.
    service_roles = [
        m for m in manifests if m["kind"] == "Role" and m["metadata"]["name"] == GATEWAY_RBAC
    ]
    assert [r["metadata"]["namespace"] for r in service_roles] == [NAMESPACE]
    assert grants(service_roles[0]) == SERVICE_GRANTS
    role_binding = named(manifests, "RoleBinding", GATEWAY_RBAC)
    assert role_binding["metadata"]["namespace"] == NAMESPACE
    assert role_binding["roleRef"]["kind"] == "Role"
    assert role_binding["roleRef"]["name"] == GATEWAY_RBAC
    # Everything else is what the value's absence renders (Secrets, EndpointSlices and Events
    # stay under the main rules), the Deployment but for its arguments.
    without = render({"watchNamespaces": watch})
    rest = [m for m in manifests if m["metadata"]["name"] != GATEWAY_RBAC]
    assert [m for m in rest if m["kind"] != "Deployment"] == [
        m for m in without if m["kind"] != "Deployment"
    ]
    args = container(rest)["args"]
    assert [a for a in args if not a.startswith("--gateway")] == container(without)["args"]


def test_rbac_create_false_leaves_gateway_rbac_to_the_user_but_keeps_the_flags(
    render: Render,
) -> None:
    manifests = render(
        {**ON, "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}}
    )
    assert kinds(manifests) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    assert "--gateway-api" in container(manifests)["args"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gatewayAPI": {"enabled": True, "mode": "x"}}, "mode"),  # unknown key
        ({"gatewayAPI": {"enabled": "yes"}}, "/gatewayAPI/enabled"),
        ({"gatewayAPI": {"controllerName": "no-domain"}}, "/gatewayAPI/controllerName"),
        ({"gatewayAPI": {"controllerName": "Example.com/x"}}, "/gatewayAPI/controllerName"),
        ({"gatewayAPI": {"controllerName": ""}}, "/gatewayAPI/controllerName"),
        ({"mode": "sidecar", **ON}, "gatewayAPI.enabled needs mode: ingress"),
        ({"gatewayAPI": {"portRange": "20000"}}, "/gatewayAPI/portRange"),
        ({"gatewayAPI": {"enabled": True, "portRange": "3000-2000"}}, "the first not above"),
        ({"gatewayAPI": {"enabled": True, "portRange": "0-10"}}, "ports must be 1-65535"),
        ({"gatewayAPI": {"enabled": True, "portRange": "1024-65536"}}, "ports must be 1-65535"),
        # The controller refuses a range holding one of its own ports; so does the chart.
        ({"gatewayAPI": {"enabled": True, "portRange": "2000-3000"}}, "contains ports.http (3000)"),
        ({"gatewayAPI": {"enabled": True, "portRange": "3443-3443"}}, "contains ports.https"),
        ({"gatewayAPI": {"enabled": True, "portRange": "8000-9000"}}, "contains ports.admin"),
    ],
)
def test_bad_gateway_values_are_rejected(
    render_result: Any, values: dict[str, Any], message: str
) -> None:
    done = render_result(values)
    assert done.returncode != 0, f"{values} rendered:\n{done.stdout}"
    assert message in done.stderr


def test_helm_lint_passes_with_the_value(helm: Any, tmp_path: Path) -> None:
    for values in (ON, {**ON, "watchNamespaces": ["shop"], "replicaCount": 1}):
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        done = helm("lint", "--strict", str(CHART), "-f", str(path))
        assert done.returncode == 0, f"{values}:\n{done.stdout}{done.stderr}"


def test_readme_shows_a_gateway_class_for_the_default_controller_name() -> None:
    readme = (CHART / "README.md").read_text()
    docs = []
    for block in readme.split("```yaml\n")[1:]:
        docs += [d for d in yaml.safe_load_all(block.split("```")[0]) if d]
    (gateway_class,) = [d for d in docs if d.get("kind") == "GatewayClass"]
    default = yaml.safe_load((CHART / "values.yaml").read_text())["gatewayAPI"]["controllerName"]
    assert gateway_class["spec"]["controllerName"] == default
    assert "hack/gateway-api.sh crds" in readme


# --- against the real API server, with the Gateway API CRDs from hack/gateway-api.sh ---------


@pytest.fixture(scope="module")
def crds_dir() -> Path:
    done = subprocess.run(
        [str(ROOT / "hack" / "gateway-api.sh"), "crds"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


@pytest.fixture
def kubectl(tools_dir: Path, control_plane: ControlPlane) -> Callable[..., Any]:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools_dir / "kubectl"), "--kubeconfig", str(control_plane.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def release(kubectl: Callable[..., Any]) -> Iterator[str]:
    name = f"kf{secrets.token_hex(3)}"
    yield name
    kubectl(
        "delete",
        "--ignore-not-found",
        "clusterrole,clusterrolebinding",
        f"{name}-kubeferry",
        f"{name}-kubeferry-gateway-api",
    )


def can_i(kubectl: Callable[..., Any], verb: str, resource: str, namespace: str, user: str) -> bool:
    # "gateways.gateway.networking.k8s.io/status": can-i takes the subresource as a flag.
    resource, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    done: subprocess.CompletedProcess[str] = kubectl(
        "auth", "can-i", verb, resource, *extra, "--namespace", namespace, "--as", user
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


async def test_rendered_gateway_rbac_is_accepted_and_grants_exactly_that(
    helm: Any,
    kubectl: Callable[..., Any],
    release: str,
    kube_namespace: str,
    crds_dir: Path,
) -> None:
    # The same server-side apply the envtest tests and make conformance use; shared ownership of
    # equal fields, so a second apply in the session conflicts with nothing.
    done = await asyncio.to_thread(
        kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(crds_dir)
    )
    assert done.returncode == 0, done.stderr
    rendered = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        kube_namespace,
        "--set",
        "gatewayAPI.enabled=true",
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    # Everything the value renders is valid to the API server.
    done = await asyncio.to_thread(
        kubectl, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs)
    )
    assert done.returncode == 0, done.stderr
    rbac = [
        d
        for d in docs
        if d["kind"]
        in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    done = await asyncio.to_thread(kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert done.returncode == 0, done.stderr

    user = f"system:serviceaccount:{kube_namespace}:{release}-kubeferry"
    everywhere = [
        *(
            (verb, f"{r}.{GROUP}")
            for r in ("gatewayclasses", "gateways", "httproutes", "referencegrants")
            for verb in ("get", "list", "watch")
        ),
        *(
            (verb, f"{r}.{GROUP}/status")
            for r in ("gatewayclasses", "gateways", "httproutes")
            for verb in ("update", "patch")
        ),
        *((verb, "namespaces") for verb in ("get", "list", "watch")),
    ]
    service_writes = [(verb, "services") for verb in ("create", "update", "patch", "delete")]
    denied_everywhere = [
        ("create", f"gateways.{GROUP}"),
        ("update", f"gateways.{GROUP}"),
        ("delete", f"httproutes.{GROUP}"),
        ("update", f"referencegrants.{GROUP}"),
        ("update", f"referencegrants.{GROUP}/status"),
        ("list", f"grpcroutes.{GROUP}"),
        ("update", "namespaces"),
        ("create", "secrets"),
    ]
    for namespace in (kube_namespace, "default"):
        for verb, resource in everywhere:
            assert await asyncio.to_thread(can_i, kubectl, verb, resource, namespace, user), (
                f"cannot {verb} {resource} in {namespace}"
            )
        for verb, resource in denied_everywhere:
            assert not await asyncio.to_thread(can_i, kubectl, verb, resource, namespace, user), (
                f"can {verb} {resource} in {namespace}"
            )
    for verb, resource in service_writes:
        assert await asyncio.to_thread(can_i, kubectl, verb, resource, kube_namespace, user)
        assert not await asyncio.to_thread(can_i, kubectl, verb, resource, "default", user), (
            f"can {verb} services outside the release namespace"
        )
