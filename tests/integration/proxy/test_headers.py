"""HTTP proxy semantics on headers, paths, cookies and encodings, through a real proxy."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import aiohttp
from yarl import URL

from tests.integration.proxy import rawhttp
from tests.integration.proxy.conftest import StartBackends, StartProxy


def _headers(seen: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


async def _seen_by_backend(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    async with client.get(url, **kwargs) as response:
        assert response.status == 200
        return await response.json()


async def test_hop_by_hop_headers_and_those_named_in_connection_are_removed(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))
    seen = await _seen_by_backend(
        client,
        proxy.url + "/headers",
        headers={
            "Connection": "keep-alive, X-Private-Hop",
            "X-Private-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Upgrade": "h2c",
            "X-End-To-End": "kept",
        },
    )
    headers = _headers(seen)
    for gone in ("x-private-hop", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert gone not in headers, gone
    assert headers["x-end-to-end"] == ["kept"]


async def test_forwarded_headers_and_host_preserved(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))
    seen = await _seen_by_backend(
        client,
        proxy.url + "/headers",
        headers={
            "Host": "shop.example.test",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https-spoofed",
            "X-Forwarded-Host": "spoofed.example",
        },
    )
    headers = _headers(seen)
    assert headers["host"] == ["shop.example.test"]
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == ["shop.example.test"]


async def test_request_id_is_propagated_or_generated_and_returned(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))

    async with client.get(proxy.url + "/headers", headers={"X-Request-ID": "abc-123"}) as r:
        assert r.headers["X-Request-ID"] == "abc-123"
        assert _headers(await r.json())["x-request-id"] == ["abc-123"]

    async with client.get(proxy.url + "/headers") as r:
        generated = r.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        assert _headers(await r.json())["x-request-id"] == [generated]


async def test_encoded_path_and_query_arrive_byte_for_byte(
    start_backends: StartBackends, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_backends(1))
    target = "/headers/a%2Fb/%20c/%7Euser/./x?q=%2F%3D&r=a+b"

    response = await rawhttp.exchange(proxy.port, rawhttp.request("GET", target))

    assert response is not None and response.status == 200
    assert json.loads(response.body)["raw_path"] == target


async def test_no_headers_are_invented_for_the_upstream(
    start_backends: StartBackends, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_backends(1))

    response = await rawhttp.exchange(proxy.port, rawhttp.request("GET", "/headers"))

    assert response is not None
    headers = _headers(json.loads(response.body))
    for invented in ("user-agent", "accept", "accept-encoding", "content-type"):
        assert invented not in headers, invented


async def test_compressed_bodies_pass_untouched(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))

    async with client.get(proxy.url + "/gzip", headers={"Accept-Encoding": "gzip"}) as r:
        body = await r.read()
        assert r.headers["Content-Encoding"] == "gzip"
        assert int(r.headers["Content-Length"]) == len(body)
    assert gzip.decompress(body) == b"compressed hello " * 100


async def test_content_length_and_chunked_framing_follow_the_upstream(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))

    async with client.get(proxy.url + "/stream?bytes=100000") as r:
        assert r.headers["Content-Length"] == "100000"
        assert "Transfer-Encoding" not in r.headers
        assert len(await r.read()) == 100000
    async with client.get(proxy.url + "/stream?bytes=100000&chunked=1") as r:
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert len(await r.read()) == 100000

    async with client.head(proxy.url + "/stream?bytes=5000") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == "5000"
        assert await r.read() == b""


async def test_cookies_are_relayed_but_never_kept_or_replayed(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))

    for _ in range(2):
        async with client.get(proxy.url + "/cookie") as r:
            assert r.headers["Set-Cookie"].startswith("backend=backend-1")
            assert json.loads(await r.text()) == {"cookie": None}
    async with client.get(proxy.url + "/cookie", headers={"Cookie": "mine=1"}) as r:
        assert json.loads(await r.text()) == {"cookie": "mine=1"}


async def test_redirects_are_relayed_not_followed(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))

    async with client.get(proxy.url + "/status/302", allow_redirects=False) as r:
        assert r.status == 302


async def test_request_body_reaches_the_upstream_and_statuses_pass_through(
    start_backends: StartBackends, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_backends(1))

    async with client.put(proxy.url + "/upload", data=b"a" * 1000) as r:
        assert (await r.json())["bytes"] == 1000

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"b" * 10000

    async with client.post(URL(proxy.url + "/upload"), data=chunks()) as r:
        assert (await r.json())["bytes"] == 100000
    for status in (201, 404, 500, 503):
        async with client.get(proxy.url + f"/status/{status}") as r:
            assert r.status == status
