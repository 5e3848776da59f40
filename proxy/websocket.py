"""WebSocket pass-through: connect upstream first, then accept the client and pump both ways.

Both sides run with `autoping=False`, so pings and pongs are relayed rather than answered by
the proxy: the two ends keep their own liveness checks. Text, binary and close codes pass
unchanged; compression is negotiated on neither side, so frames are relayed as messages.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

log = logging.getLogger("kubeferry.websocket")

# Per-message limits stay with the endpoints; the proxy relays whatever they accept.
_NO_LIMIT = 0
# Sec-WebSocket-* of the client's handshake belong to the client-proxy connection; the
# upstream handshake gets fresh ones from aiohttp.
_HANDSHAKE_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)

WebSocketPeer = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    upgrade = request.headers.get("Upgrade")
    return upgrade is not None and upgrade.lower() == "websocket" and request.method == "GET"


def requested_protocols(request: web.BaseRequest) -> tuple[str, ...]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return tuple(p.strip() for p in header.split(",") if p.strip())


def upstream_handshake_headers(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    out = headers.copy()
    for name in _HANDSHAKE_HEADERS:
        out.popall(name, None)
    return out


async def relay(
    request: web.BaseRequest, upstream: aiohttp.ClientWebSocketResponse
) -> web.WebSocketResponse:
    """Accept the client with the subprotocol the upstream chose, then pump until either side
    closes; the close code of one side is passed to the other."""
    protocols = (upstream.protocol,) if upstream.protocol else ()
    client = web.WebSocketResponse(
        protocols=protocols, autoping=False, compress=False, max_msg_size=_NO_LIMIT
    )
    await client.prepare(request)
    client_codes: list[int] = []  # close code the client sent, once it did
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_pump(client, upstream, "client->upstream", client_codes))
            tasks.create_task(_pump(upstream, client, "upstream->client", []))
    finally:
        # The client usually drops the TCP connection right after its close handshake, which
        # cancels this handler mid-relay: the upstream still gets the client's close code.
        if not upstream.closed:
            code = client_codes[0] if client_codes else aiohttp.WSCloseCode.GOING_AWAY
            await upstream.close(code=code)
    return client


async def _pump(
    source: WebSocketPeer, sink: WebSocketPeer, direction: str, codes: list[int]
) -> None:
    """Relay messages from `source` to `sink` until `source` closes, then close `sink` with the
    same code. A failure on either side closes the other with 1011 (internal error) rather than
    leaving it hanging."""
    try:
        while True:
            msg = await source.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif kind is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif kind is WSMsgType.PING:
                await sink.ping(msg.data)
            elif kind is WSMsgType.PONG:
                await sink.pong(msg.data)
            elif kind is WSMsgType.CLOSE:
                codes.append(msg.data)
                await sink.close(code=msg.data, message=(msg.extra or "").encode())
                return
            else:  # CLOSING, CLOSED or ERROR: the source is gone
                code = source.close_code or aiohttp.WSCloseCode.INTERNAL_ERROR
                await sink.close(code=code)
                return
    except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
        # RuntimeError: aiohttp's "cannot write to closing transport" on a sink that closed
        # while this message was in flight. The other pump sees the close and ends too.
        log.info(
            "websocket %s ended: %s",
            direction,
            exc,
            extra={"event": "websocket_error", "direction": direction},
        )
        if not sink.closed:
            await sink.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR)
