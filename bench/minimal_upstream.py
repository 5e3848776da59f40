"""About the least an asyncio HTTP/1.1 client can do, as a yardstick for kubeferry's
(proxy.upstream): one `asyncio.Protocol` per keep-alive connection feeding httptools, one
future per exchange, a list of idle connections per backend. No timeouts, limits, trailers,
interim answers, hung-up checks, retries or error classification: it is only for the
benchmark's loopback backends (bench.upstream_alone, bench.bare_proxy --client minimal).
"""

from __future__ import annotations

import asyncio

import httptools


class MinimalConnection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends a request head and waits for the answer."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._answered: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self._answered is not None and not self._answered.done():
            self._answered.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answered is not None and not self._answered.done():
            self._answered.set_exception(ConnectionError(f"backend closed: {exc}"))

    async def exchange(self, head: bytes) -> None:
        """Send `head` (a request without a body) and wait until the whole answer is in."""
        assert self.transport is not None
        self.reason, self.headers, self.body = b"", [], []
        self._answered = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        await self._answered


class MinimalPool:
    """Idle connections per loopback port; a connection is opened when none is idle."""

    def __init__(self) -> None:
        self._idle: dict[int, list[MinimalConnection]] = {}

    async def take(self, port: int) -> MinimalConnection:
        idle = self._idle.get(port)
        if idle:
            return idle.pop()
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(MinimalConnection, "127.0.0.1", port)
        return conn

    def give_back(self, port: int, conn: MinimalConnection) -> None:
        self._idle.setdefault(port, []).append(conn)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
