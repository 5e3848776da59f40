"""The proxy as a real process: CLI contract, graceful shutdown, streaming memory."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.proxy.conftest import StartBackends, free_port
from tests.integration.proxy.subprocess_proxy import ROOT, proxy_command, spawn_proxy
from tests.support.waiting import eventually

GIB = 1 << 30
MIB = 1 << 20
# Allowed RSS growth over a 1 GiB transfer: buffers are bounded, so anything near the body size
# means something buffered it whole.
MAX_GROWTH_BYTES = 50 * MIB


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        proxy_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_help_documents_flags_and_environment() -> None:
    result = _run("proxy", "--help")
    assert result.returncode == 0
    for text in (
        "--backend",
        "--config",
        "--port",
        "--admin-port",
        "KUBEFERRY_BACKENDS",
        "A second SIGTERM or SIGINT",
    ):
        assert text in result.stdout
    top = _run("--help")
    assert top.returncode == 0 and "demo" in top.stdout


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (["--backend", "ftp://x:1"], {}, "backends"),
        (["--backend", "http://127.0.0.1:1", "--port", "70000"], {}, "port"),
        (
            ["--backend", "http://127.0.0.1:1"],
            {"KUBEFERRY_HEALTH__INTERVAL_SECONDS": "-1"},
            "health.interval_seconds",
        ),
        (["--backend", "http://127.0.0.1:1", "--strategy", "fastest"], {}, "strategy"),
        ([], {}, "backends"),
    ],
)
def test_invalid_setting_exits_2_naming_the_field_before_listening(
    args: list[str], env: dict[str, str], field: str
) -> None:
    import os

    port = free_port()
    result = _run(
        "proxy", "--port", str(port), "--admin-port", "0", *args, env={**os.environ, **env}
    )
    assert result.returncode == 2
    assert field in result.stderr
    # Nothing listened: the port is still free.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_sigterm_drains_in_flight_requests_then_exits_0(
    start_backends: StartBackends,
) -> None:
    backends = await start_backends(2)
    proxy = await spawn_proxy([b.url for b in backends], port=free_port(), admin_port=free_port())
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.admin_url + "/readyz") as response:
            assert response.status == 200
        slow = asyncio.create_task(client.get(proxy.url + "/slow?seconds=1.5"))
        await eventually(lambda: sum(b.requests for b in backends) == 1)  # reached a backend

        proxy.process.terminate()

        async def draining() -> bool:
            async with client.get(proxy.admin_url + "/readyz") as response:
                return response.status == 503

        await eventually(draining)  # /readyz 503 while draining, admin still up
        response = await slow
        assert response.status == 200
        assert await response.text() in {b.name for b in backends}
        response.release()
    assert await asyncio.wait_for(proxy.process.wait(), 30) == 0  # no second signal needed
    await proxy.stop()
    assert proxy.events("draining") and proxy.events("stopped")


async def test_second_sigterm_ends_the_drain_at_once_and_still_exits_0(
    start_backends: StartBackends,
) -> None:
    (backend,) = await start_backends(1)
    proxy = await spawn_proxy(
        [backend.url],
        port=free_port(),
        admin_port=free_port(),
        env={"KUBEFERRY_TIMEOUTS__DRAIN_SECONDS": "30"},
    )
    async with aiohttp.ClientSession() as client:
        slow = asyncio.create_task(client.get(proxy.url + "/slow?seconds=5"))
        await eventually(lambda: backend.requests == 1)  # in flight at the backend

        proxy.process.terminate()

        async def draining() -> bool:
            async with client.get(proxy.admin_url + "/readyz") as response:
                return response.status == 503

        await eventually(draining)  # /readyz 503 while draining: up to 30 s
        proxy.process.terminate()

        # A bound, not a speed requirement: far below the 30 s drain and the 5 s request.
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0
        with pytest.raises(aiohttp.ClientError):  # cut off, not answered
            (await slow).release()
    await proxy.stop()
    assert proxy.events("drain_forced")
    assert [line["signal"] for line in proxy.events("signal")] == ["SIGTERM", "SIGTERM"]
    assert proxy.events("stopped")


@pytest.fixture
async def memory_proxy(start_backends: StartBackends) -> AsyncIterator[object]:
    backends = await start_backends(1)
    proxy = await spawn_proxy(
        [backends[0].url],
        port=free_port(),
        admin_port=free_port(),
        env={"KUBEFERRY_LOG__ACCESS_LOG": "false"},
    )
    yield proxy
    await proxy.stop()


async def test_one_gib_down_and_up_through_the_proxy_keeps_memory_flat(
    memory_proxy: object,
) -> None:
    from tests.integration.proxy.subprocess_proxy import ProxyProcess

    assert isinstance(memory_proxy, ProxyProcess)
    proxy = memory_proxy
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client:
        async with client.get(proxy.url + "/") as warm:  # load code paths before measuring
            await warm.read()
        before = proxy.rss_bytes()

        received = 0
        async with client.get(proxy.url + f"/stream?bytes={GIB}") as response:
            assert response.status == 200
            async for chunk in response.content.iter_any():
                received += len(chunk)
        assert received == GIB
        after_download = proxy.rss_bytes()

        piece = b"u" * (256 * 1024)

        async def upload():  # type: ignore[no-untyped-def]
            for _ in range(GIB // len(piece)):
                yield piece

        async with client.post(
            proxy.url + "/upload", data=upload(), headers={"Content-Length": str(GIB)}
        ) as response:
            assert (await response.json())["bytes"] == GIB
        after_upload = proxy.rss_bytes()

    assert after_download - before < MAX_GROWTH_BYTES, (before, after_download)
    assert after_upload - before < MAX_GROWTH_BYTES, (before, after_upload)
