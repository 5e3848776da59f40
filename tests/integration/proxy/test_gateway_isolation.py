"""Over real sockets, through a listener set with DataPlane.set_listeners: ResponseHeaderModifier
set/add/remove on answers that go out whole (send_whole) and streamed (RelayedResponse), the
conformance suite's X-Header-* cases; X-Forwarded-Host after a URLRewrite hostname; and
listener isolation (RouteTable.isolated_hosts) with the GatewayHTTPListenerIsolation matrix."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from proxy.listeners import ListenerSpec
from proxy.routing import (
    ResponseHeaderModifier,
    Route,
    RouteTable,
    URLRewrite,
)
from tests.integration.proxy.gateway_plane import (  # noqa: F401
    GatewayPlane,
    StartGatewayPlane,
    start_gateway_plane,
    upstream_of,
)
from tests.support.backends import Backend

pytestmark = pytest.mark.integration


class HeaderBackend(Backend):
    """Answers with the response fields the request asks for (`X-Echo-Set-Header:
    Name:value,Name:value`, as the suite's echo-basic), a JSON body of the request's Host and
    fields; on /chunked the body goes out chunked, in two writes (the relay streams it)."""

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.requests += 1
        response = web.StreamResponse()
        for item in request.headers.get("X-Echo-Set-Header", "").split(","):
            name, _, value = item.partition(":")
            if name:
                response.headers.add(name.strip(), value.strip())
        body = json.dumps(
            {
                "host": request.headers.get("Host"),
                "headers": [[k, v] for k, v in request.headers.items()],
                "backend": self.name,
            }
        ).encode()
        if request.path == "/chunked":
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(body)
            await response.write(b" " * 200_000)
        else:
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body)
        await response.write_eof()
        return response


@pytest.fixture
async def header_backend() -> AsyncIterator[HeaderBackend]:
    backend = HeaderBackend("headers")
    await backend.start()
    yield backend
    await backend.stop()


async def _serve(
    start: StartGatewayPlane,
    backends: list[Backend],
    routes: list[Route],
    isolated: frozenset[str] = frozenset(),
) -> str:
    gateway: GatewayPlane = await start(backends)
    table = RouteTable.build(routes, isolated_hosts=isolated)
    report = await gateway.listen(ListenerSpec("gw", 0, table, public_port=80))
    assert not report.failed
    return f"http://127.0.0.1:{report.bound['gw']}"


# The conformance suite's HTTPRouteResponseHeaderModifier cases: the backend's fields, the
# fields the client must see (several fields of a name joined with ","), those it must not.
CASES = [
    ("/set", {"X-Header-Set": "some-other-value"}, {"X-Header-Set": "set-overwrites-values"}, ()),
    ("/add", {"X-Header-Add": "some-other-value"}, {"X-Header-Add": "some-other-value,added"}, ()),
    ("/add", {"Some-Other": "val"}, {"Some-Other": "val", "X-Header-Add": "added"}, ()),
    ("/remove", {"X-Header-Remove": "val", "Kept": "k"}, {"Kept": "k"}, ("X-Header-Remove",)),
    (
        "/case",
        {"x-header-set": "o", "x-header-add": "o", "x-header-remove": "o"},
        {"X-Header-Set": "s", "X-Header-Add": "o,a", "X-Lowercase-Add": "l"},
        ("X-Header-Remove",),
    ),
]
MODIFIERS = {
    "/set": ResponseHeaderModifier(set=(("X-Header-Set", "set-overwrites-values"),)),
    "/add": ResponseHeaderModifier(add=(("X-Header-Add", "added"),)),
    "/remove": ResponseHeaderModifier(remove=("X-Header-Remove",)),
    "/case": ResponseHeaderModifier(
        set=(("X-Header-Set", "s"),),
        add=(("X-Header-Add", "a"), ("x-lowercase-add", "l")),
        remove=("X-Header-Remove",),
    ),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_response_header_modifier_sets_adds_and_removes(
    header_backend: HeaderBackend,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    streamed: bool,
) -> None:
    upstream = upstream_of(header_backend)
    routes = [Route(upstream, None, path, filters=(m,)) for path, m in MODIFIERS.items()]
    routes.append(Route(upstream, None, "/chunked", filters=(MODIFIERS["/case"],)))
    url = await _serve(start_gateway_plane, [header_backend], routes)
    async with aiohttp.ClientSession() as client:
        for path, backend_fields, expected, absent in CASES:
            if streamed and path != "/case":
                continue
            asked = ",".join(f"{k}:{v}" for k, v in backend_fields.items())
            target = "/chunked" if streamed else path
            async with client.get(url + target, headers={"X-Echo-Set-Header": asked}) as got:
                assert got.status == 200
                body = await got.read()
                assert ("Content-Length" in got.headers) is not streamed, got.headers
                for name, value in expected.items():
                    assert ",".join(got.headers.getall(name, ())) == value, (path, name)
                for name in absent:
                    assert name not in got.headers, (path, name)
                assert got.headers["X-Request-ID"]
                assert json.loads(body.split(b"}")[0] + b"}")["backend"] == "headers"


async def test_x_forwarded_host_keeps_the_clients_host_after_a_rewrite(
    header_backend: HeaderBackend,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
) -> None:
    upstream = upstream_of(header_backend)
    url = await _serve(
        start_gateway_plane,
        [header_backend],
        [
            Route(upstream, None, "/rewrite", filters=(URLRewrite(hostname="internal.example"),)),
            Route(upstream, None, "/plain"),
        ],
    )
    async with aiohttp.ClientSession() as client:
        for path, host in (("/rewrite", "internal.example"), ("/plain", "public.test:8080")):
            headers = {"Host": "public.test:8080", "X-Forwarded-Host": "spoofed"}
            async with client.get(url + path, headers=headers) as got:
                seen = json.loads(await got.read())
            assert seen["host"] == host
            forwarded = [v for k, v in seen["headers"] if k.lower() == "x-forwarded-host"]
            assert forwarded == ["public.test:8080"], path


async def test_listener_isolation_over_a_real_socket(
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
) -> None:
    names = ("empty", "wild", "wild-foo", "abc")
    backends: list[Backend] = [Backend(name) for name in names]
    for backend in backends:
        await backend.start()
    try:
        hosts = (None, "*.example.com", "*.foo.example.com", "abc.foo.example.com")
        routes = [
            Route(upstream_of(b), host, f"/{b.name}")
            for b, host in zip(backends, hosts, strict=True)
        ]
        isolated = frozenset(h for h in hosts if h is not None)
        url = await _serve(start_gateway_plane, backends, routes, isolated)
        served = {
            "bar.com": "empty",
            "bar.example.com": "wild",
            "bar.foo.example.com": "wild-foo",
            "abc.foo.example.com": "abc",
        }
        async with aiohttp.ClientSession() as client:
            for host, owner in served.items():
                for name in names:
                    async with client.get(url + f"/{name}", headers={"Host": host}) as got:
                        body = await got.text()
                        if name == owner:
                            assert (got.status, body) == (200, name), (host, name)
                        else:
                            assert got.status == 404, (host, name, body)
    finally:
        for backend in backends:
            await backend.stop()
