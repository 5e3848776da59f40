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
    """Send `data`, read until the server closes (or the limit); None if it closed silently."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(READ_LIMIT_SECONDS):
            raw = await reader.read()
    finally:
        writer.close()
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    return RawResponse(int(text.split(" ", 2)[1]), text, body)


def request(
    method: str = "GET", target: str = "/", *headers: str, body: bytes = b"", host: str = "test"
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
