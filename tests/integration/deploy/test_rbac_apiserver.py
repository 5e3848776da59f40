"""The chart's manifests against a real kube-apiserver (the session's control plane).

`helm template` output is applied with the real kubectl: the API server validates every object,
and the RBAC it grants is checked both by `kubectl auth can-i` and by running the real
`kubeferry controller` with the chart's ServiceAccount token: it must list and watch, become
ready, and record a Warning Event, with nothing more than the chart grants.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.integration.controller.tls_support import handshake_serial
from tests.integration.deploy.conftest import CHART
from tests.kube.controlplane import ControlPlane
from tests.kube.fixtures import SaKubeconfig
from tests.support.ports import free_port
from tests.support.tls_certs import TestCA
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ALLOWED = [
    ("get", "services"),
    ("list", "services"),
    ("watch", "services"),
    # Ingress mode: the Secrets named in kubeferry.io/tls-secret (the controller lists and
    # watches each by name; RBAC cannot narrow list/watch to names).
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("get", "endpointslices.discovery.k8s.io"),
    ("list", "endpointslices.discovery.k8s.io"),
    ("watch", "endpointslices.discovery.k8s.io"),
    ("create", "events"),
    ("patch", "events"),
    ("create", "events.events.k8s.io"),
    ("patch", "events.events.k8s.io"),
]
DENIED = [
    ("create", "services"),
    ("update", "services"),
    ("delete", "services"),
    ("create", "endpointslices.discovery.k8s.io"),
    ("list", "pods"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),
    ("list", "configmaps"),
    ("delete", "events"),
    ("list", "endpoints"),
]


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
    """A unique release name; its cluster-scoped objects are deleted after the test."""
    name = f"kf{secrets.token_hex(3)}"
    yield name
    kubectl("delete", "--ignore-not-found", "clusterrole,clusterrolebinding", f"{name}-kubeferry")


def rendered(helm: Any, release: str, namespace: str, *extra: str) -> list[dict[str, Any]]:
    done = helm("template", release, str(CHART), "--namespace", namespace, *extra)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def apply(kubectl: Callable[..., Any], docs: list[dict[str, Any]], *flags: str) -> None:
    done = kubectl("apply", *flags, "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert done.returncode == 0, done.stderr


def can_i(kubectl: Callable[..., Any], verb: str, resource: str, namespace: str, user: str) -> bool:
    done = kubectl("auth", "can-i", verb, resource, "--namespace", namespace, "--as", user)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


async def test_every_rendered_object_is_accepted_by_the_api_server(
    helm: Any, kubectl: Callable[..., Any], release: str, kube_namespace: str
) -> None:
    for values in (
        [],
        ["--set", "podDisruptionBudget.enabled=true", "--set", "service.metrics.enabled=true"],
        ["--set", "mode=sidecar"],
        ["--set", f"watchNamespaces={{{kube_namespace}}}", "--set", "preStopSleepSeconds=5"],
    ):
        docs = rendered(helm, release, kube_namespace, *values)
        # Server-side dry run: full validation and admission, nothing stored.
        await asyncio.to_thread(apply, kubectl, docs, "--dry-run=server")


async def test_cluster_rbac_grants_exactly_what_it_documents(
    helm: Any, kubectl: Callable[..., Any], release: str, kube_namespace: str
) -> None:
    docs = rendered(helm, release, kube_namespace)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    await asyncio.to_thread(apply, kubectl, rbac)
    user = f"system:serviceaccount:{kube_namespace}:{release}-kubeferry"
    for namespace in (kube_namespace, "default"):  # cluster-wide
        for verb, resource in ALLOWED:
            assert await asyncio.to_thread(can_i, kubectl, verb, resource, namespace, user), (
                f"cannot {verb} {resource} in {namespace}"
            )
        for verb, resource in DENIED:
            assert not await asyncio.to_thread(can_i, kubectl, verb, resource, namespace, user), (
                f"can {verb} {resource} in {namespace}"
            )


async def test_namespaced_rbac_stays_in_the_watched_namespace(
    helm: Any, kubectl: Callable[..., Any], release: str, kube_namespace: str
) -> None:
    docs = rendered(helm, release, kube_namespace, "--set", f"watchNamespaces={{{kube_namespace}}}")
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    await asyncio.to_thread(apply, kubectl, rbac)
    user = f"system:serviceaccount:{kube_namespace}:{release}-kubeferry"
    for verb, resource in ALLOWED:
        assert await asyncio.to_thread(can_i, kubectl, verb, resource, kube_namespace, user)
        assert not await asyncio.to_thread(can_i, kubectl, verb, resource, "default", user)


@pytest.fixture
async def controller_process(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await start(*args)`: `python -m controller ARGS` as a real process; stopped after."""
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> Path:
        log = tmp_path / f"controller-{len(started)}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller", *args,
                stdout=out, stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("KUBEFERRY_")},
            )  # fmt: skip
        started.append(process)
        return log

    yield start
    for process in started:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_real_controller_runs_on_the_charts_rbac_alone(
    helm: Any,
    kubectl: Callable[..., Any],
    release: str,
    kube_namespace: str,
    sa_kubeconfig: SaKubeconfig,
    controller_process: Callable[..., Any],
    tmp_path: Path,
) -> None:
    docs = rendered(helm, release, kube_namespace, "--set", f"watchNamespaces={{{kube_namespace}}}")
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    await asyncio.to_thread(apply, kubectl, rbac)
    kubeconfig = await sa_kubeconfig(kube_namespace, f"{release}-kubeferry")

    # The arguments the chart's Deployment gives it, with loopback ports.
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "controller" and f"--namespace={kube_namespace}" in args
    config = tmp_config = kubeconfig.parent / "config.yaml"
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    settings = yaml.safe_load(configmap["data"]["config.yaml"])
    assert settings["tls"]["enabled"] is True  # the chart's HTTPS listener, on a free port here
    settings["tls_port"] = tls_port = free_port()
    tmp_config.write_text(yaml.safe_dump(settings))
    port, admin_port = free_port(), free_port()
    log = await controller_process(
        "--kubeconfig", str(kubeconfig), f"--config={config}",
        f"--namespace={kube_namespace}", "--host=127.0.0.1",
        f"--port={port}", f"--admin-port={admin_port}",
    )  # fmt: skip

    async with aiohttp.ClientSession(trust_env=False) as session:

        async def ready() -> bool:
            try:
                async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        try:
            await eventually(ready, timeout=60, interval=0.2, message="controller /readyz")
        except AssertionError:
            raise AssertionError(f"not ready; log:\n{log.read_text()[-4000:]}") from None

    # An enrolled Service with an invalid annotation: the controller records a Warning Event
    # on it, which needs the events permission and nothing else. Its tls-secret is served by
    # SNI, which needs the secrets permission.
    ca = TestCA()
    leaf = ca.issue("orders.test")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "orders-tls", "namespace": kube_namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(leaf.chain_pem).decode(),
            "tls.key": base64.b64encode(leaf.key_pem).decode(),
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "orders",
            "namespace": kube_namespace,
            "annotations": {
                "kubeferry.io/enabled": "true",
                "kubeferry.io/strategy": "nope",
                "kubeferry.io/host": "orders.test",
                "kubeferry.io/tls-secret": "orders-tls",
            },
        },
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }
    await asyncio.to_thread(apply, kubectl, [secret, service])
    ca_file = ca.write(tmp_path)

    async def serves_the_secret() -> bool:
        return await handshake_serial(tls_port, "orders.test", ca_file) == leaf.serial

    try:
        await eventually(serves_the_secret, timeout=30, interval=0.2, message="orders.test TLS")
    except AssertionError:
        raise AssertionError(f"not served; log:\n{log.read_text()[-4000:]}") from None

    async def warned() -> bool:
        done = await asyncio.to_thread(
            kubectl,
            "get", "events", "--namespace", kube_namespace,
            "--field-selector", "involvedObject.name=orders,type=Warning", "-o", "name",
        )  # fmt: skip
        return bool(done.stdout.strip())

    try:
        await eventually(warned, timeout=30, interval=0.5, message="Warning Event on orders")
    except AssertionError:
        raise AssertionError(f"no Event; log:\n{log.read_text()[-4000:]}") from None
    assert "forbidden" not in log.read_text().lower()
