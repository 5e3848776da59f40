"""`python -m bench.bare_proxy --port N --backend PORT ... [--client kubeferry|minimal]`: the
least an aiohttp-served proxy does, as the proxy section's reference rows.

aiohttp's low-level server (as kubeferry uses it, access log off) on uvloop; per request a
round-robin backend, an upstream client, the client's request line and raw header bytes
passed on unchanged, the answer written to the client in one write as kubeferry's fast path
does (proxy.relay.SentResponse). Nothing else: no access log, metrics, request ids, header
rules, routing, health checks or failover. The upstream client is kubeferry's own
(`--client kubeferry`, proxy.upstream: pooled keep-alive connections, httptools) or
bench.minimal_upstream (`--client minimal`: a protocol, httptools and a future, about the
least an asyncio client can do). What kubeferry spends above the first is its features; the
second is about the least any proxy served by aiohttp's server can spend, since aiohttp's
handler must wait for the upstream's answer in a coroutine. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvloop
from aiohttp import web

from bench.aiohttp_floor import serve_until_signalled
from bench.minimal_upstream import MinimalPool
from proxy.model import Endpoint
from proxy.relay import SentResponse
from proxy.upstream import UpstreamClient

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def request_head(request: web.BaseRequest) -> bytes:
    """The client's request line and raw header bytes, passed on unchanged."""
    return b"".join(
        [
            f"{request.method} {request.raw_path} HTTP/1.1\r\n".encode(),
            *(name + b": " + value + b"\r\n" for name, value in request.raw_headers),
            b"\r\n",
        ]
    )


def answer_client(
    request: web.BaseRequest,
    status: int,
    reason: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
) -> web.StreamResponse:
    """The upstream's answer to the client in one write, its hop-by-hop fields left out."""
    fields = b"".join(
        name + b": " + value + b"\r\n"
        for name, value in headers
        if name.lower() not in (b"connection", b"keep-alive")
    )
    transport = request.transport
    assert transport is not None
    transport.write(b"HTTP/1.1 %d %s\r\n" % (status, reason) + fields + b"\r\n" + body)
    return SentResponse(status, keep_alive=request.keep_alive)


def handler(client: UpstreamClient, backends: Sequence[Endpoint]) -> Handler:
    turn = itertools.cycle(backends)

    async def forward(request: web.BaseRequest) -> web.StreamResponse:
        answer = await client.send(next(turn), request_head(request))
        parts = [answer.take()]
        while not answer.done:
            await answer.wait()
            parts.append(answer.take())
        answer.release()
        body = b"".join(parts)
        return answer_client(request, answer.status, answer.reason_bytes, answer.headers, body)

    return forward


def minimal_handler(pool: MinimalPool, backend_ports: Sequence[int]) -> Handler:
    turn = itertools.cycle(backend_ports)

    async def forward(request: web.BaseRequest) -> web.StreamResponse:
        port = next(turn)
        conn = await pool.take(port)
        await conn.exchange(request_head(request))
        pool.give_back(port, conn)
        body = b"".join(conn.body)
        return answer_client(request, conn.status, conn.reason, conn.headers, body)

    return forward


async def serve_minimal(host: str, port: int, backend_ports: Sequence[int]) -> None:
    pool = MinimalPool()
    server = web.Server(minimal_handler(pool, backend_ports), access_log=None)
    try:
        await serve_until_signalled(server, host, port, "bare proxy (minimal client)")
    finally:
        pool.close()


def kubeferry_client() -> UpstreamClient:
    """kubeferry's upstream client as the bench's reference rows use it (loopback backends:
    generous timeouts, keep-alive for the whole run)."""
    return UpstreamClient(
        connect_timeout_seconds=5.0, idle_timeout_seconds=30.0, keepalive_seconds=60.0
    )


async def serve(host: str, port: int, backend_ports: Sequence[int]) -> None:
    client = kubeferry_client()
    backends = [Endpoint("127.0.0.1", p) for p in backend_ports]
    server = web.Server(handler(client, backends), access_log=None)
    try:
        await serve_until_signalled(server, host, port, "bare proxy")
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", type=int, action="append", required=True, help="a port")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--client", choices=("kubeferry", "minimal"), default="kubeferry")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host != "::1":
        parser.error("the benchmark listens on loopback only")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        run = serve if args.client == "kubeferry" else serve_minimal
        runner.run(run(args.host, args.port, args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
