"""The upstream HTTP/1.1 client: keep-alive connections per endpoint, one exchange each.

Why not aiohttp's client: per request it builds a ClientRequest, a URL, a header multidict,
timers and trace hooks, which together cost more than everything else the proxy does. This
client takes the request head as ready bytes and hands back the raw response head and a body
the caller drains (`UpstreamResponse`).

Pooling: idle connections per (host, port), last in first out, dropped once idle for
`keepalive_seconds` (a sweep timer closes them while the pool is quiet) or as soon as the
backend closes them. A connection is reused only after a complete exchange that both sides
meant to keep alive.

Stale connections: a reused connection can be closed by the backend just as a request goes
out. If it closes without a byte of response, the request is sent again once on a fresh
connection, but only when `retry_stale` says that is safe (the caller passes: idempotent
method and a body held in memory or none). Otherwise `StaleConnection` reaches the caller: a
POST may have been processed before the backend went away, as with any broken connection.
Unless the backend's kernel acknowledged none of the request (proxy.upstream.sockets): then
the close raises `RequestNotSent` and any method goes again on a fresh connection (a streamed
body already partly read from the client cannot). That is proven when the backend's FIN
acknowledges none of it; for a reset it is the browsers' rule, `resend_unacknowledged`
(see UpstreamConnection.connection_lost).

Hung-up connections: before a pooled connection is reused, one poll asks the kernel whether
the backend's FIN or RST already arrived (the event loop may not have read it yet; a backend
shutting down closes all its idle connections at once). Such a connection is dropped and the
next one taken, so a request is never written where it cannot be read. A fresh connection whose
first write fails at once (the backend accepted and reset it) raises `RequestNotSent`: like a
refused connect, nothing reached the backend, so any request may go elsewhere.

Vanished peers (no FIN, no RST: proxy.upstream.sockets): TCP_USER_TIMEOUT and keep-alive
fail a connection whose peer stopped acknowledging; `first_byte_timeout_seconds` bounds the
wait for an answer that never starts; `close_idle()` drops the idle connections of endpoints
that left the pool or the rotation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable

from proxy.model import Endpoint
from proxy.upstream.connection import InterimSink, UpstreamConnection
from proxy.upstream.failures import (
    ConnectFailed,
    ConnectTimeout,
    RequestNotSent,
    StaleConnection,
    UpstreamError,
)
from proxy.upstream.limits import DEFAULT_HEAD_LIMITS, HeadLimits
from proxy.upstream.sockets import HungUp, SocketOptions
from proxy.upstream.timers import Watchdog

Body = bytes | AsyncIterable[bytes] | None


class UpstreamResponse:
    """An answer whose head arrived. Drain it with `take()`/`wait()` until `done`, then
    `release()` (the connection goes back to the pool when it can); `close()` otherwise."""

    __slots__ = ("_client", "_conn", "_key", "headers", "reason_bytes", "status")

    def __init__(self, client: UpstreamClient, key: tuple[str, int], conn: UpstreamConnection):
        self._client = client
        self._key = key
        self._conn = conn
        self.status = conn.status
        self.reason_bytes = conn.reason
        self.headers = conn.headers  # raw (name, value) pairs, as received

    @property
    def reason(self) -> str:
        return self.reason_bytes.decode("latin-1")

    @property
    def trailers(self) -> list[tuple[bytes, bytes]] | None:
        """The trailer section of a chunked body, raw, once it arrived (None if empty)."""
        return self._conn.trailers

    def take(self) -> bytes:
        """The body bytes buffered so far, b"" if none."""
        return self._conn.take()

    @property
    def done(self) -> bool:
        """The whole body arrived and was taken."""
        return self._conn.drained

    @property
    def complete(self) -> bool:
        """The whole body arrived (some of it perhaps not taken yet)."""
        return self._conn.complete

    async def wait(self) -> None:
        """Until more body is buffered or it ended; raises BrokenResponse/UpstreamTimeout."""
        await self._conn.wait_body()

    def release(self) -> None:
        conn = self._conn
        if conn.finish():
            self._client.park(self._key, conn)

    def close(self) -> None:
        self._conn.reusable = False
        self._conn.finish()


class UpstreamClient:
    """Sends requests to endpoints over pooled keep-alive connections."""

    def __init__(
        self,
        *,
        connect_timeout_seconds: float,
        idle_timeout_seconds: float,
        keepalive_seconds: float,
        total_timeout_seconds: float | None = None,
        first_byte_timeout_seconds: float | None = None,
        resend_unacknowledged: bool = True,
        socket_options: SocketOptions | None = None,
        head_limits: HeadLimits = DEFAULT_HEAD_LIMITS,
    ) -> None:
        self._connect_timeout = connect_timeout_seconds
        self._resend_unacknowledged = resend_unacknowledged
        self._head_limits = head_limits
        self._keepalive = keepalive_seconds
        self._socket_options = socket_options or SocketOptions()
        self._watchdog = Watchdog(
            idle_seconds=idle_timeout_seconds,
            total_seconds=total_timeout_seconds,
            first_byte_seconds=first_byte_timeout_seconds,
        )
        # Mutable state: idle connections per (host, port) with the loop time they went idle,
        # oldest first; the pending sweep of expired ones.
        self._idle: dict[tuple[str, int], list[tuple[UpstreamConnection, float]]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    def __repr__(self) -> str:
        # Connections the backend closed but the pool has not dropped yet do not count.
        idle = sum(not conn.closed for conns in self._idle.values() for conn, _ in conns)
        return f"<UpstreamClient {idle} idle connections to {len(self._idle)} endpoints>"

    async def send(
        self,
        endpoint: Endpoint,
        head: bytes,
        body: Body = None,
        *,
        chunked: bool = False,
        head_only: bool = False,
        retry_stale: bool = False,
        interim: InterimSink | None = None,
    ) -> UpstreamResponse:
        """Send `head` (the request line and headers, CRLF CRLF included) and `body`, framed
        by the head (Content-Length) or, with `chunked`, in chunks; return once the answer's
        head arrived. `head_only`: a HEAD request, whose answer has no body. `interim` gets
        the 1xx answers that come before it."""
        key = (endpoint.host, endpoint.port)
        conn = self._idle_connection(key)
        fresh = conn is None
        while True:
            if conn is None:
                conn = await self._connect(key)
            conn.begin(head_only=head_only, interim=interim)
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                # One write for the usual small request.
                conn.write(head + body if isinstance(body, bytes) else head)
            if transport is None or transport.is_closing():
                # Closed before the write (the backend hung up on a fresh connection while
                # the loop ran other work), or the write failed at once (its RST was in):
                # not a byte went out.
                conn.reusable = False
                conn.finish()
                if not fresh:
                    conn, fresh = None, True
                    continue
                raise RequestNotSent(
                    f"connection to {key[0]}:{key[1]} closed before the request was written"
                )
            if body is not None and not isinstance(body, bytes):
                conn.send_body(body, chunked=chunked)
            try:
                # Waited for here rather than in a coroutine of the connection's: every
                # request passes this await, and each nested coroutine costs on the way.
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.event()
            except (UpstreamError, asyncio.CancelledError) as exc:
                conn.reusable = False
                conn.finish()
                if not fresh and (
                    (isinstance(exc, RequestNotSent) and not isinstance(body, AsyncIterable))
                    or (isinstance(exc, StaleConnection) and retry_stale)
                ):
                    # The backend closed a pooled connection as the request went out: it is
                    # alive, so the request goes to it again on a fresh connection. When the
                    # close provably came before the request (RequestNotSent), whatever its
                    # method; otherwise (StaleConnection) only if the caller allows.
                    conn, fresh = None, True
                    continue
                raise
            return UpstreamResponse(self, key, conn)

    def park(self, key: tuple[str, int], conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange finished cleanly for the next request."""
        if self._closed or conn.closed:
            conn.abort()
            return
        loop = asyncio.get_running_loop()
        self._idle.setdefault(key, []).append((conn, loop.time()))
        if self._sweep is None:
            self._sweep = loop.call_later(self._keepalive, self._expire)

    def close_idle(self, endpoints: Iterable[Endpoint]) -> int:
        """Close the idle connections to `endpoints` now (they left the pool or the rotation:
        a peer that vanished would hold the next request on them); return how many."""
        closed = 0
        for endpoint in endpoints:
            for conn, _ in self._idle.pop((endpoint.host, endpoint.port), ()):
                closed += not conn.closed
                conn.abort()
        return closed

    async def close(self) -> None:
        """Close every idle connection; connections in use close when their exchange ends."""
        self._closed = True
        self._watchdog.close()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.abort()

    def _idle_connection(self, key: tuple[str, int]) -> UpstreamConnection | None:
        conns = self._idle.get(key)
        if not conns:
            return None
        oldest_allowed = asyncio.get_running_loop().time() - self._keepalive
        while conns:
            conn, since = conns.pop()
            if not conn.closed and since >= oldest_allowed and conn.usable():
                return conn
            conn.abort()
        return None

    async def _connect(self, key: tuple[str, int]) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        watchdog = self._watchdog
        limits = self._head_limits
        resend = self._resend_unacknowledged
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(
                        loop, watchdog=watchdog, limits=limits, resend_unacknowledged=resend
                    ),
                    *key,
                )
        except TimeoutError:
            raise ConnectTimeout(f"connect to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise ConnectFailed(exc) from exc
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            try:
                self._socket_options.apply(sock)
                conn.hung_up = HungUp(sock.fileno())
            except OSError:
                # Closed meanwhile: the request's first write finds that out (RequestNotSent).
                pass
        return conn

    def _expire(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        oldest_allowed = loop.time() - self._keepalive
        next_due: float | None = None
        for key, conns in list(self._idle.items()):
            kept = []
            for conn, since in conns:
                if conn.closed or since < oldest_allowed:
                    conn.abort()
                else:
                    kept.append((conn, since))
            if kept:
                self._idle[key] = kept
                first = kept[0][1] + self._keepalive
                next_due = first if next_due is None else min(next_due, first)
            else:
                del self._idle[key]
        if next_due is not None:
            self._sweep = loop.call_at(next_due, self._expire)
