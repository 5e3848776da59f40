"""Helpers for the controller's integration tests: Services by annotation, an ingress
controller over stand-in pods, requests through the controller's loopback listener, bounded
traffic, a cuttable TCP path to the API server and etcd compaction."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes_asyncio import client

from controller.app import Controller, ControllerOptions
from controller.watch import WatchTiming
from tests.kube.manifests import body
from tests.kube.pods import StandInPod, StandInPods
from tests.kube.wait import eventually

if TYPE_CHECKING:  # the conftest imports this module
    from tests.integration.controller.conftest import StartController

# Quick reconnects: the tests restart and cut the API server and must not wait 30 s backoffs.
TEST_WATCH_TIMING = WatchTiming(
    server_timeout_seconds=60,
    server_timeout_jitter_seconds=5,
    inactivity_slack_seconds=15,
    connect_timeout_seconds=3,
    backoff_initial_seconds=0.2,
    backoff_max_seconds=2.0,
    backoff_reset_after_seconds=10,
)


async def create_service(
    api: client.ApiClient,
    namespace: str,
    name: str,
    *,
    app: str,
    annotations: Mapping[str, str] | None = None,
    port: int = 80,
    target_port: int = 8080,
) -> None:
    await client.CoreV1Api(api).create_namespaced_service(
        namespace,
        body(
            {
                "metadata": {"name": name, "annotations": dict(annotations or {})},
                "spec": {
                    "selector": {"app": app},
                    "ports": [{"name": "http", "port": port, "targetPort": target_port}],
                },
            }
        ),
    )


async def annotate(
    api: client.ApiClient, namespace: str, name: str, annotations: Mapping[str, str | None]
) -> None:
    """Strategic-merge the annotations; None removes one."""
    await client.CoreV1Api(api).patch_namespaced_service(
        name, namespace, body({"metadata": {"annotations": dict(annotations)}})
    )


def enrolled(host: str, **more: str) -> dict[str, str]:
    return {"kubeferry.io/enabled": "true", "kubeferry.io/host": host, **more}


async def ingress_over_pods(
    api: client.ApiClient,
    namespace: str,
    pods: StandInPods,
    start_controller: StartController,
    *,
    names: tuple[str, ...],
    host: str,
) -> tuple[Controller, dict[str, StandInPod]]:
    """Stand-in pods `names` (label app=web), the Service `web` enrolled for `host`, and a
    started ingress controller watching the namespace; in that order."""
    made = {name: await pods.create(namespace, name, {"app": "web"}) for name in names}
    await create_service(api, namespace, "web", app="web", annotations=enrolled(host))
    controller = await start_controller(ControllerOptions("ingress", namespaces=(namespace,)))
    return controller, made


async def get(
    session: aiohttp.ClientSession, port: int, path: str = "/", *, host: str | None = None
) -> tuple[int, str]:
    """One GET through the controller's listener on loopback; (status, body)."""
    headers = {"Host": host} if host else {}
    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response:
        return response.status, await response.text()


async def served_by(
    session: aiohttp.ClientSession,
    port: int,
    path: str = "/",
    *,
    host: str | None = None,
    requests: int = 20,
) -> Counter[str]:
    """Which pods answered `requests` GETs (non-200 answers count as `<status>`, a GET the
    client gave up on as `<timeout>`: like a 502, a sign the state has not settled yet)."""
    seen: Counter[str] = Counter()
    for _ in range(requests):
        try:
            status, text = await get(session, port, path, host=host)
        except TimeoutError:
            seen["<timeout>"] += 1
            continue
        seen[text if status == 200 else f"<{status}>"] += 1
    return seen


async def serving(
    session: aiohttp.ClientSession,
    port: int,
    expected: set[str],
    *,
    host: str | None = None,
    path: str = "/",
) -> None:
    """Wait until the pods answering (4 GETs per expected pod) are exactly `expected`."""

    async def check() -> None:
        seen = await served_by(session, port, path, host=host, requests=4 * max(1, len(expected)))
        assert set(seen) == expected

    await eventually(check)


@dataclass
class Traffic:
    """Requests in a loop until stopped, bounded in count and time; records every outcome."""

    session: aiohttp.ClientSession
    port: int
    host: str | None = None
    max_requests: int = 5000
    max_seconds: float = 120.0
    interval_seconds: float = 0.01
    ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                status, text = await get(self.session, self.port, host=self.host)
            except aiohttp.ClientError as error:
                self.failures.append(repr(error))
            else:
                if status == 200:
                    self.ok[text] += 1
                else:
                    self.failures.append(f"{status}: {text[:200]}")
            await asyncio.sleep(self.interval_seconds)

    @property
    def total(self) -> int:
        return sum(self.ok.values()) + len(self.failures)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


class Forwarder:
    """A TCP forwarder on loopback to the API server, so a test can cut one controller off
    while the API server stays up for everyone else. `cut()` drops every connection and
    refuses new ones until `restore()`."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self.port = 0

    async def start(self) -> Forwarder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.close()

    def restore(self) -> None:
        self._cut = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def compact_etcd(etcd_url: str) -> int:
    """Compact etcd's history up to its current revision, through etcd's gRPC-gateway JSON
    API (`POST /v3/kv/compaction`), so a watch from an older resourceVersion that reaches etcd
    gets 410 Gone. Returns the revision."""
    assert etcd_url.startswith("http://127.0.0.1:"), "etcd of the test control plane only"
    async with aiohttp.ClientSession() as session:
        key = base64.b64encode(b"/registry/").decode()
        async with session.post(
            f"{etcd_url}/v3/kv/range", json={"key": key, "limit": 1, "keys_only": True}
        ) as response:
            response.raise_for_status()
            answer: dict[str, Any] = await response.json()
        revision = int(answer["header"]["revision"])
        async with session.post(
            f"{etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True}
        ) as response:
            response.raise_for_status()
    return revision
