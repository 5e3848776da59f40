"""`kubeferry proxy --tls-cert FILE --tls-key FILE --tls-port PORT` as a real process (uvloop,
signals, its own log): files replaced or SIGHUP reload the certificate without a restart,
broken input is logged once and the last good certificate kept, a broken start exits 2
naming the field, and without files a self-signed certificate is served."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.proxy.conftest import StartBackends
from tests.integration.proxy.subprocess_proxy import (
    ROOT,
    ProxyProcess,
    proxy_command,
    spawn_proxy,
)
from tests.integration.proxy.tls_client import TlsConnection, run_tool, served_chain
from tests.support.ports import free_port
from tests.support.tls_certs import Leaf, TestCA, other_key_pem
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

# What the issue promises: new handshakes get a replaced certificate within 2 s.
ROTATION_LIMIT_SECONDS = 2.0
HOST = "shop.example.test"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


Spawn = Callable[..., Awaitable[tuple[ProxyProcess, int]]]


@pytest.fixture
async def spawn_tls(start_backends: StartBackends) -> AsyncIterator[Spawn]:
    started: list[ProxyProcess] = []

    async def spawn(*extra: str, env: dict[str, str] | None = None) -> tuple[ProxyProcess, int]:
        backends = await start_backends(1)
        tls_port = free_port()
        proxy = await spawn_proxy(
            [backends[0].url],
            port=free_port(),
            admin_port=free_port(),
            env=env,
            extra_args=("--tls-port", str(tls_port), *extra),
        )
        started.append(proxy)
        return proxy, tls_port

    yield spawn
    for proxy in started:
        assert await proxy.stop() == 0


async def serial_of_new_handshake(port: int) -> int:
    chain = await served_chain(port, HOST)
    return chain[0].serial_number


def assert_no_key_material(proxy: ProxyProcess, *keys: bytes) -> None:
    text = json.dumps(proxy.lines)
    for key in keys:
        for line in key.decode().splitlines()[1:-1]:
            assert line not in text


async def test_replaced_files_rotate_within_two_seconds_and_open_connections_keep_working(
    spawn_tls: Spawn, ca: TestCA, tmp_path: Path
) -> None:
    first = ca.issue(HOST)
    cert, key = first.write(tmp_path)
    proxy, port = await spawn_tls("--tls-cert", str(cert), "--tls-key", str(key))
    assert proxy.events("tls_certificate_loaded")[0]["serial"] == f"{first.serial:x}"
    ca_file = ca.write(tmp_path)
    held = await TlsConnection.open(port, HOST, ca_file)
    try:
        assert (await held.get("/", HOST))[0] == 200

        second = ca.issue(HOST)
        second.write(tmp_path)  # both files renamed over, as a Secret volume swaps them
        started = time.monotonic()

        async def rotated() -> bool:
            return await serial_of_new_handshake(port) == second.serial

        await eventually(rotated, timeout=ROTATION_LIMIT_SECONDS, interval=0.05)
        took = time.monotonic() - started
        assert proxy.events("tls_certificate_reloaded")[0]["serial"] == f"{second.serial:x}"

        # The connection made before the change still works, with its certificate.
        status, _, body = await held.get("/", HOST)
        assert (status, body) == (200, b"backend-1")
        assert held.peer_serial() == first.serial
    finally:
        await held.close()
    assert took < ROTATION_LIMIT_SECONDS
    assert_no_key_material(proxy, first.key_pem, second.key_pem)


async def test_sighup_reloads_at_once(spawn_tls: Spawn, ca: TestCA, tmp_path: Path) -> None:
    first = ca.issue(HOST)
    cert, key = first.write(tmp_path)
    # Polling far too slow to be what reloads it within the test.
    proxy, port = await spawn_tls(
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        env={"KUBEFERRY_TLS__RELOAD_INTERVAL_SECONDS": "60"},
    )
    # Unchanged files: the signal is answered with a line saying so.
    proxy.process.send_signal(signal.SIGHUP)
    await eventually(lambda: proxy.events("tls_certificate_unchanged"), timeout=5.0)

    second = ca.issue(HOST)
    second.write(tmp_path)
    proxy.process.send_signal(signal.SIGHUP)

    async def rotated() -> bool:
        return await serial_of_new_handshake(port) == second.serial

    await eventually(rotated, timeout=ROTATION_LIMIT_SECONDS, interval=0.05)
    assert proxy.process.returncode is None


async def test_broken_input_is_logged_once_and_the_last_good_certificate_stays(
    spawn_tls: Spawn, ca: TestCA, tmp_path: Path
) -> None:
    good = ca.issue(HOST)
    cert, key = good.write(tmp_path)
    proxy, port = await spawn_tls(
        "--tls-cert", str(cert), "--tls-key", str(key),
        env={"KUBEFERRY_TLS__RELOAD_INTERVAL_SECONDS": "0.2"},
    )  # fmt: skip
    wrong_key = other_key_pem()
    expired = ca.issue(HOST, expired=True)

    def replace(path: Path, data: bytes) -> None:
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)

    def replace_both(chain: bytes, key_pem: bytes) -> None:
        # A check may fall between the two renames (good chain, good key: the pair being
        # served, so no change and no line); either way one line for the wrong key.
        replace(cert, chain)
        replace(key, key_pem)

    steps: list[tuple[str, Callable[[], None], str]] = [
        ("bad PEM", lambda: replace(cert, b"-----BEGIN CERTIFICATE-----\nxx\n"), "tls.cert_file"),
        ("wrong key", lambda: replace_both(good.chain_pem, wrong_key), "tls.key_file"),
        ("expired", lambda: Leaf.write(expired, tmp_path), "certificate expired at"),
        ("missing key", lambda: key.unlink(), "No such file or directory"),
    ]  # fmt: skip
    for number, (name, act, expected) in enumerate(steps, start=1):
        act()

        def logged(count: int = number) -> bool:
            return len(proxy.events("tls_certificate_rejected")) >= count

        await eventually(logged, timeout=5.0, message=name)
        line = proxy.events("tls_certificate_rejected")[-1]
        assert expected in str(line["error"]), (name, line)
        assert line["level"] == "error"
        assert line["serving_serial"] == f"{good.serial:x}"
        assert await serial_of_new_handshake(port) == good.serial, name
    # Each problem was logged once, though the files were re-read many times meanwhile.
    await asyncio.sleep(0.5)
    assert len(proxy.events("tls_certificate_rejected")) == len(steps)
    assert proxy.events("tls_certificate_reloaded") == []
    assert_no_key_material(proxy, good.key_pem, wrong_key, expired.key_pem)

    # A good pair again: served, without a restart.
    fixed = ca.issue(HOST)
    fixed.write(tmp_path)

    async def recovered() -> bool:
        return await serial_of_new_handshake(port) == fixed.serial

    await eventually(recovered, timeout=ROTATION_LIMIT_SECONDS + 1.0)


async def _start_and_fail(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *proxy_command(
            "proxy", "--host", "127.0.0.1", "--port", str(free_port()), "--admin-port", "0",
            "--backend", "http://127.0.0.1:9", "--tls-port", str(free_port()), *args,
        ),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(20):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing cert", "tls.cert_file {dir}/nope.crt: No such file or directory"),
        ("bad PEM", "tls.cert_file {dir}/tls.crt: not a PEM certificate chain"),
        ("wrong key", "tls.key_file {dir}/tls.key: does not match the first certificate"),
        ("expired", "tls.cert_file {dir}/tls.crt: certificate expired at"),
        ("key without cert", "tls.cert_file is required with the other one"),
    ],
)
async def test_broken_tls_config_at_start_exits_2_naming_the_field(
    ca: TestCA, tmp_path: Path, case: str, message: str
) -> None:
    leaf = ca.issue(HOST, expired=case == "expired")
    cert, key = leaf.write(tmp_path)
    args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    if case == "missing cert":
        args[1] = str(tmp_path / "nope.crt")
    elif case == "bad PEM":
        cert.write_text("hello\n")
    elif case == "wrong key":
        key.write_bytes(other_key_pem())
    elif case == "key without cert":
        args = ["--tls-key", str(key)]
    code, out, err = await _start_and_fail(*args)
    assert code == 2
    assert message.format(dir=tmp_path) in err
    assert '"listening"' not in out  # refused before serving
    for line in leaf.key_pem.decode().splitlines()[1:-1]:
        assert line not in err + out


async def test_without_files_a_self_signed_certificate_and_redirect_and_hsts(
    spawn_tls: Spawn,
) -> None:
    proxy, port = await spawn_tls(
        "--https-redirect",
        "--hsts-max-age",
        "31536000",
        env={"KUBEFERRY_TLS__ENABLED": "true"},
    )
    assert len(proxy.events("tls_self_signed")) == 1
    chain = await served_chain(port, None)
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert f"{chain[0].serial_number:x}" == proxy.events("tls_self_signed")[0]["serial"]

    code, out, err = await run_tool(
        "curl", "--silent", "--show-error", "--max-time", "10", "--include",
        "--header", "Host: localhost:8080", f"{proxy.url}/a?b=1",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("HTTP/1.1 308")
    assert f"Location: https://localhost:{port}/a?b=1\r\n" in out
    assert "Strict-Transport-Security" not in out

    code, out, err = await run_tool(
        "curl", "--silent", "--show-error", "--max-time", "10", "--include", "--insecure",
        "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("HTTP/1.1 200")
    assert "Strict-Transport-Security: max-age=31536000\r\n" in out
