"""A backend that vanished or stopped answering must not hold a request for long (issue 7 §3).

The slow GET seen in test_scale_up_and_down right after pods were deleted: a pooled keep-alive
connection to a pod whose network went away without a FIN or RST. The next request on it was
written into a connection nobody acknowledges, and waited out `upstream_idle_seconds` (60 s).
Reproduced here with a stand-in pod (a network namespace this session made, tests/kube/netns)
whose link is cut after the proxy pooled a connection to it; the other backend is on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest

from proxy.settings import parse_backend
from tests.integration.proxy.conftest import RunningProxy, StartBackends, StartProxy
from tests.kube.netns import PodLink, PodNetwork
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

POD_PORT = 8080
REPO_ROOT = Path(__file__).resolve().parents[3]
# Passive failover only: a probe must not take a backend out before the request under test.
NO_PROBES = {"enabled": False}


@dataclass
class PodBackend:
    """tests.kube.backend running in a network namespace of ours; `cut()` makes it vanish."""

    network: PodNetwork
    link: PodLink
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"http://{self.link.address}:{POD_PORT}"

    async def cut(self) -> None:
        await asyncio.to_thread(self.network.cut, self.link)


@pytest.fixture
async def pod_backend(pod_network: PodNetwork) -> AsyncIterator[PodBackend]:
    link = await asyncio.to_thread(pod_network.add_pod)
    argv = [sys.executable, "-m", "tests.kube.backend", "--port", str(POD_PORT), "--name", "pod"]
    process = await asyncio.create_subprocess_exec(
        *link.exec_argv(argv),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def listening() -> bool:
            try:
                _, writer = await asyncio.open_connection(str(link.address), POD_PORT)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await eventually(listening, timeout=15)
        yield PodBackend(pod_network, link, process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.to_thread(pod_network.remove_pod, link)


@dataclass
class RawBackend:
    """A loopback HTTP/1.1 server by hand: answers keep-alive requests with `ok`, or (when
    `silent`) reads them and never answers, as a hung process would; records which of its
    connections the other side closed."""

    silent: bool = False
    port: int = 0
    requests: int = 0
    closed: int = 0  # connections the proxy closed
    _server: asyncio.Server | None = None
    _connections: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RawBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._connections.values():
            writer.close()
        # Each handler sees its connection end and returns; its writer is closed by then.
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if not head.startswith(b"GET /healthz"):
                    self.requests += 1
                if self.silent:
                    continue  # read, never answered
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._connections.pop(task, None)


@pytest.fixture
async def raw_backends() -> AsyncIterator[Callable[..., Awaitable[RawBackend]]]:
    started: list[RawBackend] = []

    async def start(*, silent: bool = False) -> RawBackend:
        backend = await RawBackend(silent=silent).start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.stop()


async def _timed_get(
    client: aiohttp.ClientSession, url: str, method: str = "GET"
) -> tuple[int, str, float]:
    started = time.monotonic()
    async with client.request(method, url, data=b"x" if method == "POST" else None) as response:
        return response.status, await response.text(), time.monotonic() - started


async def _pooled_to_both(client: aiohttp.ClientSession, proxy: RunningProxy) -> None:
    # Round robin over two: two GETs leave an idle pooled connection to each.
    for _ in range(2):
        assert (await _timed_get(client, proxy.url + "/"))[0] == 200


async def test_a_pooled_connection_to_a_vanished_peer_fails_over_within_the_tcp_user_timeout(
    pod_backend: PodBackend,
    start_backends: StartBackends,
    start_proxy: StartProxy,
    client: aiohttp.ClientSession,
) -> None:
    (live,) = await start_backends(1)
    proxy = await start_proxy(
        [pod_backend, live],  # anything with a url
        health=NO_PROBES,
        timeouts={"upstream_tcp_user_timeout_seconds": 1.0, "upstream_tcp_keepalive_seconds": 1.0},
    )
    await _pooled_to_both(client, proxy)

    await pod_backend.cut()  # no FIN, no RST: packets to the pod are dropped from now on
    answers = [await _timed_get(client, proxy.url + "/") for _ in range(4)]

    assert [(status, body) for status, body, _ in answers] == [(200, live.name)] * 4
    # Before the fix the request on the pooled connection took upstream_idle_seconds (60 s)
    # and ended in a 504; now the kernel gives up on it after the 1 s user timeout (plus a
    # retransmission interval) and the request goes to the live backend.
    assert max(seconds for _, _, seconds in answers) < 5.0
    pod = parse_backend(pod_backend.url)
    assert not proxy.plane.pool.is_healthy("default", pod)


async def test_without_the_bounds_the_vanished_peer_holds_the_request_for_the_idle_timeout(
    pod_backend: PodBackend,
    start_backends: StartBackends,
    start_proxy: StartProxy,
    client: aiohttp.ClientSession,
) -> None:
    """The bug as it was, with the kernel's defaults and a short idle timeout in place of 60 s."""
    (live,) = await start_backends(1)
    proxy = await start_proxy(
        [pod_backend, live],
        health=NO_PROBES,
        timeouts={
            "upstream_tcp_user_timeout_seconds": 0,
            "upstream_tcp_keepalive_seconds": 0,
            "upstream_idle_seconds": 2.0,
        },
    )
    await _pooled_to_both(client, proxy)

    await pod_backend.cut()
    answers = [await _timed_get(client, proxy.url + "/") for _ in range(2)]

    stuck = [seconds for status, _, seconds in answers if status == 504]
    assert len(stuck) == 1, answers  # the one that went to the pod's pooled connection
    assert stuck[0] >= 2.0


