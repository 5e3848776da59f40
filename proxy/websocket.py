"""WebSocket pass-through: connect upstream first, then accept the client and pump both ways.

Both sides run with `autoping=False` and `autoclose=False`, so pings, pongs and the close
handshake are relayed rather than answered by the proxy: the two ends keep their own liveness
checks, and each sees the other's close code and reason, in either direction (as Envoy and
Traefik, which relay frames). Text and binary pass unchanged; compression is negotiated on
neither side, so frames are relayed as messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

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
_INTERNAL_ERROR = aiohttp.WSCloseCode.INTERNAL_ERROR
# RFC 6455 section 7.4.1 codes below 3000 that may appear in a close frame.
_SENDABLE_BELOW_3000 = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))

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
            request.headers,
            client_ip=request.remote or "",
            scheme=request.scheme,
            request_id=request_id,
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
                    autoclose=False,
                    compress=0,
                    max_msg_size=_NO_LIMIT,
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


@dataclass(frozen=True, slots=True)
class _Ending:
    """How one direction ended: the close frame its source sent, or `code=None` when the source
    went away (or a send failed) without one."""

    code: int | None
    reason: str = ""


async def relay(
    request: web.BaseRequest, upstream: aiohttp.ClientWebSocketResponse
) -> web.WebSocketResponse:
    """Accept the client with the subprotocol the upstream chose, then pump both ways until one
    side closes: its close code and reason go to the other side, and the other side's reply
    comes back as the answer to the first (the proxy answers no close handshake itself)."""
    protocols = (upstream.protocol,) if upstream.protocol else ()
    client = web.WebSocketResponse(
        protocols=protocols,
        autoping=False,
        autoclose=False,
        compress=False,
        max_msg_size=_NO_LIMIT,
    )
    await client.prepare(request)
    ending: _Ending | None = None
    try:
        async with asyncio.TaskGroup() as tasks:
            to_upstream = tasks.create_task(_pump(client, upstream, "client->upstream"))
            to_client = tasks.create_task(_pump(upstream, client, "upstream->client"))
            await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
            if to_client.done():
                ending = to_client.result()
                # A web socket closed while another task reads it drops the connection without
                # waiting for the peer's close reply; a cancelled read leaves it intact.
                to_upstream.cancel()
                await asyncio.wait((to_upstream,))
                await _close_both(first=upstream, second=client, ending=ending)
            else:
                ending = to_upstream.result()
                # The upstream's reader stays: a client web socket closed from another task
                # waits for the backend's reply itself, where a cancelled read would mark the
                # connection abnormal (1006) and skip the wait.
                await _close_both(first=client, second=upstream, ending=ending)
    finally:
        # The client may drop the TCP connection mid-relay, which cancels this handler: the
        # upstream still gets a close, with the client's code when it sent one.
        if not upstream.closed:
            sent = ending.code if ending is not None else None
            code = sent if sent is not None and _sendable(sent) else aiohttp.WSCloseCode.GOING_AWAY
            await upstream.close(code=code)
    return client


async def _close_both(*, first: WebSocketPeer, second: WebSocketPeer, ending: _Ending) -> None:
    """`first` sent `ending`: pass it to `second`, wait for its reply, and pass the reply back."""
    if ending.code is None:
        code = first.close_code
        code = code if code is not None and _sendable(code) else _INTERNAL_ERROR
        await second.close(code=code)
        await first.close(code=code)
        return
    sent = ending.code if _sendable(ending.code) else aiohttp.WSCloseCode.OK
    await second.close(code=sent, message=ending.reason.encode())
    reply = second.close_code
    # No usable reply (a timeout or a dropped connection): echo the code, as RFC 6455 suggests.
    await first.close(code=reply if reply is not None and _sendable(reply) else sent)


def _sendable(code: int) -> bool:
    """Codes a close frame may carry; 1005, 1006 and 1015 only ever describe a close locally,
    and 0 is aiohttp's mark for a close frame without a code."""
    return code in _SENDABLE_BELOW_3000 or 3000 <= code <= 4999


async def _pump(source: WebSocketPeer, sink: WebSocketPeer, direction: str) -> _Ending:
    """Relay messages from `source` to `sink` until `source` closes or fails; closing is left to
    the caller, which knows whether the other direction is still reading."""
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
                return _Ending(msg.data, msg.extra or "")
            else:  # CLOSING, CLOSED or ERROR: the source is gone, or being closed by the caller
                return _Ending(None)
    except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
        # RuntimeError: aiohttp's "cannot write to closing transport" on a sink that closed
        # while this message was in flight.
        log.info(
            "websocket %s ended: %s",
            direction,
            exc,
            extra={"event": "websocket_error", "direction": direction},
        )
        return _Ending(None)
