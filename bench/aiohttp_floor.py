"""`python -m bench.aiohttp_floor --port N`: aiohttp's low-level server on uvloop answering
every request with the backends' small fixed answer, proxying nothing.

It is the proxy section's reference row, not a load balancer: the same server kubeferry uses
(`aiohttp.web.Server`, see proxy/protocol.py and proxy/app.py), on the same interpreter, with
aiohttp's access log off, answering the way kubeferry's fast path does (the whole answer in
one `transport.write`, then `proxy.relay.SentResponse`, so aiohttp builds no response head)
and doing no work of its own. Its CPU per request is what aiohttp's server costs kubeferry on
every request before anything is proxied; what kubeferry spends above it is the upstream
round trip and kubeferry's own work. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import uvloop
from aiohttp import web

from bench.backends import body
from proxy.relay import SentResponse

# What backend 1 of bench.backends sends (nginx `return 200 "..."`, text/plain), whole.
BODY = body(1)
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


async def answer(request: web.BaseRequest) -> web.StreamResponse:
    transport = request.transport
    assert transport is not None
    transport.write(ANSWER)
    return SentResponse(200, keep_alive=request.keep_alive)


async def serve(host: str, port: int) -> None:
    await serve_until_signalled(web.Server(answer, access_log=None), host, port, "aiohttp floor")


async def serve_until_signalled(server: web.Server, host: str, port: int, what: str) -> None:
    """Serve `server` on host:port until SIGTERM or SIGINT (bench.bare_proxy uses it too)."""
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"{what} on http://{host}:{port}/", flush=True)
    try:
        await stop.wait()
    finally:
        listener.close()
        await server.shutdown(1.0)
        await listener.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aiohttp_floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host != "::1":
        parser.error("the benchmark listens on loopback only")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
