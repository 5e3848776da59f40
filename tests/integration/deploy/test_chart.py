"""The Helm chart, rendered and linted by the real helm (hack/tools.sh).

What the chart promises: the Deployment runs `kubeferry controller` with the configured ports,
probes and settings file; RBAC grants exactly the documented verbs and resources, cluster-wide or
per watched namespace; bad values are refused by values.schema.json before anything renders.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.settings import load_settings
from tests.integration.deploy.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    Manifest,
    Render,
    kinds,
    one,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FULLNAME = f"{RELEASE}-kubeferry"

# (apiGroup, resource, verb): exactly what the README and the rbac value promise. Sidecars
# serve no TLS, so only ingress mode reads Secrets (those that Services name in tls-secret).
SIDECAR_GRANTS = {
    *(("", "services", verb) for verb in ("get", "list", "watch")),
    *(("discovery.k8s.io", "endpointslices", verb) for verb in ("get", "list", "watch")),
    *(("", "events", verb) for verb in ("create", "patch")),
    *(("events.k8s.io", "events", verb) for verb in ("create", "patch")),
}
EXPECTED_GRANTS = SIDECAR_GRANTS | {("", "secrets", verb) for verb in ("get", "list", "watch")}


def grants(role: Manifest) -> set[tuple[str, str, str]]:
    """Expand a Role's rules into (group, resource, verb) triples; no wildcards allowed."""
    out = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    out.add((group, resource, verb))
    return out


