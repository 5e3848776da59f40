"""Pure HTTP/1.1 framing rules the connection needs beyond what httptools tells it."""

from __future__ import annotations

_FRAMING = (b"content-length", b"transfer-encoding")


def ends_at_close(headers: list[tuple[bytes, bytes]]) -> bool:
    """No Content-Length and no Transfer-Encoding: the body is whatever arrives until the
    backend closes the connection (RFC 9112 section 6.3, last rule)."""
    return not any(name.lower() in _FRAMING for name, _ in headers)


def keeps_alive(headers: list[tuple[bytes, bytes]], http_version: str) -> bool:
    """Whether the backend means to keep the connection open after this answer. Used where
    the parser cannot say (answers to HEAD, whose body it would wait for)."""
    tokens = [
        token.strip()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.lower().split(b",")
    ]
    if http_version == "1.1":
        return b"close" not in tokens
    return b"keep-alive" in tokens


def chunk_frame(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk of a chunked body, as pieces for writelines."""
    return (b"%x\r\n" % len(data), data, b"\r\n")


LAST_CHUNK = b"0\r\n\r\n"
