"""HTTPS on a real listener: SNI selection, the served chain, verification by real clients
(Python ssl, curl --resolve to 127.0.0.1, openssl s_client -servername), rotation through
CertificateStore.replace with a keep-alive connection open, 308 redirects and HSTS.

The proxy runs in this event loop with one plain and one TLS listener over the same Router;
every client connects to 127.0.0.1 and names the server only in SNI and Host.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.app import DataPlane, Listener
from proxy.cli import standalone_upstream
from proxy.routing import Route, Router, RouteTable
from proxy.settings import load_settings
from proxy.tls.certificate import Certificate, load_certificate
from proxy.tls.store import CertificateSet, CertificateStore
from tests.integration.proxy.conftest import DEFAULTS, StartBackends
from tests.integration.proxy.tls_client import TlsConnection, run_tool, served_chain
from tests.support.backends import Backend
from tests.support.ports import free_port
from tests.support.tls_certs import NOW, Leaf, TestCA

pytestmark = pytest.mark.integration


def certificate(leaf: Leaf, source: str) -> Certificate:
    return load_certificate(leaf.chain_pem, leaf.key_pem, source=source, now=NOW)


@dataclass
class TlsProxy:
    plane: DataPlane
    store: CertificateStore
    task: asyncio.Task[int]

    @property
    def http_port(self) -> int:
        return self.plane.ports[0]

    @property
    def https_port(self) -> int:
        return self.plane.ports[1]


StartTlsProxy = Callable[..., Awaitable[TlsProxy]]


@pytest.fixture
async def start_tls_proxy() -> AsyncIterator[StartTlsProxy]:
    running: list[TlsProxy] = []

    async def start(
        backends: list[Backend], certificates: CertificateSet, routes: list[Route], **settings: Any
    ) -> TlsProxy:
        tls_port = free_port()
        loaded = load_settings(
            overrides={
                **DEFAULTS,
                "admin_port": 0,
                "tls_port": tls_port,
                "backends": tuple(b.url for b in backends),
                **settings,
            }
        )
        store = CertificateStore(certificates)
        router = Router(RouteTable.build(routes))
        plane = DataPlane(
            loaded,
            listeners=[
                Listener("127.0.0.1", 0, router),
                Listener("127.0.0.1", tls_port, router, tls=store),
            ],
        )
        plane.apply({"default": standalone_upstream(loaded)})
        task = asyncio.create_task(plane.serve())
        while not plane.ports:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        proxy = TlsProxy(plane, store, task)
        running.append(proxy)
        return proxy

    yield start
    for proxy in running:
        proxy.plane.stop()
        assert await asyncio.wait_for(proxy.task, 30) == 0


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def ca_file(ca: TestCA, tmp_path: Path) -> Path:
    return ca.write(tmp_path)


@pytest.fixture(scope="module")
def leaves(ca: TestCA) -> dict[str, Leaf]:
    return {
        "default": ca.issue("default.test"),
        "shop": ca.issue("shop.example.test"),
        "wildcard": ca.issue("*.apps.test"),
    }


@pytest.fixture
def certificate_set(leaves: dict[str, Leaf]) -> CertificateSet:
    return CertificateSet.build(
        certificate(leaves["default"], "default"),
        {
            "shop.example.test": certificate(leaves["shop"], "shop"),
            "*.apps.test": certificate(leaves["wildcard"], "wildcard"),
        },
    )


async def test_sni_picks_the_certificate_and_sends_the_chain(
    start_backends: StartBackends,
    start_tls_proxy: StartTlsProxy,
    certificate_set: CertificateSet,
    leaves: dict[str, Leaf],
    ca: TestCA,
) -> None:
    backends = await start_backends(1)
    proxy = await start_tls_proxy(backends, certificate_set, [Route("default")])
    expected = {
        "shop.example.test": leaves["shop"].serial,
        "cart.apps.test": leaves["wildcard"].serial,
        "a.b.apps.test": leaves["default"].serial,  # one label only, as clients check it
        "unknown.test": leaves["default"].serial,
        None: leaves["default"].serial,
    }
    for server_name, serial in expected.items():
        chain = await served_chain(proxy.https_port, server_name)
        assert [c.serial_number for c in chain] == [serial, ca.certificate.serial_number], (
            server_name
        )


async def test_python_client_verifies_and_is_routed_like_http(
    start_backends: StartBackends,
    start_tls_proxy: StartTlsProxy,
    certificate_set: CertificateSet,
    ca_file: Path,
) -> None:
    backends = await start_backends(1)
    proxy = await start_tls_proxy(backends, certificate_set, [Route("default")])
    connection = await TlsConnection.open(proxy.https_port, "shop.example.test", ca_file)
    try:
        assert connection.ssl_object.selected_alpn_protocol() == "http/1.1"
        assert connection.ssl_object.version() == "TLSv1.3"
        status, headers, body = await connection.get("/headers/x?y=1", "shop.example.test")
        assert status == 200
        seen = dict(json.loads(body)["headers"])
        assert seen["X-Forwarded-Proto"] == "https"
        assert seen["X-Forwarded-Host"] == "shop.example.test"
        assert json.loads(body)["raw_path"] == "/headers/x?y=1"
        assert "strict-transport-security" not in headers  # not asked for on this route
    finally:
        await connection.close()

    # TLS 1.2 clients are served too, with the same policy.
    old = await TlsConnection.open(
        proxy.https_port, "cart.apps.test", ca_file, maximum=ssl.TLSVersion.TLSv1_2
    )
    try:
        assert old.ssl_object.version() == "TLSv1.2"
        assert (await old.get("/", "cart.apps.test"))[0] == 200
    finally:
        await old.close()

    # A name the certificate does not cover fails verification on the client (the default
    # certificate is served), as it should.
    with pytest.raises(ssl.SSLCertVerificationError):
        await TlsConnection.open(proxy.https_port, "unknown.test", ca_file)


async def test_curl_with_resolve_verifies_the_chain(
    start_backends: StartBackends,
    start_tls_proxy: StartTlsProxy,
    certificate_set: CertificateSet,
    ca_file: Path,
) -> None:
    backends = await start_backends(1)
    proxy = await start_tls_proxy(backends, certificate_set, [Route("default")])
    port = proxy.https_port
    code, out, err = await run_tool(
        "curl", "--silent", "--show-error", "--max-time", "10", "--cacert", str(ca_file),
        "--resolve", f"shop.example.test:{port}:127.0.0.1",
        "--write-out", "\n%{http_code} %{ssl_verify_result} %{http_version}",
        f"https://shop.example.test:{port}/headers",
    )  # fmt: skip
    assert code == 0, err
    body, _, summary = out.rpartition("\n")
    assert summary == "200 0 1.1"
    assert dict(json.loads(body)["headers"])["X-Forwarded-Proto"] == "https"


async def test_replace_rotates_for_new_handshakes_and_open_connections_keep_working(
    start_backends: StartBackends,
    start_tls_proxy: StartTlsProxy,
    ca: TestCA,
    ca_file: Path,
    leaves: dict[str, Leaf],
) -> None:
    backends = await start_backends(1)
    first = certificate(leaves["shop"], "first")
    proxy = await start_tls_proxy(
        backends, CertificateSet.build(first, {"shop.example.test": first}), [Route("default")]
    )
    held = await TlsConnection.open(proxy.https_port, "shop.example.test", ca_file)
    try:
        assert (await held.get("/", "shop.example.test"))[0] == 200
        assert held.peer_serial() == first.serial

        rotated = certificate(ca.issue("shop.example.test"), "rotated")
        assert proxy.store.replace(CertificateSet.build(rotated, {"shop.example.test": rotated}))

        fresh = await TlsConnection.open(proxy.https_port, "shop.example.test", ca_file)
        try:
            assert fresh.peer_serial() == rotated.serial
            assert (await fresh.get("/", "shop.example.test"))[0] == 200
        finally:
            await fresh.close()
        # The connection made before the change keeps its certificate and keeps working.
        status, _, body = await held.get("/", "shop.example.test")
        assert (status, body) == (200, b"backend-1")
        assert held.peer_serial() == first.serial
    finally:
        await held.close()


async def test_redirect_to_https_and_hsts_per_route(
    start_backends: StartBackends,
    start_tls_proxy: StartTlsProxy,
    certificate_set: CertificateSet,
    ca_file: Path,
) -> None:
    backends = await start_backends(1)
    routes = [
        Route("default", "shop.example.test", https_redirect=True, hsts_max_age_seconds=600),
        Route("default"),  # every other host: plain HTTP is served as before
    ]
    proxy = await start_tls_proxy(backends, certificate_set, routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.http_port)
    try:
        writer.write(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: shop.example.test:3000\r\n\r\n")
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        assert head.startswith("HTTP/1.1 308 Permanent Redirect\r\n")
        location = f"https://shop.example.test:{proxy.https_port}/a/b?x=1&y=%20"
        assert f"\r\nLocation: {location}\r\n" in head
        assert "Strict-Transport-Security" not in head  # never on plain HTTP
    finally:
        writer.close()
        await writer.wait_closed()
    assert backends[0].requests == 0

    other = await asyncio.open_connection("127.0.0.1", proxy.http_port)
    try:
        other[1].write(b"GET /headers HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
        answer = (await asyncio.wait_for(other[0].read(), 10)).decode()
        assert answer.startswith("HTTP/1.1 200")
        assert '["X-Forwarded-Proto", "http"]' in answer
    finally:
        other[1].close()
        await other[1].wait_closed()

    secure = await TlsConnection.open(proxy.https_port, "shop.example.test", ca_file)
    try:
        for path in ("/", "/stream?bytes=100000&chunked=1"):  # whole and streamed answers
            status, headers, _ = await secure.get(path, "shop.example.test")
            assert status == 200, path
            assert headers["strict-transport-security"] == "max-age=600", path
    finally:
        await secure.close()


async def test_a_stalled_handshake_is_cut_off_by_the_client_header_deadline(
    start_backends: StartBackends,
    start_tls_proxy: StartTlsProxy,
    certificate_set: CertificateSet,
) -> None:
    backends = await start_backends(1)
    proxy = await start_tls_proxy(
        backends,
        certificate_set,
        [Route("default")],
        timeouts={"client_header_seconds": 0.5, "drain_seconds": 5.0},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.https_port)
    try:
        writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        # asyncio's own default would keep it for 60 s.
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
        await writer.wait_closed()
