"""`kubeferry controller` as a real child process against the real control plane.

The controller's integration tests run the `Controller` class in the test's event loop; these run
the installed console script, so what they add is everything around that class: flag parsing,
credentials from a kubeconfig, settings from KUBEFERRY_* variables, the JSON log on stdout, the
admin port, signal handling and the exit code. Traffic goes to loopback only; the controller
itself reaches the stand-in pods, which live in network namespaces this session made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from tests.integration.controller.support import (
    create_service,
    enrolled,
    get,
    serving,
)
from tests.kube.controlplane import ControlPlane
from tests.kube.pods import StandInPod, StandInPods
from tests.kube.wait import eventually
from tests.support.ports import free_port

pytestmark = [pytest.mark.kube, pytest.mark.integration]

KUBEFERRY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubeferry"
START_LIMIT_SECONDS = 60.0
STOP_LIMIT_SECONDS = 30.0
# Enough that a timeout on a healthy run means a hang, short enough not to stall the suite.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class ControllerProcess:
    """A running `kubeferry controller`; `lines` are its stdout lines, parsed as JSON."""

    process: asyncio.subprocess.Process
    admin_port: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self.process.returncode is None else f"exit {self.process.returncode}"
        return f"<ControllerProcess pid={self.process.pid} {state}: {len(self.lines)} lines>"

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    def tail(self, count: int = 40) -> str:
        return "\n".join(json.dumps(line) for line in self.lines[-count:])

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        """Until GET /readyz on the admin port answers 200; fails at once if the process exits."""

        async def ready() -> None:
            assert self.process.returncode is None, f"controller exited:\n{self.tail()}"
            try:
                async with session.get(f"http://127.0.0.1:{self.admin_port}/readyz") as response:
                    status = response.status
            except aiohttp.ClientError as error:
                raise AssertionError(f"/readyz: {error!r}\n{self.tail()}") from None
            assert status == 200, f"/readyz answered {status}\n{self.tail()}"

        await eventually(ready, timeout_seconds=START_LIMIT_SECONDS)

    async def backends(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"http://127.0.0.1:{self.admin_port}/backends") as response:
            assert response.status == 200
            described: list[dict[str, Any]] = await response.json()
            return described

    async def terminate(self) -> int:
        """SIGTERM, then the exit code; raises TimeoutError past STOP_LIMIT_SECONDS."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), STOP_LIMIT_SECONDS)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, STOP_LIMIT_SECONDS)
        return code

    async def kill(self) -> None:
        """Teardown: whatever state the test left it in, the process is gone afterwards."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


StartProcess = Callable[..., Awaitable[ControllerProcess]]


async def _read_lines(running: ControllerProcess) -> None:
    stdout = running.process.stdout
    assert stdout is not None
    async for raw in stdout:
        try:
            line = json.loads(raw)
        except ValueError:
            line = {"event": "text", "message": raw.decode(errors="replace")}
        running.lines.append(line if isinstance(line, dict) else {"event": "text", "value": line})


@pytest.fixture
async def controller_process(control_plane: ControlPlane) -> AsyncIterator[StartProcess]:
    """`await start(*args)`: `kubeferry controller --kubeconfig <admin> --admin-port <free>
    ARGS` as a child process with its admin port on loopback; killed after the test."""
    started: list[ControllerProcess] = []

    async def start(*args: str) -> ControllerProcess:
        admin_port = free_port()
        # Only the settings the test names: a KUBEFERRY_* or POD_NAMESPACE of the caller's
        # shell must not change what is tested.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KUBEFERRY_") and k not in ("POD_NAMESPACE", "KUBECONFIG")
        }
        env |= {"KUBEFERRY_ADMIN_HOST": "127.0.0.1", "KUBEFERRY_HEALTH__INTERVAL_SECONDS": "1"}
        process = await asyncio.create_subprocess_exec(
            str(KUBEFERRY), "controller",
            "--kubeconfig", str(control_plane.kubeconfig),
            "--admin-port", str(admin_port),
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        running = ControllerProcess(process, admin_port)
        running.reader = asyncio.create_task(_read_lines(running))
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in reversed(started):
            await running.kill()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # trust_env=False: never route loopback requests through an environment proxy.
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, trust_env=False) as session:
        yield session


async def _pods(pods: StandInPods, namespace: str, names: tuple[str, ...]) -> dict[str, StandInPod]:
    return {name: await pods.create(namespace, name, {"app": "web"}) for name in names}


@pytest.mark.timeout(180)
async def test_ingress_process_routes_by_host_logs_json_and_exits_cleanly(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    controller_process: StartProcess,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    pods = await _pods(stand_in_pods, ns, ("web-a", "web-b"))
    await create_service(kube_api, ns, "web", app="web", annotations=enrolled("shop.test"))
    port = free_port()
    controller = await controller_process(
        "--namespace", ns, "--host", "127.0.0.1", "--port", str(port)
    )
    await controller.wait_ready(http)

    await serving(http, port, {"web-a", "web-b"}, host="shop.test")
    status, _ = await get(http, port, host="elsewhere.test")
    assert status == 404

    addresses = {f"{pod.ip}:{pod.port}" for pod in pods.values()}

    async def logged() -> None:
        assert controller.events("sync"), controller.tail()
        access = controller.events("access")
        served = {(a["upstream"], a["backend"]) for a in access if a["status"] == 200}
        assert served == {(f"{ns}/web", address) for address in addresses}, controller.tail()
        assert any(a["status"] == 404 and a["upstream"] == "" for a in access), controller.tail()

    await eventually(logged)
    assert [line for line in controller.lines if line.get("event") == "text"] == []

    (upstream,) = [u for u in await controller.backends(http) if u["upstream"] == f"{ns}/web"]
    assert {e["address"] for e in upstream["endpoints"]} == addresses

    assert await controller.terminate() == 0
    assert controller.events("stopped"), controller.tail()


@pytest.mark.timeout(180)
async def test_sidecar_process_serves_its_upstream_and_drops_an_unready_pod(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    controller_process: StartProcess,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    pods = await _pods(stand_in_pods, ns, ("web-a", "web-b"))
    await create_service(kube_api, ns, "web", app="web")  # not enrolled: sidecar ignores that
    port = free_port()
    controller = await controller_process("--namespace", ns, "--upstream", f"web={port}")
    await controller.wait_ready(http)

    await serving(http, port, {"web-a", "web-b"})
    assert [u["upstream"] for u in await controller.backends(http)] == [f"{ns}/web"]

    await stand_in_pods.set_ready(pods["web-b"], False)
    await serving(http, port, {"web-a"})

    assert await controller.terminate() == 0


@pytest.mark.timeout(180)
async def test_bad_annotation_is_logged_and_warned_and_the_service_still_served(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    controller_process: StartProcess,
    http: aiohttp.ClientSession,
) -> None:
    ns = kube_namespace
    await _pods(stand_in_pods, ns, ("web-a", "web-b"))
    annotations = enrolled("shop.test", **{"kubeferry.io/health-interval": "banana"})
    await create_service(kube_api, ns, "web", app="web", annotations=annotations)
    port = free_port()
    controller = await controller_process(
        "--namespace", ns, "--host", "127.0.0.1", "--port", str(port)
    )
    await controller.wait_ready(http)

    async def logged() -> dict[str, Any]:
        lines = [
            line
            for line in controller.events("invalid_annotation")
            if line.get("service") == "web" and line.get("namespace") == ns
        ]
        assert lines, controller.tail()
        return lines[0]

    line = await eventually(logged)
    assert line["annotation"] == "kubeferry.io/health-interval"
    assert line["value"] == "banana"
    assert line["blocking"] is False
    # The fallback is the process's own default, set through KUBEFERRY_HEALTH__INTERVAL_SECONDS.
    assert line["detail"].endswith("using the default 1.0s"), line

    core = client.CoreV1Api(kube_api)

    async def warned() -> None:
        events = (await core.list_namespaced_event(ns)).items
        matching = [
            e
            for e in events
            if e.involved_object.kind == "Service"
            and e.involved_object.name == "web"
            and e.reason == "InvalidAnnotation"
            and e.type == "Warning"
            and "kubeferry.io/health-interval" in (e.message or "")
            and "banana" in (e.message or "")
        ]
        assert matching, [(e.involved_object.name, e.reason, e.message) for e in events]

    await eventually(warned)

    await serving(http, port, {"web-a", "web-b"}, host="shop.test")
    assert await controller.terminate() == 0
