"""One keep-alive HTTP/1.1 connection to a backend: an asyncio.Protocol with httptools.

One exchange at a time, never pipelined. The request goes out as the caller wrote it; the
answer's head is parsed into raw (name, value) pairs and its body buffered until taken.
Reading pauses while more than `_READ_HIGH_BYTES` are buffered and untaken, so a slow client
holds at most that much of an upstream body in memory; writing waits on the transport
(proxy.upstream.sending). A HEAD answer has no body whatever its headers say; the parser
cannot be told so, and is replaced before the next exchange.

Interim 1xx answers are handed to the exchange's `InterimSink` as they arrive (the caller
relays them to its client), except `100 Continue`: the proxy answers a client's Expect itself
and sends the body unasked, so a backend's 100 answers nobody. The trailer section of a
chunked body is kept apart in `trailers`, never mixed into `headers`. Heads and trailer
sections are bounded by `HeadLimits` (proxy.upstream.limits).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterable, Callable
from typing import NoReturn, cast

import httptools

from proxy.upstream.failures import (
    BrokenResponse,
    FirstByteTimeout,
    NoResponse,
    RequestNotSent,
    StaleConnection,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.upstream.framing import ends_at_close, keeps_alive
from proxy.upstream.limits import (
    DEFAULT_HEAD_LIMITS,
    FIELD_OVERHEAD_BYTES,
    HeadLimits,
    HeadTooLarge,
    field_too_large,
    head_too_large,
    too_many_fields,
)
from proxy.upstream.sending import BodySender
from proxy.upstream.sockets import HungUp, SocketLike, bytes_acknowledged
from proxy.upstream.timers import Watchdog

_READ_HIGH_BYTES = 256 * 1024
_UNREACHABLE = frozenset(
    {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)
# What a status line adds beyond its reason phrase ("HTTP/1.1 200 ", CRLF, the head's last CRLF).
_STATUS_LINE_BYTES = 17

InterimSink = Callable[[int, bytes, list[tuple[bytes, bytes]]], None]
"""Takes an interim answer's status, reason and raw fields as it arrives; must not block."""


