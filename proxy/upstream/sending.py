"""The write side of an upstream connection: a request body streamed with backpressure.

The body goes out in a task of its own rather than before the answer is awaited: a backend
may answer (say 413) before reading the whole body, and the answer must not wait behind a
body it will never read. The task belongs to the exchange; `cancel()` ends it with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Protocol

from proxy.upstream.failures import NoResponse, UpstreamError
from proxy.upstream.framing import LAST_CHUNK, chunk_frame


class BodySink(Protocol):
    """Where the body goes (UpstreamConnection implements it)."""

    @property
    def closed(self) -> bool: ...

    def write_body(self, pieces: tuple[bytes, ...]) -> None: ...

    def fail(self, error: UpstreamError) -> None: ...


class BodySender:
    """Streams one body at a time into a sink; `pause()`/`resume()` mirror the transport's
    pause_writing/resume_writing. `sent` is False while a body is still going out."""

    __slots__ = ("_drain", "_paused", "_task", "sent")

    def __init__(self) -> None:
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = True

    def start(self, sink: BodySink, chunks: AsyncIterable[bytes], *, chunked: bool) -> None:
        self.sent = False
        self._task = asyncio.get_running_loop().create_task(self._send(sink, chunks, chunked))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        """Also called when the connection is lost, so a waiting sender wakes up and stops."""
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def _send(self, sink: BodySink, chunks: AsyncIterable[bytes], chunked: bool) -> None:
        try:
            async for data in chunks:
                if sink.closed:
                    return  # the exchange failed, or the backend answered and left
                if data:
                    sink.write_body(chunk_frame(data) if chunked else (data,))
                    if self._paused:
                        self._drain = asyncio.get_running_loop().create_future()
                        await self._drain
            if sink.closed:
                return
            if chunked:
                sink.write_body((LAST_CHUNK,))
            self.sent = True
        except Exception as exc:
            # Reading the client's body failed (proxy.body records which way it failed); the
            # backend got part of a request, so this exchange cannot succeed.
            sink.fail(NoResponse(f"request body could not be sent: {exc}"))
