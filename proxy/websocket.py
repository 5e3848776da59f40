"""WebSocket pass-through: connect upstream first, then accept the client and pump both ways.

Both sides run with `autoping=False`, so pings and pongs are relayed rather than answered by
the proxy: the two ends keep their own liveness checks. Text, binary and close codes pass
unchanged; compression is negotiated on neither side, so frames are relayed as messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from proxy.errors import NO_HEALTHY_BACKENDS, Failure, classify, error_response
from proxy.headers import upstream_request_headers
from proxy.model import Endpoint
from proxy.outcome import Outcome
from proxy.pool import Pool

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
# Takes a failed endpoint out of rotation and records the failure (Failover.note_failure).
NoteFailure = Callable[[str, Endpoint, Failure, Outcome], None]


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


class WebSocketForwarder:
    """Forwards one upgrade request to one endpoint; a failed handshake is answered (502, or
    the failure's status), not retried on another endpoint."""

    __slots__ = ("_note_failure", "_pool", "_session", "_timeout")

    def __init__(
        self,
        *,
        pool: Pool,
        session: aiohttp.ClientSession,
        connect_seconds: float,
        note_failure: NoteFailure,
    ) -> None:
        self._pool = pool
        self._session = session
        self._timeout = aiohttp.ClientWSTimeout(ws_close=connect_seconds)
        self._note_failure = note_failure

    async def forward(
        self,
        request: web.BaseRequest,
        outcome: Outcome,
        *,
        upstream: str,
        hash_key: str | None,
        request_id: str,
    ) -> web.StreamResponse:
        out_headers = upstream_request_headers(
            request.headers, client_ip=request.remote or "", scheme="http", request_id=request_id
        )
        endpoint = self._pool.pick(upstream, hash_key=hash_key)
        if endpoint is None:
            return error_response(503, NO_HEALTHY_BACKENDS)
        outcome.backend = endpoint.key
        url = URL(endpoint.base_url + request.raw_path, encoded=True)
        self._pool.acquire(endpoint)
        try:
            try:
                upstream_ws = await self._session.ws_connect(
                    url,
                    headers=upstream_handshake_headers(out_headers),
                    protocols=requested_protocols(request),
                    autoping=False,
                    compress=0,
                    max_msg_size=0,
                    timeout=self._timeout,
                )
            except aiohttp.WSServerHandshakeError as exc:
                outcome.error = f"upstream refused the websocket handshake: {exc.status}"
                return error_response(502)
            except (TimeoutError, aiohttp.ClientError) as exc:
                failure = classify(exc)
                self._note_failure(upstream, endpoint, failure, outcome)
                return error_response(failure.status)
            outcome.status = 101
            return await relay(request, upstream_ws)
        finally:
            self._pool.release(endpoint)


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
