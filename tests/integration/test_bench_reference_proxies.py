"""The proxy section's reference rows run for real: bench.bare_proxy with either upstream
client, in front of a real nginx, answers keep-alive requests with the backend's answer, and
bench.aiohttp_floor answers by itself."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from tests.integration.proxy.nginx_backend import NginxBackend
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[NginxBackend]:
    backend = NginxBackend("backend-a", port=free_port(), workdir=tmp_path / "nginx")
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def serve(module: str, args: Sequence[str]) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--port",
        str(port),
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}/"


async def answers(url: str, count: int) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession(trust_env=False) as session:

        async def up() -> bool:
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientConnectionError:
                return False  # not listening yet
            return True

        await eventually(up, timeout=15)
        got = []
        for _ in range(count):  # one keep-alive connection: the pooled upstream is reused
            async with session.get(url) as response:
                got.append((response.status, await response.text()))
        return got


async def stop(process: asyncio.subprocess.Process) -> int:
    process.terminate()
    return await asyncio.wait_for(process.wait(), 10)


@pytest.mark.parametrize("client", ["kubeferry", "minimal"])
async def test_the_bare_proxy_relays_the_backends_answers(nginx: NginxBackend, client: str) -> None:
    process, url = await serve(
        "bench.bare_proxy", ["--backend", str(nginx.port), "--client", client]
    )
    try:
        got = await answers(url, 20)
    finally:
        returncode = await stop(process)
    assert got == [(200, "backend-a\n")] * 20
    assert returncode == 0  # SIGTERM is a clean stop
    assert len([r for r in nginx.requests() if r[0] == "GET"]) >= 20


async def test_the_aiohttp_floor_answers_by_itself() -> None:
    process, url = await serve("bench.aiohttp_floor", [])
    try:
        got = await answers(url, 5)
    finally:
        returncode = await stop(process)
    assert got == [(200, "hello from backend 1\n")] * 5
    assert returncode == 0
