"""Connection-level guards on aiohttp's HTTP server: a request-head deadline, 431, and
HTTP/1.1 status lines on the answers to requests too broken to parse.

aiohttp has no client header timeout: its keep-alive timer is the only bound on a client that
dribbles a request head one byte at a time (slowloris), and that timer is long by design.
`GuardedRequestHandler` arms its own timer whenever the connection is waiting for a request
head and cancels it as soon as the parser has produced a whole one. It also answers
oversized heads with 431 where aiohttp answers 400, and answers malformed requests itself:
aiohttp would put them to a placeholder request of version 1.0 and answer `HTTP/1.0 400`,
even to an HTTP/1.1 client.

This leans on RequestHandler internals (`_messages`, `_request_in_progress`, `_upgraded`,
`_payload_parser`), stable across aiohttp 3.x (pinned <4 in pyproject); the integration tests
in tests/integration/proxy/test_bad_input.py catch a change.
"""

from __future__ import annotations

import asyncio
import logging
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.relay import SentResponse

log = logging.getLogger("kubeferry.server")

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
    b"Request Timeout\n"
)


def closing_error_bytes(status: int) -> bytes:
    """A whole plain-text error answer, HTTP/1.1, ending the connection: for a request too
    broken to parse, whose version is unknown. RFC 9110 section 6.2 lets a server answer in
    the highest version it speaks (nginx does, to every client); aiohttp would say HTTP/1.0."""
    phrase = HTTPStatus(status).phrase
    body = f"{phrase}\n".encode()
    head = (
        f"HTTP/1.1 {int(status)} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def is_oversized_head(exc: BaseException | None) -> bool:
    """A request line or header field too long, or too many header fields."""
    if isinstance(exc, LineTooLong):
        return True
    # aiohttp raises a plain BadHttpMessage for the header count (both parsers).
    return isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol plus a request-head deadline and 431 answers."""

    __slots__ = ("_head_timeout", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout_seconds
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A client that connects and sends nothing is waiting-for-a-head too.
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Runs for every read: the common case (a whole head in one read, no timer armed)
        # costs two attribute checks.
        if self._messages or self._request_in_progress or self._upgraded:
            if self._head_timer is not None:
                self._disarm()  # a whole head arrived (or a body / frames are flowing)
        elif self._head_timer is None and self._payload_parser is None:
            self._arm()  # first bytes of a head on a kept-alive connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self._loop.call_later(self._head_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        log.warning(
            "client %s sent no complete request head within %.1f s; closing",
            peer,
            self._head_timeout,
            extra={"event": "client_header_timeout", "client": str(peer)},
        )
        self.transport.write(_REQUEST_TIMEOUT)
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or exc is None:
            return super().handle_error(request, status, exc, message)
        # A malformed request is the client's problem, not ours: one warning line, no
        # traceback (aiohttp would log it as an exception).
        if is_oversized_head(exc):
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        log.warning(
            "rejected malformed request from %s: %s",
            request.remote,
            message or exc,
            extra={"event": "bad_request", "status": int(status), "client": request.remote},
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(closing_error_bytes(status))
        return SentResponse(status, keep_alive=False)


class GuardedServer(web.Server):
    """`web.Server` whose connections get `GuardedRequestHandler`."""

    def __init__(self, handler: Any, *, head_timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._head_timeout = head_timeout_seconds

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self, loop=self._loop, head_timeout_seconds=self._head_timeout, **self._kwargs
        )
