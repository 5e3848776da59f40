"""Gateway API routes over real sockets: matching by header, method and query, weighted
backends (and the 500 of invalid ones), request and response header modifiers, redirects and
URL rewrites, each through a listener set with DataPlane.set_listeners to real backends."""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web

from proxy.listeners import ListenerSpec
from proxy.routing import (
    HeaderMatch,
    PathModifier,
    QueryMatch,
    RequestHeaderModifier,
    RequestRedirect,
    ResponseHeaderModifier,
    Route,
    RouteTable,
    URLRewrite,
    WeightedBackend,
)
from tests.integration.proxy.conftest import StartBackends
from tests.integration.proxy.gateway_plane import (  # noqa: F401
    GatewayPlane,
    StartGatewayPlane,
    start_gateway_plane,
    upstream_of,
)
from tests.support.backends import Backend

pytestmark = pytest.mark.integration


async def serve(
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    backends: list[Backend],
    routes: list[Route],
    *,
    public_port: int | None = None,
) -> str:
    gateway: GatewayPlane = await start_gateway_plane(backends)
    report = await gateway.listen(
        ListenerSpec("gw", 0, RouteTable.build(routes), public_port=public_port)
    )
    assert not report.failed
    return f"http://127.0.0.1:{report.bound['gw']}"


async def get(
    session: aiohttp.ClientSession, url: str | yarl.URL, **kwargs: Any
) -> tuple[int, dict[str, str], str]:
    kwargs.setdefault("allow_redirects", False)
    async with session.request(kwargs.pop("method", "GET"), url, **kwargs) as response:
        body = await response.text()
        return response.status, dict(response.headers), body


