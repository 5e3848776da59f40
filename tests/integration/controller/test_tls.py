"""TLS from Secrets against the real API server: a Service names a kubernetes.io/tls Secret made
here (a test CA's leaf), the controller serves it by SNI on its HTTPS listener, a rotated
Secret reaches the next handshake within 2 s while an open keep-alive connection keeps
working, a broken Secret is reported (Event and JSON log line) and the last good certificate
stays, and ssl-redirect / hsts act per host."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from controller.app import Controller, ControllerOptions
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service, enrolled
from tests.integration.controller.tls_support import handshake_serial, put_secret, tls_secret
from tests.integration.proxy.tls_client import TlsConnection
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually
from tests.support.ports import free_port
from tests.support.tls_certs import TestCA, other_key_pem

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def https_controller(
    start_controller: StartController, namespace: str, **settings: Any
) -> tuple[Controller, int]:
    tls_port = free_port()
    controller = await start_controller(
        ControllerOptions("ingress", namespaces=(namespace,)),
        settings={"tls_port": tls_port, "tls": {"enabled": True, **settings}},
    )
    assert controller.ports[1] == tls_port
    return controller, tls_port


async def warnings(api: client.ApiClient, namespace: str, service: str, reason: str) -> list[str]:
    events = (await client.CoreV1Api(api).list_namespaced_event(namespace)).items
    return [
        e.message
        for e in events
        if e.involved_object.name == service and e.reason == reason and e.type == "Warning"
    ]


@pytest.mark.timeout(120)
async def test_a_secret_is_served_by_sni_rotated_without_restart_and_a_broken_one_is_refused(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller")
    ns = kube_namespace
    ca = TestCA()
    ca_file = ca.write(tmp_path)
    first = ca.issue("shop.test")
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_secret(ns, tls_secret("shop-tls", first.chain_pem, first.key_pem))
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    annotations = enrolled("shop.test", **{"kubeferry.io/tls-secret": "shop-tls"})
    await create_service(kube_api, ns, "web", app="web", annotations=annotations)
    controller, tls_port = await https_controller(start_controller, ns)

    async def serves_first() -> None:
        assert await handshake_serial(tls_port, "shop.test", ca_file) == first.serial

    await eventually(serves_first)
    kept = await TlsConnection.open(tls_port, "shop.test", ca_file)
    try:
        status, headers, answer = await kept.get("/", "shop.test")
        assert (status, answer) == (200, b"web-a")
        assert "strict-transport-security" not in headers

        # Rotation: the next handshake gets the new serial within 2 s, no restart.
        second = ca.issue("shop.test")
        rotated_at = time.monotonic()
        await put_secret(kube_api, ns, "shop-tls", second)
        serial: int | None = first.serial
        while serial != second.serial and time.monotonic() - rotated_at < 5:
            serial = await handshake_serial(tls_port, "shop.test", ca_file)
            await asyncio.sleep(0.05)
        took = time.monotonic() - rotated_at
        assert serial == second.serial
        assert took < 2.0, f"the new certificate took {took:.2f} s"
        # The connection made before the rotation keeps its certificate and keeps working.
        status, _, answer = await kept.get("/again", "shop.test")
        assert (status, answer) == (200, b"web-a")
        assert kept.peer_serial() == first.serial
    finally:
        await kept.close()

    # Broken: a key of another certificate. Warning Event, JSON line, last good kept.
    await put_secret(kube_api, ns, "shop-tls", ca.issue("shop.test"), key=other_key_pem())

    async def reported() -> None:
        messages = await warnings(kube_api, ns, "web", "InvalidTLSSecret")
        assert any("does not match" in m and f"{second.serial:x}" in m for m in messages)

    await eventually(reported)
    assert await handshake_serial(tls_port, "shop.test", ca_file) == second.serial
    lines = [r for r in caplog.records if getattr(r, "event", None) == "invalid_tls_secret"]
    assert lines and lines[-1].namespace == ns and lines[-1].service == "web"  # type: ignore[attr-defined]
    # The key material is never logged, not even the broken Secret's.
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert "PRIVATE KEY" not in logged and second.key_pem.decode().splitlines()[1] not in logged

    # Fixed again: served at once.
    third = ca.issue("shop.test")
    await put_secret(kube_api, ns, "shop-tls", third)

    async def serves_third() -> None:
        assert await handshake_serial(tls_port, "shop.test", ca_file) == third.serial

    await eventually(serves_third)
    assert controller.certificates is not None
    assert set(controller.certificates.current.by_name) == {"shop.test"}


@pytest.mark.timeout(120)
async def test_ssl_redirect_hsts_wildcards_and_secrets_that_never_worked(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    ns = kube_namespace
    ca = TestCA()
    ca_file = ca.write(tmp_path)
    wildcard = ca.issue("*.apps.test")
    expired = ca.issue("old.test", expired=True)
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_secret(
        ns, tls_secret("apps-tls", wildcard.chain_pem, wildcard.key_pem)
    )
    await core.create_namespaced_secret(
        ns, tls_secret("old-tls", expired.chain_pem, expired.key_pem)
    )
    await core.create_namespaced_secret(
        ns, tls_secret("opaque", wildcard.chain_pem, wildcard.key_pem, type_="Opaque")
    )
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    https = {"kubeferry.io/ssl-redirect": "true", "kubeferry.io/hsts": "600"}
    await create_service(
        kube_api,
        ns,
        "apps",
        app="web",
        annotations=enrolled("*.apps.test", **{"kubeferry.io/tls-secret": "apps-tls", **https}),
    )
    for name, secret in (("old", "old-tls"), ("opaque", "opaque"), ("missing", "nothing")):
        await create_service(
            kube_api,
            ns,
            name,
            app="web",
            annotations=enrolled(f"{name}.test", **{"kubeferry.io/tls-secret": secret, **https}),
        )
    controller, tls_port = await https_controller(start_controller, ns, redirect_port=443)
    port = controller.ports[0]

    async def redirects() -> None:
        async with http.get(
            f"http://127.0.0.1:{port}/cart?x=1",
            headers={"Host": "a.apps.test:3000"},
            allow_redirects=False,
        ) as response:
            assert response.status == 308
            assert response.headers["Location"] == "https://a.apps.test/cart?x=1"

    await eventually(redirects)
    connection = await TlsConnection.open(tls_port, "a.apps.test", ca_file)
    try:
        assert connection.peer_serial() == wildcard.serial
        status, headers, _ = await connection.get("/", "a.apps.test")
        assert status == 200
        assert headers["strict-transport-security"] == "max-age=600"
    finally:
        await connection.close()

    # Secrets that never held a good certificate: a Warning each, HTTP only (no redirect),
    # and the HTTPS listener answers those names with the default certificate.
    expected = {"old": "expired", "opaque": "is not 'kubernetes.io/tls'", "missing": "not found"}

    async def reported() -> None:
        for service, words in expected.items():
            messages = await warnings(kube_api, ns, service, "InvalidTLSSecret")
            assert any(words in m and "HTTP only" in m for m in messages), (service, messages)

    await eventually(reported)
    for service in expected:
        async with http.get(
            f"http://127.0.0.1:{port}/", headers={"Host": f"{service}.test"}, allow_redirects=False
        ) as response:
            assert (response.status, await response.text()) == (200, "web-a")
        assert await handshake_serial(tls_port, f"{service}.test", ca_file) is None
    assert controller.certificates is not None
    assert set(controller.certificates.current.by_name) == {"*.apps.test"}

    # The good Secret deleted: a Warning, HTTP only, no more redirect.
    await core.delete_namespaced_secret("apps-tls", ns)

    async def plain_again() -> None:
        async with http.get(
            f"http://127.0.0.1:{port}/", headers={"Host": "a.apps.test"}, allow_redirects=False
        ) as response:
            assert (response.status, await response.text()) == (200, "web-a")
        messages = await warnings(kube_api, ns, "apps", "InvalidTLSSecret")
        assert any("not found; HTTP only" in m for m in messages), messages

    await eventually(plain_again)
    assert await handshake_serial(tls_port, "a.apps.test", ca_file) is None
    assert set(controller.certificates.current.by_name) == set()


@pytest.mark.timeout(120)
async def test_tls_secret_without_host_is_a_warning(
    kube_api: client.ApiClient,
    kube_namespace: str,
    stand_in_pods: StandInPods,
    start_controller: StartController,
) -> None:
    ns = kube_namespace
    await stand_in_pods.create(ns, "web-a", {"app": "web"})
    await create_service(
        kube_api,
        ns,
        "hostless",
        app="web",
        annotations={"kubeferry.io/enabled": "true", "kubeferry.io/tls-secret": "x-tls"},
    )
    await https_controller(start_controller, ns)

    async def reported() -> None:
        messages = await warnings(kube_api, ns, "hostless", "InvalidAnnotation")
        assert any("needs kubeferry.io/host" in m for m in messages), messages

    await eventually(reported)
