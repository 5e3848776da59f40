"""The container image, built for real by hack/docker-build.sh and run with docker.

A cold build (Docker engine install, debootstrap of the base image) takes a few minutes; later
builds reuse the engine, the base image and the pip cache and take about half a minute. The
build runs once per session, in the fixture, under this module's generous timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.deploy.conftest import ROOT
from tests.support.backends import Backend
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

IMAGE = "kubeferry:dev"


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


async def docker_async(*args: str, limit_seconds: float = 120) -> tuple[int, str, str]:
    """docker without blocking the event loop (the test's backend must keep answering)."""
    process = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(limit_seconds):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def image() -> str:
    """Build kubeferry:dev with the project's own script, exactly as `make docker` does."""
    done = subprocess.run(
        [str(ROOT / "hack" / "docker-build.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "KUBEFERRY_IMAGE": IMAGE},
    )
    if done.returncode != 0:
        pytest.fail(f"hack/docker-build.sh failed:\n{done.stderr[-5000:]}", pytrace=False)
    return IMAGE


@pytest.fixture
def container_name() -> Iterator[str]:
    """A unique container name, removed after the test whatever state it is in."""
    name = f"kubeferry-test-{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        docker("rm", "--force", name)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend("container-test-backend")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def test_image_metadata(image: str) -> None:
    done = docker("image", "inspect", image)
    assert done.returncode == 0, done.stderr
    (info,) = json.loads(done.stdout)
    config = info["Config"]
    assert config["Entrypoint"] == ["kubeferry"]
    assert config["Cmd"] == ["controller"]
    assert config["User"] == "65532:65532"
    assert set(config["ExposedPorts"]) == {"3000/tcp", "9000/tcp"}
    assert any(item.startswith("PATH=/opt/kubeferry/bin:") for item in config["Env"])


def test_help_runs_as_non_root(image: str) -> None:
    done = docker("run", "--rm", "--network", "host", image, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("proxy", "controller", "demo"):
        assert command in done.stdout
    who = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image)
    assert who.stdout.startswith("uid=65532(kubeferry) gid=65532(kubeferry)"), who.stdout


def test_controller_is_the_default_command(image: str) -> None:
    # No arguments: `kubeferry controller --help` shows the default command is the controller.
    done = docker("run", "--rm", "--network", "none", image, "controller", "--help")
    assert done.returncode == 0, done.stderr
    assert "--upstream" in done.stdout


async def test_proxy_in_the_container_forwards_to_a_loopback_backend(
    image: str, backend: Backend, container_name: str
) -> None:
    port, admin_port = free_port(), free_port()
    # As the chart runs it: read-only root filesystem with a tmpfs /tmp, non-root (the image's
    # user), all capabilities dropped.
    code, _, err = await docker_async(
        "run", "--detach", "--name", container_name, "--network", "host",
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        image, "proxy",
        "--backend", backend.url,
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
    )  # fmt: skip
    assert code == 0, err

    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            try:
                async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        try:
            await eventually(ready, timeout=60, interval=0.2, message="container /readyz")
        except AssertionError:
            _, logs, logs_err = await docker_async("logs", container_name)
            raise AssertionError(f"container never became ready; logs:\n{logs}{logs_err}") from None

        async with session.get(f"http://127.0.0.1:{port}/hello") as response:
            body = await response.text()
            assert response.status == 200
            assert response.headers["X-Backend"] == backend.name
            assert body == backend.name
        assert backend.requests >= 1

    # SIGTERM reaches kubeferry as PID 1: it drains and exits 0, well before docker's SIGKILL.
    code, _, err = await docker_async("stop", "--time", "20", container_name, limit_seconds=60)
    assert code == 0, err
    code, out, err = await docker_async("wait", container_name)
    assert code == 0, err
    assert out.strip() == "0", f"exit status {out.strip()} (137 would mean SIGKILL)"


def test_dockerfile_builds_on_a_python_slim_style_base() -> None:
    """Both bases are supported: the Dockerfile must not hard-code a python location."""
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    assert "python3 -m venv /opt/kubeferry" in text
    assert "--no-index" in text
    assert Path(ROOT / ".dockerignore").read_text().split()[-2:] == ["*", "!wheels/"]
