"""The real `kubeferry controller` with the chart's gatewayAPI arguments and RBAC, against a real
kube-apiserver with the Gateway API v1.6.3 CRDs (hack/gateway-api.sh crds).

What the chart promises here: its ServiceAccount's rules are enough for the whole Gateway path
(read the kinds, write GatewayClass and Gateway /status, create the Gateway's Service in the
release namespace), with the log level the chart deploys (info).
"""

from __future__ import annotations

import asyncio
import json
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

from tests.integration.deploy.conftest import CHART
from tests.integration.deploy.test_chart_gateway_api import GROUP
from tests.kube.controlplane import ControlPlane
from tests.kube.fixtures import SaKubeconfig
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = CHART.parents[2]


@pytest.fixture(scope="module")
def crds_dir() -> Path:
    done = subprocess.run(
        [str(ROOT / "hack" / "gateway-api.sh"), "crds"], capture_output=True, text=True, timeout=300
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
    """A unique release name; its cluster-scoped objects are deleted after the test."""
    name = f"kf{secrets.token_hex(3)}"
    yield name
    kubectl("delete", "--ignore-not-found", "clusterrole,clusterrolebinding",
            f"{name}-kubeferry", f"{name}-kubeferry-gateway-api")  # fmt: skip
    kubectl("delete", "--ignore-not-found", f"gatewayclasses.{GROUP}", name)


@pytest.fixture
async def controller_process(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await start(env, *args)`: `python -m controller ARGS` as a real process; stopped after."""
    started: list[asyncio.subprocess.Process] = []

    async def start(env: dict[str, str], *args: str) -> Path:
        log = tmp_path / f"controller-{len(started)}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEFERRY_", "POD_"))}
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller", *args,
                stdout=out, stderr=subprocess.STDOUT, env={**base, **env},
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


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for found in obj.get("status", {}).get("conditions", []):
        if found["type"] == kind:
            return found  # type: ignore[no-any-return]
    return None


async def test_real_controller_serves_a_gateway_on_the_charts_rbac_alone(
    helm: Any,
    kubectl: Callable[..., Any],
    release: str,
    kube_namespace: str,
    crds_dir: Path,
    sa_kubeconfig: SaKubeconfig,
    controller_process: Callable[..., Any],
) -> None:
    """The chart's arguments and RBAC are enough for the controller to accept the GatewayClass,
    create the Gateway's Service in the release namespace and write the Gateway's address: every
    verb of the gateway rules, with the chart's ServiceAccount token."""
    done = await asyncio.to_thread(
        kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(crds_dir)
    )
    assert done.returncode == 0, done.stderr
    controller_name = f"kubeferry.io/test-{release}"  # this test's controller serves this class
    gateway_port = free_port()
    rendered = helm(
        "template", release, str(CHART), "--namespace", kube_namespace,
        "--set", "gatewayAPI.enabled=true",
        "--set", f"gatewayAPI.controllerName={controller_name}",
        "--set", f"gatewayAPI.portRange={gateway_port}-{gateway_port}",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    rbac = [
        d
        for d in docs
        if d["kind"]
        in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    done = await asyncio.to_thread(kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert done.returncode == 0, done.stderr
    kubeconfig = await sa_kubeconfig(kube_namespace, f"{release}-kubeferry")

    # The Deployment's arguments as the chart renders them, with loopback ports.
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    gateway_args = [a for a in args if a.startswith("--gateway")]
    assert len(gateway_args) == 4, args
    port, admin_port = free_port(), free_port()
    log = await controller_process(
        {"POD_NAMESPACE": kube_namespace},  # the downward API value the chart sets
        "--kubeconfig", str(kubeconfig), "--host=127.0.0.1",
        f"--port={port}", f"--admin-port={admin_port}", *gateway_args,
    )  # fmt: skip

    def tail() -> str:
        text: str = log.read_text()
        return text[-4000:]

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
            raise AssertionError(f"not ready; log:\n{tail()}") from None

    gateway_class = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": release},
        "spec": {"controllerName": controller_name},
    }
    gateway = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": kube_namespace},
        "spec": {
            "gatewayClassName": release,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
        },
    }
    done = await asyncio.to_thread(
        kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all([gateway_class, gateway])
    )
    assert done.returncode == 0, done.stderr

    async def get(*what: str) -> dict[str, Any]:
        done = await asyncio.to_thread(kubectl, "get", *what, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    async def class_accepted() -> bool:
        found = condition(await get(f"gatewayclasses.{GROUP}", release), "Accepted")
        return found is not None and found["status"] == "True"

    async def gateway_programmed() -> bool:
        obj = await get(f"gateways.{GROUP}", "edge", "-n", kube_namespace)
        found = condition(obj, "Programmed")
        return bool(obj.get("status", {}).get("addresses")) and (
            found is not None and found["status"] == "True"
        )

    checks = (
        (class_accepted, "GatewayClass Accepted"),
        (gateway_programmed, "Gateway Programmed with an address"),
    )
    for check, what in checks:
        try:
            await eventually(check, timeout=60, interval=0.5, message=what)
        except AssertionError:
            raise AssertionError(f"{what} never came; log:\n{tail()}") from None

    # The address is the ClusterIP of the Service the controller made in its namespace.
    services = await get("services", "-n", kube_namespace, "-l",
                         f"gateway.kubeferry.io/namespace={kube_namespace}")  # fmt: skip
    (service,) = services["items"]
    obj = await get(f"gateways.{GROUP}", "edge", "-n", kube_namespace)
    assert obj["status"]["addresses"][0]["value"] == service["spec"]["clusterIP"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, gateway_port)]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert "forbidden" not in log.read_text().lower(), tail()
