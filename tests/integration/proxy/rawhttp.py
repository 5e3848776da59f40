"""Raw HTTP/1.1 over a socket, for what a well-behaved client library will not send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

READ_LIMIT_SECONDS = 10.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    head: str
    body: bytes


async def exchange(port: int, data: bytes, *, half_close: bool = False) -> RawResponse | None:
    """Send `data` and read one response (head, then a Content-Length body or everything up to
    the close); None if the server closed without answering."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(READ_LIMIT_SECONDS):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return None
            text = head.decode("latin-1")
            length = _content_length(text)
            body = await (reader.readexactly(length) if length is not None else reader.read())
    finally:
        writer.close()
    return RawResponse(int(text.split(" ", 2)[1]), text, body)


def _content_length(head: str) -> int | None:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    return None


def request(
    method: str = "GET", target: str = "/", *headers: str, body: bytes = b"", host: str = "test"
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