class UpstreamConnection(asyncio.Protocol):
    """The protocol side of one upstream connection; `UpstreamClient` drives its exchanges."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        watchdog: Watchdog,
        limits: HeadLimits = DEFAULT_HEAD_LIMITS,
        resend_unacknowledged: bool = True,
    ) -> None:
        self._loop = loop
        self._resend_unacknowledged = resend_unacknowledged
        self._watchdog = watchdog
        self._limits = limits
        self._parser = httptools.HttpResponseParser(self)
        # Mutable state of the connection:
        self._parser_spent = False  # after a HEAD answer: the parser still expects its body
        self.transport: asyncio.Transport | None = None
        self.closed = False  # lost or closing: never used again
        self.reusable = True  # cleared by Connection: close, errors, unfinished exchanges
        self.exchanges = 0  # exchanges finished on it; more than 0 means a reused connection
        self.hung_up: HungUp | None = None  # set by the client once connected
        self._sender = BodySender()
        self._written = 0  # bytes handed to the transport over the connection's life
        # Mutable state of the current exchange (reset by begin()):
        self._active = False
        self._head_only = False
        self._received = 0
        self._written_before = 0  # self._written when the exchange began
        self._unreceived = False  # the backend closed before any of the request reached it
        self._started = 0.0  # loop time the exchange began (total timeout)
        self._last_activity = 0.0  # loop time of the backend's last progress (idle timeout)
        self._waiter: asyncio.Future[None] | None = None
        self._interim = False
        self._interim_sink: InterimSink | None = None
        self._head_size = 0  # heads so far, interim ones included, as HeadLimits counts them
        self._chunk_open = False  # a chunk-size line arrived and no data since: maybe trailers
        self._trailer_bytes = 0  # raw bytes of reads spent wholly in the trailer section
        self._read_paused = False
        self.error: UpstreamError | None = None
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] | None = None  # of a chunked body, if any
        self._trailer_size = 0
        self.head_done = False
        self.complete = False
        self._body: list[bytes] = []
        self._buffered = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "busy" if self._active else "idle"
        return f"<UpstreamConnection {state}, {self.exchanges} exchanges>"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active:
            # Bytes nobody asked for: the backend is confused; the connection is done for.
            self.reusable = False
            self.abort()
            return
        self._received += len(data)
        self._last_activity = self._loop.time()
        in_trailers = self._chunk_open
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # A callback that refused the head already settled the exchange (first one wins).
            failure = BrokenResponse if self.head_done else NoResponse
            self.fail(failure(f"invalid response from upstream: {exc!r}"[:300]))
            return
        if not self.head_done:
            # Every byte so far belongs to a head (1xx answers have no body): this bounds one
            # endless field line, which the parser would buffer until it ends.
            limits = self._limits
            if self._received > limits.head_bytes:
                self.fail(head_too_large(self._received, limits, section="response head"))
        elif in_trailers and self._chunk_open and not self.complete:
            # A whole read without body data after a chunk-size line: the last chunk's
            # trailer section, bounded the same way.
            limits = self._limits
            self._trailer_bytes += len(data)
            if self._trailer_bytes > limits.head_bytes:
                self.fail(head_too_large(self._trailer_bytes, limits, section="trailer section"))

    def eof_received(self) -> bool | None:
        self.closed = True
        if self._active and self._received == 0:
            # A FIN acknowledges everything its sender's kernel had received. If it
            # acknowledges none of this request, the backend closed the connection before the
            # request reached it (its idle keep-alive close racing our write, or a backend
            # exiting): nothing saw it, so any method may be sent again.
            self._unreceived = self._request_unacknowledged()
        return None  # let the transport close; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._sender.resume()
        if not self._active or self.complete or self.error is not None:
            return
        if self.head_done:
            if ends_at_close(self.headers):
                self._message_done()
            else:
                self.fail(BrokenResponse(f"upstream closed mid-response: {exc or 'EOF'}"))
        elif isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
            # TCP_USER_TIMEOUT or keep-alive gave up (proxy.upstream.sockets; the kernel reports
            # ETIMEDOUT, or the host-unreachable error it met retransmitting): the peer
            # stopped answering, it did not close an idle connection.
            self.fail(NoResponse(f"upstream unreachable: {exc}"))
        elif self._unreceived:
            self.fail(
                RequestNotSent("upstream closed the connection before the request reached it")
            )
        elif self._received == 0 and self.exchanges > 0:
            if (
                self._resend_unacknowledged
                and isinstance(exc, ConnectionResetError)
                and self._request_unacknowledged()
            ):
                # A reset proves less than a FIN: the kernel does not count the reset's
                # acknowledgement, and a backend's kernel may delay its ACK while the backend
                # reads. A reset before a byte of the request was acknowledged, on a connection
                # that served before, is in practice a backend exiting with the request unread
                # in its buffer (every POST that nginx's fast shutdown cost looked so), and
                # browsers resend any method on a reused connection reset before an answer.
                self.fail(
                    RequestNotSent(
                        "reused upstream connection reset before the request was acknowledged"
                    )
                )
            else:
                self.fail(
                    StaleConnection(
                        f"reused upstream connection closed before any response: {exc or 'EOF'}"
                    )
                )
        else:
            self.fail(NoResponse(f"upstream closed before a response: {exc or 'EOF'}"))

    def pause_writing(self) -> None:
        self._sender.pause()

    def resume_writing(self) -> None:
        self._sender.resume()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # A second answer to one request: the backend is confused.
            self.reusable = False
            self.abort()
            return
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        if not self.complete:
            # The parser hands the reason over in pieces when it spans reads.
            self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        # Checked against HeadLimits when the head is complete (on_headers_complete).
        if not self.head_done:
            self.headers.append((name, value))
        elif not self.complete:  # after a HEAD answer nothing more is expected
            self._on_trailer(name, value)

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        size = len(name) + len(value) + FIELD_OVERHEAD_BYTES
        trailers = self.trailers
        if trailers is None:
            trailers = self.trailers = []
        trailers.append((name, value))
        self._trailer_size += size
        if size > limits.field_bytes:
            self._refuse(field_too_large(size, limits, section="trailer section"))
        if self._trailer_size > limits.head_bytes:
            self._refuse(head_too_large(self._trailer_size, limits, section="trailer section"))
        if len(trailers) > limits.field_count:
            self._refuse(too_many_fields(len(trailers), limits, section="trailer section"))

    def _measure_head(self, limits: HeadLimits) -> None:
        # Counted as HeadLimits says: each line's name, value and separators; the heads of
        # the exchange (interim ones included) together.
        size = _STATUS_LINE_BYTES + len(self.reason)
        for name, value in self.headers:
            line = len(name) + len(value) + FIELD_OVERHEAD_BYTES
            if line > limits.field_bytes:
                self._refuse(field_too_large(line, limits, section="response head"))
            size += line
        self._head_size += size
        if self._head_size > limits.head_bytes:
            self._refuse(head_too_large(self._head_size, limits, section="response head"))

    def _refuse(self, error: HeadTooLarge) -> NoReturn:
        # Settle the exchange, then stop the parser: it raises what a callback raised.
        self.fail(error)
        raise error

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        limits = self._limits
        if len(self.headers) > limits.field_count:
            self._refuse(too_many_fields(len(self.headers), limits, section="response head"))
        # While the exchange has brought no more bytes than one field line may have, no line
        # and no head can be over its limit (field_bytes <= head_bytes): the common case
        # costs one comparison, not a pass over the fields.
        if status < 200 or self._received > limits.field_bytes:
            self._measure_head(limits)
        if status < 200:
            self._interim = True  # 103 Early Hints and the like: not the answer
            sink = self._interim_sink
            if sink is not None and status != 100:
                sink(status, self.reason, self.headers)
            return
        self.status = status
        self.head_done = True
        if self._head_only:
            # Whatever Content-Length says, no body follows a HEAD answer. The parser expects
            # one, so it is replaced before the next exchange.
            self._parser_spent = True
            self.reusable = self.reusable and keeps_alive(
                self.headers, self._parser.get_http_version()
            )
            self._message_done()
        else:
            self._wake()

    def on_chunk_header(self) -> None:
        self._chunk_open = True

    def on_body(self, body: bytes) -> None:
        self._chunk_open = False
        if self.complete:
            self.reusable = False  # body bytes after a HEAD answer
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH_BYTES and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.headers = []
            self.reason = b""
            return
        if self.complete:
            return  # the HEAD case: already settled
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._message_done()

    # -- the exchange, driven by UpstreamClient and UpstreamResponse -----------------------

    def begin(self, *, head_only: bool, interim: InterimSink | None = None) -> None:
        """Start an exchange: reset its state; the watchdog keeps an eye on its deadlines.
        `interim` gets the 1xx answers that precede the final one (100 Continue aside)."""
        if self._parser_spent:
            self._parser = httptools.HttpResponseParser(self)
            self._parser_spent = False
        self._active = True
        self._head_only = head_only
        self._interim_sink = interim
        self.headers = []
        self.trailers = None
        self._head_size = self._trailer_size = self._trailer_bytes = 0
        self._chunk_open = False
        self._interim = False
        self._received = 0
        self._written_before = self._written
        self._unreceived = False
        self.error = None
        self.status = 0
        self.head_done = False
        self.complete = False
        self._started = self._last_activity = self._loop.time()
        self._watchdog.watch(self)

    def usable(self) -> bool:
        """Not known to be closed: the transport is open and the backend sent no EOF."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        # The backend's FIN or RST may be in the kernel, not yet read by the event loop.
        return self.hung_up is None or not self.hung_up()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self._written += len(data)
        self.transport.write(data)

    def send_body(self, chunks: AsyncIterable[bytes], *, chunked: bool) -> None:
        """Stream a request body alongside waiting for the answer (proxy.upstream.sending)."""
        self._sender.start(self, chunks, chunked=chunked)

    def write_body(self, pieces: tuple[bytes, ...]) -> None:
        assert self.transport is not None
        self._written += sum(map(len, pieces))
        if len(pieces) == 1:
            self.transport.write(pieces[0])
        else:
            self.transport.writelines(pieces)
        self._last_activity = self._loop.time()  # progress counts for the idle timer

    def event(self) -> asyncio.Future[None]:
        """A future resolved at the next change: head, body, end or failure."""
        self._waiter = self._loop.create_future()
        return self._waiter

    async def wait_head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self.event()

    def take(self) -> bytes:
        """Everything buffered so far (b"" if nothing); reading resumes if it was paused."""
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        self._body = []
        self._buffered = 0
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self._last_activity = self._loop.time()
            self.transport.resume_reading()
        return data

    @property
    def drained(self) -> bool:
        """The whole body arrived and was taken."""
        return self.complete and not self._body

    async def wait_body(self) -> None:
        """Until more body is buffered or it ended; raises the exchange's failure."""
        if not self._body and not self.complete:
            if self.error is not None:
                raise self.error
            await self.event()
            if not self._body and self.error is not None:
                raise self.error

    def finish(self) -> bool:
        """End the exchange; True if the connection may serve another one."""
        self._active = False
        self._interim_sink = None  # it holds the client's request
        self._watchdog.unwatch(self)
        self._sender.cancel()
        self.exchanges += 1
        self._body = []
        self._buffered = 0
        ok = self.complete and self._sender.sent and self.reusable and not self.closed
        if not ok:
            self.abort()
        return ok

    def fail(self, error: UpstreamError) -> None:
        """Settle the exchange with `error` (first one wins) and drop the connection."""
        if self.error is None:
            self.error = error
        self.reusable = False
        self._watchdog.unwatch(self)
        self._wake()
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _request_unacknowledged(self) -> bool:
        """The backend's kernel acknowledged none of the current request's bytes (False where
        the kernel cannot tell)."""
        transport = self.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        acked = bytes_acknowledged(cast("SocketLike | None", sock))
        return acked is not None and acked <= self._written_before

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _message_done(self) -> None:
        self.complete = True
        self._watchdog.unwatch(self)
        self._wake()

    def check(self, now: float) -> None:
        """Fail the exchange past the total limit, without a byte of answer for the first-byte
        limit once the request went out, or after the idle limit of backend silence (reading
        paused or data untaken is the client being slow: that does not count)."""
        watchdog = self._watchdog
        total = watchdog.total_seconds
        first_byte = watchdog.first_byte_seconds
        if total is not None and now - self._started >= total:
            self.fail(UpstreamTimeout(f"upstream exchange over its {total:g} s limit"))
        elif self._read_paused or self._body:
            self._last_activity = now
        elif (
            first_byte is not None
            and not self._received
            and self._sender.sent
            and now - self._last_activity >= first_byte
        ):
            # The whole request went out (its last write is the last activity) and not a
            # byte came back.
            self.fail(FirstByteTimeout(f"no answer from upstream within {first_byte:g} s"))
        elif now - self._last_activity >= watchdog.idle_seconds:
            self.fail(UpstreamTimeout(f"upstream silent for {watchdog.idle_seconds:g} s"))
