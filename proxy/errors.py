"""The proxy's own answers: short plain-text responses, one per failure kind.

Every error the client sees from the proxy itself (rather than relayed from an upstream)
is built here, so status, body and headers stay consistent across the handler and the
connection-level guards.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
from aiohttp import web

from proxy import upstream

NO_HEALTHY_BACKENDS = "No healthy backends available"
NO_ROUTE = "No route"


def error_response(
    status: int, text: str | None = None, *, request_id: str | None = None, close: bool = False
) -> web.Response:
    """A plain-text error. `close` ends the connection after it: used when the request body
    was not (or not fully) read, so the next bytes on the connection cannot be trusted."""
    body = text if text is not None else HTTPStatus(status).phrase
    response = web.Response(status=status, text=body, content_type="text/plain")
    if request_id is not None:
        response.headers["X-Request-ID"] = request_id
    if close:
        response.force_close()
    return response


class BodyTooLarge(Exception):
    """A streamed request body grew past `limits.max_body_bytes`."""


class ClientBodyError(Exception):
    """Reading the client's request body failed (client went away or sent a broken body)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, classified. `nothing_sent`: the upstream cannot have seen the request
    (connect failed), so any method may go elsewhere; otherwise only a replayable idempotent one."""

    kind: str
    status: int
    nothing_sent: bool
    reason: str
    # False when the failure says nothing about the backend's health (a keep-alive race):
    # the endpoint then stays in rotation.
    backend_fault: bool = True
    # True when another endpoint of the same application would answer alike (a response head
    # over the limits): never retried.
    final: bool = False

    def retryable(self, *, idempotent: bool, replayable: bool) -> bool:
        if self.kind == "timeout" or self.final:
            # A slow backend is not made faster by sending it more work; a final failure
            # would only repeat. (A first-byte timeout is a backend that stopped answering:
            # an idempotent request may go elsewhere.)
            return False
        return replayable and (self.nothing_sent or idempotent)


def classify(exc: BaseException) -> Failure:
    """Map a client exception (proxy.upstream's, or aiohttp's for WebSockets) raised before
    the response head arrived."""
    if isinstance(exc, upstream.UpstreamError):
        return _classify_upstream(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure("connect", 502, True, f"connect failed: {exc.os_error}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Failure("connect_timeout", 502, True, "connect timed out")
    if isinstance(exc, asyncio.TimeoutError):  # sock_read idle or the total timeout
        return Failure("timeout", 504, False, "upstream timed out")
    return Failure("reset", 502, False, f"no response: {_brief(exc)}")


def _classify_upstream(exc: upstream.UpstreamError) -> Failure:
    if isinstance(exc, upstream.ConnectFailed):
        return Failure("connect", 502, True, str(exc))
    if isinstance(exc, upstream.ConnectTimeout):
        return Failure("connect_timeout", 502, True, "connect timed out")
    if isinstance(exc, upstream.RequestNotSent):
        return Failure("not_sent", 502, True, str(exc))
    if isinstance(exc, upstream.FirstByteTimeout):
        return Failure("first_byte_timeout", 504, False, f"upstream timed out: {exc}")
    if isinstance(exc, upstream.UpstreamTimeout):
        return Failure("timeout", 504, False, f"upstream timed out: {exc}")
    if isinstance(exc, upstream.HeadTooLarge):
        # nginx answers "upstream sent too big header" with 502 and no retry by default. The
        # backend is alive and answering: it stays in rotation.
        return Failure("head_too_large", 502, False, str(exc), backend_fault=False, final=True)
    if isinstance(exc, upstream.StaleConnection):
        # The backend closed an idle connection as the request went out: it is alive, so
        # this must not take it out of rotation (see Failure.backend_fault).
        return Failure("stale", 502, False, f"no response: {exc}", backend_fault=False)
    return Failure("reset", 502, False, f"no response: {_brief(exc)}")


def _brief(exc: BaseException) -> str:
    # Client-library messages can quote kilobytes of what the upstream sent; logs get a taste.
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"
