"""Stand-in pods: the kubelet's part, played by the test process.

There is no kubelet, so this helper does what one would: it registers a Node, and for each Pod it
creates the Pod object bound to that node, starts a real HTTP backend (``tests.kube.backend``) in
the pod's own network namespace at a real pod address, and reports the pod's status (phase, IPs,
Ready condition) through the ``pods/status`` subresource. The real EndpointSlice controller then
publishes the slices, exactly as it would in a cluster.

Every state a controller must handle is one call away: not ready (``set_ready``), terminating
(``terminate``: a graceful delete that, with no kubelet to finish it, stays terminating), a dead
process behind a ready pod (``kill_backend``), a partition (``cut_network``), and a clean delete.
``close()`` force-deletes the pods and removes every namespace and interface the helper made.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from tests.kube import processes
from tests.kube.manifests import body
from tests.kube.netns import PodLink, PodNetwork

REPO_ROOT = Path(__file__).resolve().parents[2]
STAND_IN_IMAGE = "kubeferry.local/stand-in-backend:none"  # never pulled: no kubelet
ZONE = "kf-zone-a"


@dataclass(frozen=True, slots=True)
class StandInPod:
    """A Pod object plus the backend process and network namespace that stand in for it."""

    namespace: str
    name: str
    ip: str
    port: int
    link: PodLink

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StandInPods:
    """Creates and drives stand-in pods on one Node through the admin client ``api``."""

    def __init__(
        self, api: client.ApiClient, network: PodNetwork, *, node_name: str, log_dir: Path
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._network = network
        self.node_name = node_name
        self._log_dir = log_dir
        # Mutable state: pods this helper still owns, and the backend process of each
        # (absent while killed). Keys are (namespace, name).
        self._pods: dict[tuple[str, str], StandInPod] = {}
        self._backends: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._node_ready = False

    def __repr__(self) -> str:
        return f"<StandInPods node={self.node_name}: {len(self._pods)} pods>"

    # --- the pod lifecycle ----------------------------------------------------------------------

    async def create(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        *,
        port: int = 8080,
        ready: bool = True,
    ) -> StandInPod:
        """A running pod with a live backend on ``port``, reported ``ready`` (or not yet)."""
        await self._ensure_node()
        link = await asyncio.to_thread(self._network.add_pod)
        pod = StandInPod(namespace, name, str(link.address), port, link)
        self._pods[(namespace, name)] = pod
        await self._create_pod_object(pod, labels)
        await self.restart_backend(pod)
        await self._patch_status(pod, ready=ready, started=True)
        return pod

    async def set_ready(self, pod: StandInPod, ready: bool) -> None:
        """Reports the Ready condition, as the kubelet does when a readiness probe flips."""
        await self._patch_status(pod, ready=ready)

    async def terminate(self, pod: StandInPod, *, grace_period_seconds: int = 3600) -> None:
        """Graceful delete: the pod gets a deletionTimestamp and, with no kubelet to confirm the
        shutdown, stays terminating (its backend keeps serving) until ``delete``."""
        await self._core.delete_namespaced_pod(
            pod.name, pod.namespace, grace_period_seconds=grace_period_seconds
        )

    async def kill_backend(self, pod: StandInPod) -> None:
        """SIGKILLs the backend; the Pod object is untouched (a crash the kubelet has not seen)."""
        process = self._backends.pop((pod.namespace, pod.name), None)
        if process is not None:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def restart_backend(self, pod: StandInPod) -> None:
        """(Re)starts the backend in the pod's namespace and waits until it accepts connections."""
        await self.kill_backend(pod)
        log = self._log_dir / f"backend-{pod.namespace}-{pod.name}.log"
        backend = ["-m", "tests.kube.backend", "--port", str(pod.port), "--name", pod.name]
        argv = pod.link.exec_argv([sys.executable, *backend])
        process = await asyncio.to_thread(processes.spawn, argv, log_path=log, cwd=REPO_ROOT)
        self._backends[(pod.namespace, pod.name)] = process
        await _wait_listening(pod, process, log)

    async def cut_network(self, pod: StandInPod) -> None:
        """The pod keeps running and stays ready in the API, but no packet reaches it."""
        await asyncio.to_thread(self._network.cut, pod.link)

    async def restore_network(self, pod: StandInPod) -> None:
        await asyncio.to_thread(self._network.restore, pod.link)

    async def delete(self, pod: StandInPod) -> None:
        """Stops the backend, removes the pod's network, and deletes the Pod object at once."""
        await self.kill_backend(pod)
        self._pods.pop((pod.namespace, pod.name), None)
        await asyncio.to_thread(self._network.remove_pod, pod.link)
        try:
            await self._core.delete_namespaced_pod(pod.name, pod.namespace, grace_period_seconds=0)
        except client.ApiException as e:
            if e.status != 404:
                raise

    async def close(self) -> None:
        """Deletes every pod still owned; keeps going past failures and raises the first."""
        first_error: BaseException | None = None
        for pod in list(self._pods.values()):
            try:
                await self.delete(pod)
            except Exception as e:  # cleanup boundary: finish the rest, then report
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    # --- what the kubelet would do --------------------------------------------------------------

    async def _ensure_node(self) -> None:
        if self._node_ready:
            return
        node = {
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    # The EndpointSlice controller copies the node's zone into each endpoint.
                    "topology.kubernetes.io/zone": ZONE,
                },
            }
        }
        try:
            await self._core.create_node(body(node))
        except client.ApiException as e:
            if e.status != 409:  # another test of this session registered it already
                raise
        now = _now()
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "stand-in node played by the test process",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": str(self._network.gateway)},
                    {"type": "Hostname", "address": self.node_name},
                ],
            }
        }
        await self._core.patch_node_status(self.node_name, status)
        self._node_ready = True

    async def _create_pod_object(self, pod: StandInPod, labels: dict[str, str]) -> None:
        manifest = {
            "metadata": {"name": pod.name, "labels": labels},
            "spec": {
                "nodeName": self.node_name,
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "backend",
                        "image": STAND_IN_IMAGE,
                        "ports": [{"name": "http", "containerPort": pod.port, "protocol": "TCP"}],
                    }
                ],
            },
        }
        # The ServiceAccount admission plugin rejects pods until the namespace's default
        # ServiceAccount exists, which the controller manager creates moments after the namespace.
        deadline = time.monotonic() + 30
        while True:
            try:
                await self._core.create_namespaced_pod(pod.namespace, body(manifest))
                return
            except client.ApiException as e:
                if e.status != 403 or "service account" not in str(e.body):
                    raise
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def _patch_status(self, pod: StandInPod, *, ready: bool, started: bool = False) -> None:
        def condition(kind: str, value: bool) -> dict[str, str]:
            status = "True" if value else "False"
            return {"type": kind, "status": status, "lastTransitionTime": _now()}

        status: dict[str, Any] = {
            "conditions": [condition("Ready", ready), condition("ContainersReady", ready)]
        }
        if started:
            gateway = str(self._network.gateway)
            status |= {
                "phase": "Running",
                "hostIP": gateway,
                "hostIPs": [{"ip": gateway}],
                "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}],
                "startTime": _now(),
            }
            status["conditions"] += [
                condition("PodScheduled", True),
                condition("Initialized", True),
            ]
        # Strategic merge: conditions merge by type, so a readiness flip leaves the others alone.
        await self._core.patch_namespaced_pod_status(pod.name, pod.namespace, {"status": status})


async def _wait_listening(pod: StandInPod, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"backend of {pod.name} exited; its log is {log}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(pod.ip, pod.port), 1)
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend of {pod.name} not listening on {pod.url}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
