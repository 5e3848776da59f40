"""Request bodies on their way upstream: streamed with a size limit, or held when small.

A body is streamed chunk by chunk from the client's socket to the upstream's, so memory stays
flat whatever its size; the aiohttp StreamReader pauses the client socket when its buffer is
full. Small bodies with a known length are read first instead, so the request can be replayed
on another backend if the first one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader

from proxy.errors import BodyTooLarge, ClientBodyError


class StreamedBody:
    """A client body relayed on the fly. `chunks()` may be called again for a new attempt only
    while `sent == 0` (nothing was taken from the client yet)."""

    __slots__ = ("_content", "_idle", "_limit", "client_failed", "idle", "sent", "too_large")

    def __init__(
        self, content: StreamReader, *, limit: int | None, idle_seconds: float | None = None
    ) -> None:
        self._content = content
        self._limit = limit
        self._idle = idle_seconds
        self.sent = 0
        self.too_large = False
        self.client_failed = False
        self.idle = False  # the client stopped sending mid-body (slow-body attack or stall)

    def __repr__(self) -> str:
        return f"<StreamedBody {self.sent} bytes sent, limit {self._limit}>"

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the client's body as it arrives; raise BodyTooLarge past the limit (chunked
        bodies have no Content-Length to check up front)."""
        content = self._content
        limit = self._limit
        while True:
            try:
                # Per chunk, not per body: a large upload may take long, but never stall.
                async with asyncio.timeout(self._idle):
                    chunk = await content.readany()
            except TimeoutError as exc:
                self.client_failed = self.idle = True
                raise ClientBodyError(f"request body idle for {self._idle}s") from exc
            except Exception as exc:
                # The client went away or sent a broken chunked body; aiohttp surfaces it
                # to the upstream request as a connection error, so leave a mark.
                self.client_failed = True
                raise ClientBodyError(str(exc) or type(exc).__name__) from exc
            if not chunk:
                return
            self.sent += len(chunk)
            if limit is not None and self.sent > limit:
                self.too_large = True
                raise BodyTooLarge(f"request body over {limit} bytes")
            yield chunk