async def test_an_endpoint_that_stopped_answering_is_left_after_the_first_byte_timeout(
    raw_backends: Callable[..., Awaitable[RawBackend]],
    start_proxy: StartProxy,
    client: aiohttp.ClientSession,
) -> None:
    hung, live = await raw_backends(silent=True), await raw_backends()
    proxy = await start_proxy(
        [hung, live], health=NO_PROBES, timeouts={"upstream_first_byte_seconds": 0.5}
    )

    answers = [await _timed_get(client, proxy.url + "/") for _ in range(4)]

    assert [(status, body) for status, body, _ in answers] == [(200, "ok")] * 4
    assert hung.requests == 1  # tried once, then out of rotation
    assert 0.5 <= max(seconds for _, _, seconds in answers) < 3.0


async def test_a_post_to_an_endpoint_that_stopped_answering_is_not_sent_again(
    raw_backends: Callable[..., Awaitable[RawBackend]],
    start_proxy: StartProxy,
    client: aiohttp.ClientSession,
) -> None:
    hung, live = await raw_backends(silent=True), await raw_backends()
    proxy = await start_proxy(
        [hung, live], health=NO_PROBES, timeouts={"upstream_first_byte_seconds": 0.5}
    )

    statuses = sorted([(await _timed_get(client, proxy.url + "/", "POST"))[0] for _ in range(2)])

    assert statuses == [200, 504]
    assert (hung.requests, live.requests) == (1, 1)


async def test_idle_connections_to_an_endpoint_that_left_the_pool_are_closed_at_once(
    raw_backends: Callable[..., Awaitable[RawBackend]],
    start_proxy: StartProxy,
    client: aiohttp.ClientSession,
) -> None:
    leaving, staying = await raw_backends(), await raw_backends()
    proxy = await start_proxy([leaving, staying], health=NO_PROBES)
    await _pooled_to_both(client, proxy)
    assert leaving.closed == 0  # pooled, idle: upstream_keepalive_seconds would keep it 4 s

    spec = proxy.plane.pool.spec("default")
    assert spec is not None
    assert proxy.plane.apply({"default": replace(spec, endpoints=(parse_backend(staying.url),))})

    await eventually(lambda: leaving.closed == 1, timeout=1.0)
    assert staying.closed == 0