async def echoed(
    session: aiohttp.ClientSession, url: str | yarl.URL, **kwargs: Any
) -> dict[str, Any]:
    status, _, body = await get(session, url, **kwargs)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def fields(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


async def test_header_method_and_query_matches_choose_the_backend(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    plain, by_header, by_method, by_query = await start_backends(4)
    url = await serve(
        start_gateway_plane,
        [plain, by_header, by_method, by_query],
        [
            Route(upstream_of(plain), host="shop.test"),
            Route(
                upstream_of(by_header), host="shop.test", headers=(HeaderMatch("env", "canary"),)
            ),
            Route(upstream_of(by_method), host="shop.test", method="DELETE"),
            Route(upstream_of(by_query), host="shop.test", query=(QueryMatch("v", "2"),)),
        ],
    )
    host = {"Host": "shop.test"}
    assert (await get(client, url + "/", headers=host))[2] == plain.name
    assert (await get(client, url + "/", headers={**host, "ENV": "canary"}))[2] == by_header.name
    assert (await get(client, url + "/x", method="DELETE", headers=host))[2] == by_method.name
    assert (await get(client, url + "/x?v=2", headers=host))[2] == by_query.name
    assert (await get(client, url + "/x?v=3", headers=host))[2] == plain.name
    status, _, body = await get(client, url + "/", headers={"Host": "other.test"})
    assert (status, body) == (404, "No route")


async def test_weighted_backends_split_the_requests_and_weight_zero_gets_none(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    heavy, light, idle = await start_backends(3)
    url = await serve(
        start_gateway_plane,
        [heavy, light, idle],
        [
            Route(
                backends=(
                    WeightedBackend(upstream_of(heavy), 70),
                    WeightedBackend(upstream_of(light), 30),
                    WeightedBackend(upstream_of(idle), 0),
                )
            )
        ],
    )
    total = 500
    seen = collections.Counter([(await get(client, url + "/"))[2] for _ in range(total)])
    assert set(seen) == {heavy.name, light.name}
    # Binomial(500, 0.7): standard deviation 10.2; six of them either side cannot fail by
    # chance in practice, and a choice that ignored the weights (250) is far outside.
    assert abs(seen[heavy.name] - 350) <= 62, seen
    assert idle.requests == 0


async def test_an_invalid_backend_answers_500_for_its_share(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (good,) = await start_backends(1)
    url = await serve(
        start_gateway_plane,
        [good],
        [
            Route(
                path_prefix="/half",
                backends=(WeightedBackend(upstream_of(good), 1), WeightedBackend(None, 1)),
            ),
            Route(path_prefix="/invalid", backends=(WeightedBackend(None, 1),)),
            Route(path_prefix="/zero", backends=(WeightedBackend(upstream_of(good), 0),)),
            Route(path_prefix="/none"),  # no backends at all
        ],
    )
    statuses = collections.Counter([(await get(client, url + "/half"))[0] for _ in range(200)])
    assert set(statuses) == {200, 500}
    assert abs(statuses[500] - 100) <= 42, statuses  # Binomial(200, 0.5): sd 7
    for path in ("/invalid", "/zero", "/none"):
        status, headers, body = await get(client, url + path)
        assert (status, body) == (500, "No valid backend for this route"), path
        assert headers["X-Request-ID"]
    assert good.requests == statuses[200]


async def test_request_header_modifier_sets_adds_and_removes_upstream_fields(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (backend,) = await start_backends(1)
    url = await serve(
        start_gateway_plane,
        [backend],
        [
            Route(
                upstream_of(backend),
                filters=(
                    RequestHeaderModifier(
                        set=(("X-Header-Set", "set-overwrites-values"),),
                        add=(("X-Header-Add", "header-val-1"), ("X-Header-Add-Append", "v2")),
                        remove=("x-header-remove",),
                    ),
                ),
            )
        ],
    )
    echo = await echoed(
        client,
        url + "/headers",
        headers={
            "x-header-set": "client-value",
            "X-Header-Add-Append": "v1",
            "X-Header-Remove": "gone",
            "Some-Other": "kept",
        },
    )
    assert fields(echo, "X-Header-Set") == ["set-overwrites-values"]
    assert fields(echo, "X-Header-Add") == ["header-val-1"]
    assert fields(echo, "X-Header-Add-Append") == ["v1", "v2"]
    assert fields(echo, "X-Header-Remove") == []
    assert fields(echo, "Some-Other") == ["kept"]
    assert fields(echo, "X-Forwarded-For") == ["127.0.0.1"]  # the proxy's own fields stay


async def test_response_header_modifier_sets_fields_on_whole_and_streamed_answers(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (backend,) = await start_backends(1)
    url = await serve(
        start_gateway_plane,
        [backend],
        [
            Route(
                upstream_of(backend),
                filters=(
                    ResponseHeaderModifier(set=(("X-Backend", "hidden"), ("X-Added", "yes"))),
                ),
            )
        ],
    )
    status, headers, body = await get(client, url + "/whole")
    assert (status, body) == (200, backend.name)
    assert headers["X-Backend"] == "hidden"
    assert headers["X-Added"] == "yes"
    async with client.get(url + "/stream?bytes=300000&chunked=1") as response:
        assert response.status == 200
        assert response.headers["X-Added"] == "yes"
        assert len(await response.read()) == 300000


@pytest.mark.parametrize(
    ("redirect", "public_port", "location"),
    [
        # Every part unset: the request's own, the listener's public port (80: left out).
        (RequestRedirect(), 80, "http://shop.test/old/x?q=1"),
        (RequestRedirect(hostname="example.org"), 8080, "http://example.org:8080/old/x?q=1"),
        (RequestRedirect(hostname="example.org", port=80), 8080, "http://example.org/old/x?q=1"),
        # A scheme without a port takes the scheme's port, not the listener's.
        (RequestRedirect(scheme="https"), 8080, "https://shop.test/old/x?q=1"),
        (RequestRedirect(scheme="https", port=443), 80, "https://shop.test/old/x?q=1"),
        (RequestRedirect(scheme="https", port=8443), 80, "https://shop.test:8443/old/x?q=1"),
        (RequestRedirect(scheme="http", port=443), 80, "http://shop.test:443/old/x?q=1"),
        (
            RequestRedirect(path=PathModifier("prefix", "/new")),
            80,
            "http://shop.test/new/x?q=1",
        ),
        (RequestRedirect(path=PathModifier("full", "/else")), 80, "http://shop.test/else?q=1"),
        (RequestRedirect(), None, "http://shop.test/old/x?q=1"),
    ],
)
async def test_redirects_build_the_location_by_the_spec_port_rules(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
    redirect: RequestRedirect,
    public_port: int | None,
    location: str,
) -> None:
    (backend,) = await start_backends(1)
    url = await serve(
        start_gateway_plane,
        [backend],
        [Route(path_prefix="/old", filters=(redirect,))],
        public_port=public_port,
    )
    status, headers, _ = await get(client, url + "/old/x?q=1", headers={"Host": "Shop.Test:9999"})
    assert status == 302
    assert headers["Location"] == location
    assert backend.requests == 0


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirect_status_codes_and_a_body_that_closes(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
    code: int,
) -> None:
    (backend,) = await start_backends(1)
    url = await serve(
        start_gateway_plane,
        [backend],
        [Route(filters=(RequestRedirect(hostname="example.org", status_code=code),))],
    )
    status, headers, _ = await get(client, url + "/", headers={"Host": "a.test"})
    assert (status, headers["Location"]) == (code, "http://example.org/")
    # A request body is not read: the connection closes after the answer.
    status, headers, _ = await get(client, url + "/", method="POST", data=b"x" * 1000)
    assert status == code
    assert headers.get("Connection", "").lower() == "close"


async def test_a_redirect_without_a_usable_host_is_400(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (backend,) = await start_backends(1)
    url = await serve(start_gateway_plane, [backend], [Route(filters=(RequestRedirect(),))])
    status, headers, _ = await get(client, url + "/", headers={"Host": "bad_host!"})
    assert status == 400
    assert "Location" not in headers


class EchoBackend(Backend):
    """Answers every path with what it received: raw path, Host, fields, body size."""

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        return web.json_response(
            {
                "raw_path": request.raw_path,
                "host": request.headers.get("Host"),
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_bytes": len(body),
            }
        )


@pytest.fixture
async def echo() -> AsyncIterator[EchoBackend]:
    backend = EchoBackend("echo")
    await backend.start()
    yield backend
    await backend.stop()


@pytest.mark.parametrize(
    ("prefix", "rewrite", "path", "upstream_path"),
    [
        # The conformance suite's cases (httproute-rewrite-path).
        ("/prefix/one", PathModifier("prefix", "/one"), "/prefix/one/two", "/one/two"),
        ("/strip-prefix", PathModifier("prefix", "/"), "/strip-prefix/three", "/three"),
        ("/strip-prefix", PathModifier("prefix", "/"), "/strip-prefix", "/"),
        ("/full/one", PathModifier("full", "/one"), "/full/one/two", "/one"),
        # A trailing "/" of the prefix does not count; the query and the percent-encoding
        # reach the upstream as sent.
        ("/p/", PathModifier("prefix", "/q"), "/p/a%2Fb?x=%41&y", "/q/a%2Fb?x=%41&y"),
    ],
)
async def test_url_rewrite_replaces_the_path(
    echo: EchoBackend,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
    prefix: str,
    rewrite: PathModifier,
    path: str,
    upstream_path: str,
) -> None:
    url = await serve(
        start_gateway_plane,
        [echo],
        [Route(upstream_of(echo), path_prefix=prefix, filters=(URLRewrite(path=rewrite),))],
    )
    seen = await echoed(client, yarl.URL(url + path, encoded=True))
    assert seen["raw_path"] == upstream_path


async def test_url_rewrite_hostname_with_header_changes_and_bodies_held_or_streamed(
    echo: EchoBackend,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    url = await serve(
        start_gateway_plane,
        [echo],
        [
            Route(
                upstream_of(echo),
                filters=(
                    URLRewrite(hostname="internal.example", path=PathModifier("full", "/test")),
                    RequestHeaderModifier(set=(("X-Header-Set", "v"),)),
                ),
            )
        ],
    )
    seen = await echoed(client, url + "/any/thing?k=v", headers={"Host": "public.test"})
    assert seen["host"] == "internal.example"
    assert seen["raw_path"] == "/test?k=v"
    assert fields(seen, "X-Header-Set") == ["v"]
    # The rewritten copy shares the client's body: a small one (held for replay) and a
    # large one (streamed, past retries.replay_body_bytes) both arrive whole.
    for size in (1000, 300_000):
        seen = await echoed(client, url + "/upload", method="POST", data=b"b" * size)
        assert seen["body_bytes"] == size
        assert seen["raw_path"] == "/test"


async def test_a_websocket_upgrade_goes_through_a_rewritten_request(
    start_backends: StartBackends,
    start_gateway_plane: StartGatewayPlane,  # noqa: F811
    client: aiohttp.ClientSession,
) -> None:
    (backend,) = await start_backends(1)
    url = await serve(
        start_gateway_plane,
        [backend],
        [
            Route(
                upstream_of(backend),
                path_prefix="/chat",
                filters=(
                    URLRewrite(path=PathModifier("full", "/ws")),
                    RequestHeaderModifier(set=(("X-Via-Route", "chat"),)),
                ),
            )
        ],
    )
    async with client.ws_connect(url + "/chat/room", timeout=aiohttp.ClientWSTimeout(5)) as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
    assert backend.requests == 1
