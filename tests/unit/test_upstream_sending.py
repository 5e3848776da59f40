"""BodySender against a fake sink: framing, backpressure, failures. No sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from proxy.upstream import NoResponse, UpstreamError
from proxy.upstream.sending import BodySender


class FakeSink:
    def __init__(self) -> None:
        self.closed = False
        self.written: list[bytes] = []
        self.failure: UpstreamError | None = None

    def write_body(self, pieces: tuple[bytes, ...]) -> None:
        self.written.append(b"".join(pieces))

    def fail(self, error: UpstreamError) -> None:
        self.failure = error


async def chunks(*parts: bytes, error: Exception | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if error is not None:
        raise error


async def finished(sender: BodySender) -> None:
    task = sender._task
    assert task is not None
    await task


async def test_chunked_framing_and_last_chunk() -> None:
    sink, sender = FakeSink(), BodySender()
    sender.start(sink, chunks(b"abc", b"", b"0123456789abcdef"), chunked=True)
    assert not sender.sent
    await finished(sender)
    assert sink.written == [b"3\r\nabc\r\n", b"10\r\n0123456789abcdef\r\n", b"0\r\n\r\n"]
    assert sender.sent


async def test_plain_body_goes_out_as_is() -> None:
    sink, sender = FakeSink(), BodySender()
    sender.start(sink, chunks(b"ab", b"cd"), chunked=False)
    await finished(sender)
    assert sink.written == [b"ab", b"cd"] and sender.sent


async def test_waits_while_paused_and_goes_on_when_resumed() -> None:
    sink, sender = FakeSink(), BodySender()
    sender.pause()
    sender.start(sink, chunks(b"a", b"b"), chunked=False)
    for _ in range(5):
        await asyncio.sleep(0)  # let the task run up to its wait (no time passes)
    assert sink.written == [b"a"]
    sender.resume()
    await finished(sender)
    assert sink.written == [b"a", b"b"]


async def test_a_failing_source_fails_the_exchange() -> None:
    sink, sender = FakeSink(), BodySender()
    sender.start(sink, chunks(b"a", error=ValueError("client went away")), chunked=True)
    await finished(sender)
    assert isinstance(sink.failure, NoResponse)
    assert "client went away" in str(sink.failure)
    assert not sender.sent


async def test_stops_quietly_once_the_connection_closed() -> None:
    sink, sender = FakeSink(), BodySender()
    sink.closed = True
    sender.start(sink, chunks(b"a"), chunked=True)
    await finished(sender)
    assert sink.written == [] and sink.failure is None and not sender.sent
