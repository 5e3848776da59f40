"""Relaying an upstream response to the client as it arrives, chunk by chunk.

Nothing is buffered whole: each chunk read from the upstream is written to the client, and
`StreamResponse.write` waits for the client's socket to drain when its buffer is full, which
in turn stops reading from the upstream. Memory stays flat for any body size.

Once the head has gone out, an error can no longer be reported with a status: if the upstream
breaks mid-body the client connection is aborted, so the client sees a truncated transfer
instead of a body that silently ends early (or with garbage appended).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from proxy.upstream import UpstreamError


class BodySource(Protocol):
    """An upstream answer's body as it arrives (proxy.upstream.UpstreamResponse)."""

    @property
    def done(self) -> bool: ...

    def take(self) -> bytes: ...

    async def wait(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class RelayedResponse(web.StreamResponse):
    """A StreamResponse whose head waits for the first body write, so a small answer goes out
    in one system call instead of two or three. `relay_response` flushes the head on its own
    whenever the upstream has nothing more to give yet, so a slow body never delays it."""

    _send_headers_immediately = False


class SentResponse(web.StreamResponse):
    """A response `send_whole` already wrote to the client's socket, head and body in one
    write. aiohttp's request handler takes it as finished: `_eof_sent` turns its prepare() and
    write_eof() into no-ops and `_keep_alive` says whether the connection stays open. These
    are private attributes, stable across aiohttp 3.x (pinned <4 in pyproject); the
    integration tests in tests/integration/proxy catch a change."""

    def __init__(self, status: int, *, keep_alive: bool) -> None:
        super().__init__(status=status)
        self._eof_sent = True
        self._keep_alive = keep_alive


@dataclass(frozen=True, slots=True)
class RelayResult:
    bytes_sent: int
    upstream_error: str | None = None  # the upstream broke mid-body
    client_error: str | None = None  # the client went away mid-body


async def relay_response(
    request: web.BaseRequest, source: BodySource, response: web.StreamResponse
) -> RelayResult:
    """Send `response` (head already filled in) and pipe the upstream body into it."""
    sent = 0
    complete = False
    try:
        try:
            await response.prepare(request)
        except ConnectionError as exc:
            return RelayResult(0, client_error=f"client went away: {exc}")
        while True:
            chunk = source.take()
            last = source.done
            try:
                if last:
                    # The last piece: head (if still held), body and end in one write.
                    await response.write_eof(chunk)
                elif chunk:
                    await response.write(chunk)
                else:
                    await response.write(b"")  # the head goes out before any wait
            except ConnectionError as exc:
                return RelayResult(sent, client_error=f"client went away: {exc}")
            sent += len(chunk)
            if last:
                break
            if not chunk:
                try:
                    await source.wait()
                except UpstreamError as exc:
                    _abort(request)
                    return RelayResult(sent, upstream_error=f"upstream broke mid-response: {exc}")
        complete = True
        return RelayResult(sent)
    finally:
        if complete:
            source.release()  # the connection goes back to the keep-alive pool
        else:
            source.close()  # half-read: the connection cannot be reused


async def send_whole(
    request: web.BaseRequest, source: BodySource, head: bytes, body: bytes
) -> RelayResult:
    """The fast path for an answer that arrived whole before the proxy looked at it (most
    small ones): `head` (built by proxy.headers.downstream_head_from_raw) and `body` in one
    write, without aiohttp's response machinery, then wait while the client's socket is full,
    as StreamResponse.write would."""
    try:
        transport = request.transport
        if transport is None or transport.is_closing():
            return RelayResult(0, client_error="client went away")
        transport.write(head + body)
        await request.writer.drain()
        return RelayResult(len(body))
    except ConnectionError as exc:
        return RelayResult(0, client_error=f"client went away: {exc}")
    finally:
        source.release()


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
