"""Relaying an upstream response to the client as it arrives, chunk by chunk.

Nothing is buffered whole: each chunk read from the upstream is written to the client, and
`StreamResponse.write` waits for the client's socket to drain when its buffer is full, which
in turn stops reading from the upstream. Memory stays flat for any body size.

Once the head has gone out, an error can no longer be reported with a status: if the upstream
breaks mid-body the client connection is aborted, so the client sees a truncated transfer
instead of a body that silently ends early (or with garbage appended).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

# What reading an upstream body raises when the upstream breaks or stalls mid-body.
UPSTREAM_READ_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class RelayedResponse(web.StreamResponse):
    """A StreamResponse whose head waits for the first body write, so a small answer goes out
    in one system call instead of two or three. `relay_response` flushes the head on its own
    whenever the upstream has nothing more to give yet, so a slow body never delays it."""

    _send_headers_immediately = False


@dataclass(frozen=True, slots=True)
class RelayResult:
    bytes_sent: int
    upstream_error: str | None = None  # the upstream broke mid-body
    client_error: str | None = None  # the client went away mid-body


async def relay_response(
    request: web.BaseRequest,
    upstream_response: aiohttp.ClientResponse,
    response: web.StreamResponse,
) -> RelayResult:
    """Send `response` (head already filled in) and pipe the upstream body into it."""
    sent = 0
    complete = False
    try:
        try:
            await response.prepare(request)
        except ConnectionError as exc:
            return RelayResult(0, client_error=f"client went away: {exc}")
        content = upstream_response.content
        while True:
            try:
                # What already arrived goes out without a wait; only when nothing is buffered
                # does the (possibly still buffered) head go out before waiting for more.
                chunk = content.read_nowait()
                if not chunk and not content.at_eof():
                    await response.write(b"")
                    chunk = await content.readany()
            except UPSTREAM_READ_ERRORS as exc:
                _abort(request)
                return RelayResult(sent, upstream_error=f"upstream broke mid-response: {exc!r}")
            except ConnectionError as exc:
                return RelayResult(sent, client_error=f"client went away: {exc}")
            try:
                if content.at_eof():
                    # The last piece: head (if still held), body and end in one write.
                    await response.write_eof(chunk)
                    sent += len(chunk)
                    break
                await response.write(chunk)
            except ConnectionError as exc:
                return RelayResult(sent, client_error=f"client went away: {exc}")
            sent += len(chunk)
        complete = True
        return RelayResult(sent)
    finally:
        if complete:
            upstream_response.release()  # the connection goes back to the keep-alive pool
        else:
            upstream_response.close()  # half-read: the connection cannot be reused


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
