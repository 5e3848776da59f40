"""Relaying an upstream response to the client as it arrives, chunk by chunk.

Nothing is buffered whole: each chunk read from the upstream is written to the client, and
`StreamResponse.write` waits for the client's socket to drain when its buffer is full, which
in turn stops reading from the upstream. Memory stays flat for any body size.

Once the head has gone out, an error can no longer be reported with a status: if the upstream
breaks mid-body the client connection is aborted, so the client sees a truncated transfer
instead of a body that silently ends early (or with garbage appended).

Around the answer: its interim 1xx answers go to an HTTP/1.1 client as they arrive, before it
(`interim_relay`; an HTTP/1.0 client must not get any, RFC 9110 section 15.2), and its trailer
fields, filtered by proxy.trailers, end the body of an answer relayed chunked; any other
answer (to an HTTP/1.0 client, or relayed with a length) drops them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import HttpVersion11, web
from aiohttp.http_writer import StreamWriter

from proxy.headers import HOP_BY_HOP
from proxy.trailers import trailer_block
from proxy.upstream import UpstreamError
from proxy.upstream.connection import InterimSink


class BodySource(Protocol):
    """An upstream answer's body as it arrives (proxy.upstream.UpstreamResponse)."""

    @property
    def done(self) -> bool: ...

    @property
    def trailers(self) -> list[tuple[bytes, bytes]] | None: ...

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
            writer = await response.prepare(request)
        except ConnectionError as exc:
            return RelayResult(0, client_error=f"client went away: {exc}")
        while True:
            chunk = source.take()
            last = source.done
            try:
                if last:
                    trailers = source.trailers
                    # aiohttp frames the answer chunked only for an HTTP/1.1 client and a
                    # body without a length: exactly when the client can take trailers.
                    if trailers and isinstance(writer, StreamWriter) and writer.chunked:
                        await _end_with_trailers(response, writer, chunk, trailers)
                    else:
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


async def _end_with_trailers(
    response: web.StreamResponse,
    writer: StreamWriter,
    chunk: bytes,
    trailers: list[tuple[bytes, bytes]],
) -> None:
    block = trailer_block(trailers)
    if not block:
        await response.write_eof(chunk)
        return
    if chunk:
        await response.write(chunk)
    # aiohttp's writer can only end a chunked body with an empty trailer section. With its
    # chunking turned off it writes bytes as given, so the last chunk and the trailer
    # section go out framed here.
    writer.chunked = False
    await response.write_eof(b"0\r\n" + block + b"\r\n")


_INTERIM_DROPPED = frozenset(name.encode() for name in HOP_BY_HOP)


def interim_head(status: int, reason: bytes, raw: list[tuple[bytes, bytes]]) -> bytes:
    """An upstream's 1xx answer as the client gets it: hop-by-hop fields (and those its
    `Connection` names) left out, everything else (`Link` of 103 Early Hints) as received."""
    nominated = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    lines += (
        b"%s: %s\r\n" % (name, value)
        for name, value in raw
        if name.lower() not in _INTERIM_DROPPED and name.lower() not in nominated
    )
    lines.append(b"\r\n")
    return b"".join(lines)


def interim_relay(request: web.BaseRequest) -> InterimSink | None:
    """What writes an upstream's 1xx answers to this client as they arrive, straight to its
    socket ahead of the answer; None for an HTTP/1.0 client. The writes need no waiting:
    HeadLimits bounds the interim bytes one exchange may bring."""
    if request.version < HttpVersion11:
        return None
    transport = request.transport

    def relay(status: int, reason: bytes, raw: list[tuple[bytes, bytes]]) -> None:
        if transport is not None and not transport.is_closing():
            transport.write(interim_head(status, reason, raw))

    return relay


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