def container(manifests: list[Manifest]) -> dict[str, Any]:
    (only,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def test_helm_lint_passes(helm: Any) -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr


def test_helm_lint_passes_for_each_example_value_set(helm: Any, tmp_path: Path) -> None:
    for index, values in enumerate(VALUE_SETS):
        path = tmp_path / f"values-{index}.yaml"
        path.write_text(yaml.safe_dump(values))
        done = helm("lint", "--strict", str(CHART), "-f", str(path))
        assert done.returncode == 0, f"{values}:\n{done.stdout}{done.stderr}"


def test_defaults_render_an_ingress_deployment_with_cluster_rbac(render: Render) -> None:
    manifests = render()
    assert kinds(manifests) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    for manifest in manifests:
        assert manifest["metadata"]["name"] == FULLNAME
        if manifest["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert manifest["metadata"]["namespace"] == NAMESPACE


def test_deployment_runs_the_controller_with_ports_probes_and_config(render: Render) -> None:
    manifests = render()
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(manifests)

    assert deployment["spec"]["replicas"] == 2
    assert main["image"] == "kubeferry:0.1.0"  # appVersion when image.tag is empty
    assert main["args"] == [
        "controller",
        "--config=/etc/kubeferry/config.yaml",
        "--port=3000",
        "--admin-port=9000",
    ]
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {
        "http": 3000,
        "https": 3443,
        "admin": 9000,
    }
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in main["env"]

    # The settings file is the ConfigMap, mounted where --config points.
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/etc/kubeferry"
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert "config.yaml" in one(manifests, "ConfigMap")["data"]

    assert pod["serviceAccountName"] == FULLNAME
    assert one(manifests, "ServiceAccount")["metadata"]["name"] == FULLNAME


def test_pod_is_non_root_with_a_read_only_root_filesystem(render: Render) -> None:
    manifests = render()
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    main = container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # A writable /tmp, since the root filesystem is not.
    assert any(m["mountPath"] == "/tmp" for m in main["volumeMounts"])


def test_service_maps_port_80_to_the_http_container_port(render: Render) -> None:
    service = one(render(), "Service")
    assert service["spec"]["ports"] == [
        {
            "name": "http",
            "port": 80,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
        {
            "name": "https",
            "port": 443,
            "targetPort": "https",
            "protocol": "TCP",
            "appProtocol": "https",
        },
    ]
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "kubeferry",
        "app.kubernetes.io/instance": RELEASE,
    }
    labels = one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_cluster_role_grants_exactly_the_documented_permissions(render: Render) -> None:
    manifests = render()
    assert grants(one(manifests, "ClusterRole")) == EXPECTED_GRANTS
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]


def test_readme_and_sidecar_example_document_the_same_rules(render: Render) -> None:
    rules = one(render({"mode": "sidecar"}), "Role")["rules"]
    example = [
        doc for doc in yaml.safe_load_all((CHART / "examples" / "sidecar.yaml").read_text()) if doc
    ]
    assert one(example, "Role")["rules"] == rules
    readme = (CHART / "README.md").read_text()
    # The Role shown in the README's sidecar section.
    block = re.search(r"```yaml\n(apiVersion: rbac[^`]*kind: Role\n[^`]*)```", readme)
    assert block, "README has no Role example"
    assert yaml.safe_load(block.group(1))["rules"] == rules


def test_watch_namespaces_render_a_role_per_namespace_and_pass_them(render: Render) -> None:
    manifests = render({"watchNamespaces": ["shop", "billing"]})
    assert "ClusterRole" not in kinds(manifests)
    assert "ClusterRoleBinding" not in kinds(manifests)
    roles = {m["metadata"]["namespace"]: m for m in manifests if m["kind"] == "Role"}
    bindings = {m["metadata"]["namespace"]: m for m in manifests if m["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"shop", "billing"}
    for namespace in ("shop", "billing"):
        assert grants(roles[namespace]) == EXPECTED_GRANTS
        assert bindings[namespace]["roleRef"]["kind"] == "Role"
        # The ServiceAccount lives in the release namespace, not in the watched one.
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    assert "--namespace=shop,billing" in container(manifests)["args"]


def test_sidecar_mode_renders_only_what_a_sidecar_needs(render: Render) -> None:
    manifests = render({"mode": "sidecar"})
    assert kinds(manifests) == ["ConfigMap", "Role", "RoleBinding", "ServiceAccount"]
    role = one(manifests, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role) == SIDECAR_GRANTS


def test_sidecar_mode_with_other_namespaces(render: Render) -> None:
    manifests = render({"mode": "sidecar", "watchNamespaces": [NAMESPACE, "billing"]})
    namespaces = sorted(m["metadata"]["namespace"] for m in manifests if m["kind"] == "Role")
    assert namespaces == sorted([NAMESPACE, "billing"])


def test_rbac_and_service_account_can_be_left_to_the_user(render: Render) -> None:
    manifests = render(
        {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}}
    )
    assert kinds(manifests) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    assert one(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def test_config_value_is_a_settings_file_the_proxy_accepts(render: Render, tmp_path: Path) -> None:
    config = {
        "strategy": "least-request",
        "health": {"path": "/ready", "interval_seconds": 2.5, "unhealthy_threshold": 3},
        "retries": {"max_retries": 1},
        "timeouts": {"drain_seconds": 20},
        "log": {"level": "debug"},
    }
    manifests = render({"config": config})
    text = one(manifests, "ConfigMap")["data"]["config.yaml"]
    rendered = yaml.safe_load(text)
    # Helm merges the given values over the chart's defaults.
    for section, value in config.items():
        if isinstance(value, dict):
            assert rendered[section].items() >= value.items()
        else:
            assert rendered[section] == value
    path = tmp_path / "config.yaml"
    path.write_text(text)
    settings = load_settings(config_file=path)  # the same loader `--config` uses
    assert settings.strategy == "least-request"
    assert settings.health.interval_seconds == 2.5
    assert settings.timeouts.drain_seconds == 20


def test_default_config_is_accepted_by_the_proxy(render: Render, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(one(render(), "ConfigMap")["data"]["config.yaml"])
    assert load_settings(config_file=path).timeouts.drain_seconds == 30


def test_config_change_rolls_the_pods(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # type: ignore[no-any-return]

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"strategy": "random"}})


@pytest.mark.parametrize(
    ("values", "expected_grace"),
    [
        ({}, 45),  # drain 30 + preStop sleep 5 + 10
        ({"config": {"timeouts": {"drain_seconds": 12.5}}, "preStopSleepSeconds": 5}, 28),
        ({"terminationGracePeriodSeconds": 90}, 90),
    ],
)
def test_termination_grace_period_exceeds_the_drain(
    render: Render, values: dict[str, Any], expected_grace: int
) -> None:
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == expected_grace


def test_pre_stop_sleep_is_on_by_default_and_needs_no_shell(render: Render) -> None:
    # helm template renders for its default Kubernetes version (1.35 for helm 4.1), where the
    # kubelet's own sleep action is available.
    assert container(render())["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert container(render({"preStopSleepSeconds": 12}))["lifecycle"]["preStop"] == {
        "sleep": {"seconds": 12}
    }
    assert "lifecycle" not in container(render({"preStopSleepSeconds": 0}))


def test_pre_stop_sleep_falls_back_to_exec_before_kubernetes_1_30(
    render_result: Callable[..., Any],
) -> None:
    done = render_result({"preStopSleepSeconds": 5}, "--kube-version", "1.29.0")
    assert done.returncode == 0, done.stderr
    manifests = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert container(manifests)["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}


def test_custom_ports_reach_args_container_ports_and_service(render: Render) -> None:
    manifests = render(
        {
            "ports": {"http": 8080, "admin": 9090},
            "service": {"port": 8000, "metrics": {"enabled": True}},
        }
    )
    main = container(manifests)
    assert "--port=8080" in main["args"] and "--admin-port=9090" in main["args"]
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {
        "http": 8080,
        "https": 3443,
        "admin": 9090,
    }
    ports = {
        p["name"]: (p["port"], p["targetPort"]) for p in one(manifests, "Service")["spec"]["ports"]
    }
    assert ports == {"http": (8000, "http"), "https": (443, "https"), "admin": (9000, "admin")}


def test_https_port_turns_the_https_listener_on_and_redirects_name_the_service_port(
    render: Render, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"

    def settings(values: dict[str, Any]) -> Any:
        path.write_text(one(render(values), "ConfigMap")["data"]["config.yaml"])
        return load_settings(config_file=path)

    default = settings({})
    assert (default.tls.serving, default.tls_port, default.tls.redirect_port) == (True, 3443, 443)
    custom = settings(
        {"ports": {"http": 3000, "admin": 9000, "https": 8443}, "service": {"httpsPort": 8443}}
    )
    assert (custom.tls_port, custom.tls.redirect_port) == (8443, 8443)
    # An explicit setting wins over what the chart derives.
    mine = settings({"config": {"tls": {"redirect_port": 4443, "hsts_max_age_seconds": 60}}})
    assert (mine.tls.redirect_port, mine.tls.hsts_max_age_seconds, mine.tls.serving) == (
        4443,
        60,
        True,
    )
    # null: no HTTPS listener, port or Service port.
    off = render({"ports": {"http": 3000, "admin": 9000, "https": None}})
    assert "https" not in {p["name"] for p in container(off)["ports"]}
    assert "https" not in {p["name"] for p in one(off, "Service")["spec"]["ports"]}
    path.write_text(one(off, "ConfigMap")["data"]["config.yaml"])
    assert not load_settings(config_file=path).tls.serving


def test_service_monitor_scrapes_the_admin_port(render: Render) -> None:
    manifests = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The Service must carry the port the ServiceMonitor names.
    assert "admin" in {p["name"] for p in one(manifests, "Service")["spec"]["ports"]}


def test_pod_disruption_budget(render: Render) -> None:
    assert one(render(), "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "PodDisruptionBudget" not in kinds(render({"podDisruptionBudget": {"enabled": False}}))
    # Over a single replica a PDB would block every node drain: not rendered.
    assert "PodDisruptionBudget" not in kinds(render({"replicaCount": 1}))
    pdb = one(render({"podDisruptionBudget": {"enabled": True}}), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pdb = one(
        render({"podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}}),
        "PodDisruptionBudget",
    )
    assert pdb["spec"] == {
        "maxUnavailable": "50%",
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "kubeferry",
                "app.kubernetes.io/instance": RELEASE,
            }
        },
    }


def test_extra_args_env_and_image(render: Render) -> None:
    manifests = render(
        {
            "replicaCount": 3,
            "image": {"repository": "registry.example/kf", "tag": "dev", "pullPolicy": "Never"},
            "extraArgs": ["--log-level=debug"],
            "extraEnv": [{"name": "KUBEFERRY_RETRIES__MAX_RETRIES", "value": "1"}],
        }
    )
    main = container(manifests)
    assert one(manifests, "Deployment")["spec"]["replicas"] == 3
    assert main["image"] == "registry.example/kf:dev"
    assert main["imagePullPolicy"] == "Never"
    assert main["args"][-1] == "--log-level=debug"
    assert {"name": "KUBEFERRY_RETRIES__MAX_RETRIES", "value": "1"} in main["env"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicas": 2}, "replicas"),  # a typo of replicaCount is not silently ignored
        ({"mode": "gateway"}, "/mode"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"ports": {"http": 70000, "admin": 9000}}, "/ports/http"),
        ({"service": {"type": "Ingress"}}, "/service/type"),
        ({"config": {"port": 8080}}, "/config/port"),
        ({"config": {"timeouts": {"drain_seconds": "30s"}}}, "drain_seconds"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"preStopSleepSeconds": -5}, "/preStopSleepSeconds"),
        ({"terminationGracePeriodSeconds": 20}, "must exceed"),  # below the 30 s drain
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_bad_values_are_rejected(render_result: Any, values: dict[str, Any], message: str) -> None:
    done = render_result(values)
    assert done.returncode != 0, f"{values} rendered:\n{done.stdout}"
    assert message in done.stderr


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)`", readme, flags=re.MULTILINE))
    # Free-form maps are documented as one row (or `name.*`); the rest key by key.
    whole = {
        "config",
        "resources",
        "podSecurityContext",
        "securityContext",
        "livenessProbe",
        "readinessProbe",
    }
    missing = []
    for key, value in values.items():
        if key in whole or not isinstance(value, dict) or not value:
            if key not in documented and f"{key}.*" not in documented:
                missing.append(key)
            continue
        for sub, subvalue in value.items():
            if isinstance(subvalue, dict) and subvalue:
                missing += [
                    f"{key}.{sub}.{leaf}"
                    for leaf in subvalue
                    if f"{key}.{sub}.{leaf}" not in documented
                ]
            elif f"{key}.{sub}" not in documented:
                missing.append(f"{key}.{sub}")
    assert not missing, f"values not in README.md's table: {missing}"


def test_sidecar_example_runs_the_controller_with_an_upstream() -> None:
    docs = [d for d in yaml.safe_load_all((CHART / "examples" / "sidecar.yaml").read_text()) if d]
    deployment = one(docs, "Deployment")
    (sidecar,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"][:2] == ["controller", "--upstream=orders=3001"]
    binding = one(docs, "RoleBinding")
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )


VALUE_SETS: list[dict[str, Any]] = [
    {},
    {"watchNamespaces": ["shop", "billing"], "replicaCount": 1},
    {"mode": "sidecar"},
    {
        "serviceMonitor": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
        "preStopSleepSeconds": 5,
    },
]
