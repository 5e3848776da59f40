"""DataPlane.set_listeners over real sockets: listeners opened, swapped in place (routes and
SNI certificates) with keep-alive connections open, closed after their requests in flight
finish, ports that cannot be bound reported and retried, shutdown draining them."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from proxy.listeners import ListenerSpec, TlsListenerConfig
from proxy.routing import Route, RouteTable
from proxy.tls.certificate import load_certificate
from proxy.tls.store import CertificateSet
from tests.integration.proxy.conftest import StartBackends
from tests.integration.proxy.gateway_plane import (  # noqa: F401
    StartGatewayPlane,
    start_gateway_plane,
    upstream_of,
)
from tests.integration.proxy.tls_client import TlsConnection
from tests.support.backends import Backend
from tests.support.ports import free_port
from tests.support.tls_certs import NOW, Leaf, TestCA
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def to(backend: Backend, **route: object) -> RouteTable:
    return RouteTable.build([Route(upstream_of(backend), **route)])  # type: ignore[arg-type]


async def name_at(session: aiohttp.ClientSession, port: int, path: str = "/") -> str:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        assert response.status == 200
        return await response.text()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_listeners_open_swap_in_place_and_equal_specs_change_nothing(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    one, two = await start_backends(2)
    gateway = await start_gateway_plane([one, two])
    specs = [ListenerSpec("a", 0, to(one)), ListenerSpec("b", free_port(), to(two))]
    report = await gateway.listen(*specs)
    assert set(report.bound) == {"a", "b"} and not report.failed
    assert report.bound["b"] == specs[1].port
    assert report.ports == frozenset(report.bound.values())
    a, b = report.bound["a"], report.bound["b"]
    assert await name_at(client, a) == one.name
    assert await name_at(client, b) == two.name

    # Equal specs: the same sockets (port 0 is not re-bound to another ephemeral port).
    again = await gateway.listen(*specs)
    assert dict(again.bound) == dict(report.bound)

    # New routes for "a": the same socket and keep-alive connection, the new upstream.
    connector = client.connector
    assert connector is not None
    await gateway.listen(ListenerSpec("a", 0, to(two)), specs[1])
    assert await name_at(client, a) == two.name
    assert (await gateway.listen(ListenerSpec("a", 0, to(two)), specs[1])).bound["a"] == a


async def test_a_removed_listener_finishes_its_requests_in_flight_then_closes(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (slow,) = await start_backends(1)
    gateway = await start_gateway_plane([slow])
    report = await gateway.listen(
        ListenerSpec("gone", 0, to(slow)), ListenerSpec("kept", 0, to(slow))
    )
    port = report.bound["gone"]
    in_flight = asyncio.create_task(name_at(client, port, "/slow?seconds=1"))
    await eventually(lambda: slow.requests == 1, message="the request reached the backend")
    after = await gateway.listen(ListenerSpec("kept", 0, to(slow)))
    assert set(after.bound) == {"kept"}
    assert await refused(port)  # no new connection from the moment it was removed
    assert await asyncio.wait_for(in_flight, 10) == slow.name
    assert await name_at(client, after.bound["kept"]) == slow.name


async def test_a_port_taken_is_reported_and_bound_on_a_later_call(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (backend,) = await start_backends(1)
    gateway = await start_gateway_plane([backend])
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    try:
        specs = (ListenerSpec("busy", taken, to(backend)), ListenerSpec("free", 0, to(backend)))
        report = await gateway.listen(*specs)
        assert set(report.bound) == {"free"}
        assert f"127.0.0.1:{taken}" in report.failed["busy"]
    finally:
        squatter.close()
    report = await gateway.listen(*specs)
    assert report.bound["busy"] == taken and not report.failed
    assert await name_at(client, taken) == backend.name


async def test_bad_specs_are_refused_whole(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (backend,) = await start_backends(1)
    gateway = await start_gateway_plane([backend])
    report = await gateway.listen(ListenerSpec("a", 0, to(backend)))
    port = free_port()
    with pytest.raises(ValueError, match="both on port"):
        await gateway.listen(
            ListenerSpec("x", port, to(backend)), ListenerSpec("y", port, to(backend))
        )
    with pytest.raises(ValueError, match="named twice"):
        await gateway.listen(ListenerSpec("a", 0, to(backend)), ListenerSpec("a", 0, to(backend)))
    assert await name_at(client, report.bound["a"]) == backend.name  # nothing changed


async def test_listeners_set_before_start_are_bound_by_start_and_drained_at_shutdown(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (slow,) = await start_backends(1)
    port = free_port()
    gateway = await start_gateway_plane(
        [slow], before_start=[ListenerSpec("early", port, to(slow))]
    )
    assert await name_at(client, port) == slow.name
    in_flight = asyncio.create_task(name_at(client, port, "/slow?seconds=1"))
    await eventually(lambda: slow.requests == 2, message="the request reached the backend")
    assert await gateway.stop() == 0
    assert in_flight.done() and in_flight.result() == slow.name
    assert await refused(port)
    # After shutdown nothing opens any more.
    assert (await gateway.plane.set_listeners([ListenerSpec("late", 0, to(slow))])).bound == {}


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def certificates(default: Leaf, **by_name: Leaf) -> CertificateSet:
    def load(leaf: Leaf) -> object:
        return load_certificate(leaf.chain_pem, leaf.key_pem, source="test", now=NOW)

    return CertificateSet.build(
        load(default),  # type: ignore[arg-type]
        {name: load(leaf) for name, leaf in by_name.items()},  # type: ignore[misc]
    )


async def test_https_listener_serves_certificates_by_sni_and_swaps_them_in_place(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    ca: TestCA,
    tmp_path: Path,
) -> None:
    one, two = await start_backends(2)
    ca_file = ca.write(tmp_path)
    default, shop, shop_renewed = (
        ca.issue("default.test"),
        ca.issue("shop.test"),
        ca.issue("shop.test"),
    )
    routes = RouteTable.build(
        [Route(upstream_of(one), host="shop.test"), Route(upstream_of(two), host="default.test")]
    )
    gateway = await start_gateway_plane([one, two])
    spec = ListenerSpec(
        "tls", 0, routes, tls=TlsListenerConfig(certificates(default, **{"shop.test": shop}))
    )
    port = (await gateway.listen(spec)).bound["tls"]

    kept = await TlsConnection.open(port, "shop.test", ca_file)
    assert kept.peer_serial() == shop.serial
    status, _, body = await kept.get("/", "shop.test")
    assert (status, body) == (200, one.name.encode())
    other = await TlsConnection.open(port, "default.test", ca_file)
    assert other.peer_serial() == default.serial
    assert (await other.get("/", "default.test"))[2] == two.name.encode()
    await other.close()

    # New certificate and routes, same socket: new handshakes get the new certificate, the
    # open connection keeps its own and sees the new routes.
    swapped = ListenerSpec(
        "tls",
        0,
        RouteTable.build([Route(upstream_of(two), host="shop.test")]),
        tls=TlsListenerConfig(certificates(default, **{"shop.test": shop_renewed})),
    )
    assert (await gateway.listen(swapped)).bound["tls"] == port
    fresh = await TlsConnection.open(port, "shop.test", ca_file)
    assert fresh.peer_serial() == shop_renewed.serial
    await fresh.close()
    assert kept.peer_serial() == shop.serial
    assert (await kept.get("/", "shop.test"))[2] == two.name.encode()
    await kept.close()


async def test_a_listener_turning_https_gets_a_new_socket_on_its_port(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
    ca: TestCA,
    tmp_path: Path,
) -> None:
    (backend,) = await start_backends(1)
    gateway = await start_gateway_plane([backend])
    port = free_port()
    await gateway.listen(ListenerSpec("gw", port, to(backend)))
    assert await name_at(client, port) == backend.name
    tls = TlsListenerConfig(certificates(ca.issue("a.test")))
    assert (await gateway.listen(ListenerSpec("gw", port, to(backend), tls=tls))).bound[
        "gw"
    ] == port
    connection = await TlsConnection.open(port, "a.test", ca.write(tmp_path))
    assert (await connection.get("/", "a.test"))[2] == backend.name.encode()
    await connection.close()


async def test_a_swap_leaves_requests_in_flight_on_the_routes_they_matched(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    old, new = await start_backends(2)
    gateway = await start_gateway_plane([old, new])
    port = (await gateway.listen(ListenerSpec("gw", 0, to(old)))).bound["gw"]
    in_flight = asyncio.create_task(name_at(client, port, "/slow?seconds=1"))
    await eventually(lambda: old.requests == 1, message="the request reached the old backend")
    assert (await gateway.listen(ListenerSpec("gw", 0, to(new)))).bound["gw"] == port
    assert await name_at(client, port) == new.name
    assert await asyncio.wait_for(in_flight, 10) == old.name
