"""The proxy's own answers: short plain-text responses, one per failure kind.

Every error the client sees from the proxy itself (rather than relayed from an upstream)
is built here, so status, body and headers stay consistent across the handler and the
connection-level guards.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

NO_HEALTHY_BACKENDS = "No healthy backends available"
NO_ROUTE = "No route"


def error_response(
    status: int, text: str | None = None, *, request_id: str | None = None, close: bool = False
) -> web.Response:
    """A plain-text error. `close` ends the connection after it: used when the request body
    was not (or not fully) read, so the next bytes on the connection cannot be trusted."""
    body = text if text is not None else HTTPStatus(status).phrase
    response = web.Response(status=status, text=body + "\n", content_type="text/plain")
    if request_id is not None:
        response.headers["X-Request-ID"] = request_id
    if close:
        response.force_close()
    return response


class BodyTooLarge(Exception):
    """A streamed request body grew past `limits.max_body_bytes`."""


class ClientBodyError(Exception):
    """Reading the client's request body failed (client went away or sent a broken body)."""
