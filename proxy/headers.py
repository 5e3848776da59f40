"""Header rewriting between client and upstream: pure functions, no I/O.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, so they never cross the
proxy in either direction: the fixed list below plus every field the `Connection` header
names. `Transfer-Encoding` is among them because each side of the proxy frames its own body.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate

from multidict import CIMultiDict, MultiMapping

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# Set by the proxy from what it saw itself; client-supplied values are replaced, never trusted.
# `Expect: 100-continue` is answered by the proxy itself (proxy.forwarding), which then sends
# the body straight away, so the backend has nothing to answer it with.
_SET_BY_PROXY = frozenset({"x-forwarded-proto", "x-forwarded-host", "x-request-id", "expect"})

REQUEST_ID = "X-Request-ID"
# Request ids must be unique, not secret: a PRNG seeded once from the OS is enough, and spares
# a getrandom system call per request.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
# A longer or oddly shaped incoming id is replaced: it ends up in every log line.
_MAX_REQUEST_ID = 128


def request_id_for(headers: MultiMapping[str]) -> str:
    """The client's `X-Request-ID` if it is sane, else a new random one."""
    given = headers.get(REQUEST_ID)
    if given and len(given) <= _MAX_REQUEST_ID and given.isprintable():
        return given
    return f"{_ids.getrandbits(128):032x}"


def upstream_request_headers(
    headers: MultiMapping[str], *, client_ip: str, scheme: str, request_id: str
) -> CIMultiDict[str]:
    """Headers to send upstream: hop-by-hop removed, `X-Forwarded-*` and `X-Request-ID` set.

    `Host` is copied unchanged, so name-based virtual hosting behind the proxy keeps working.
    `X-Forwarded-For` keeps what earlier proxies wrote (all fields, in order) and appends the
    address this proxy saw.
    """
    raw = [(_encode(name), _encode(value)) for name, value in headers.items()]
    lines, _ = _forwarded_raw(raw, client_ip=client_ip, scheme=scheme, request_id=request_id)
    fields = (line.split(b": ", 1) for line in lines)
    return CIMultiDict((_decode(name), _decode(value)) for name, value in fields)


def upstream_request_head_raw(
    method: str,
    target: str,
    raw: Sequence[tuple[bytes, bytes]],
    *,
    client_ip: str,
    scheme: str,
    request_id: str,
    default_host: str,
    chunked: bool,
    forwarded_host: str | None = None,
) -> bytes:
    """The request line and headers for the upstream, as bytes ready to write: the fields of
    `upstream_request_headers`, `Host: default_host` if the client sent none (HTTP/1.0), and
    `Transfer-Encoding: chunked` when the body is relayed in chunks. `forwarded_host`: the
    client's own Host when a route rewrote it in `raw` ("" when the client sent none), so
    `X-Forwarded-Host` tells the upstream what the client asked for, not the rewrite.

    Built from the request's raw header bytes (aiohttp's `raw_headers`), so nothing is decoded
    and encoded again: about half the cost of the same head from the decoded multidict."""
    fields, has_host = _forwarded_raw(
        raw,
        client_ip=client_ip,
        scheme=scheme,
        request_id=request_id,
        forwarded_host=forwarded_host,
    )
    lines = [f"{method} {target} HTTP/1.1".encode("utf-8", "surrogateescape"), *fields]
    if not has_host:
        lines.append(b"Host: " + _encode(default_host))
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    lines += (b"", b"")
    head = b"\r\n".join(lines)
    # A CR or LF inside a field would start a header (or a request) of the sender's choosing.
    # The server's parser already refuses them; counting line breaks makes sure, in one pass.
    breaks = len(lines) - 1
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
        raise ValueError("line break inside a request header field")
    return head


def _forwarded_raw(
    raw: Sequence[tuple[bytes, bytes]],
    *,
    client_ip: str,
    scheme: str,
    request_id: str,
    forwarded_host: str | None = None,
) -> tuple[list[bytes], bool]:
    """The field lines (`Name: value`, no CRLF) to send upstream: hop-by-hop ones (and those
    `Connection` names) removed, the ones the proxy sets replaced, `X-Forwarded-*` and
    `X-Request-ID` added; and whether the client sent a Host. The one place these rules
    live, for the request head and for the WebSocket client's multidict. Lines rather than
    pairs: the request head, built per request, joins them as they are."""
    tokens = connection_tokens(raw)
    drop = _HOP_BY_HOP_BYTES | tokens if tokens else _HOP_BY_HOP_BYTES
    out: list[bytes] = []
    forwarded_for: bytes | None = None
    host: bytes | None = None
    has_host = False
    for name, value in raw:
        lower = name.lower()
        if lower == b"host":
            has_host = True
        if lower in drop or lower in _SET_BY_PROXY_BYTES:
            continue
        if lower == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        if lower == b"host" and host is None:
            host = value
        out.append(name + b": " + value)
    ip = _encode(client_ip)
    out.append(b"X-Forwarded-For: " + (forwarded_for + b", " + ip if forwarded_for else ip))
    out.append(b"X-Forwarded-Proto: " + _encode(scheme))
    if forwarded_host is not None:
        if forwarded_host:
            out.append(b"X-Forwarded-Host: " + _encode(forwarded_host))
    elif host is not None:
        out.append(b"X-Forwarded-Host: " + host)
    out.append(b"X-Request-ID: " + _encode(request_id))
    return out, has_host


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    # The server decoded the head as UTF-8 with surrogateescape: this restores the exact bytes.
    return text.encode("utf-8", "surrogateescape")


def connection_tokens(raw: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Lower-cased field names listed in `Connection` fields (they are hop-by-hop too), from
    raw (name, value) byte pairs."""
    tokens = [
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    return frozenset(token for token in tokens if token)


_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)
_SET_BY_PROXY_BYTES = frozenset(name.encode() for name in _SET_BY_PROXY)
_RESPONSE_SPECIAL = _HOP_BY_HOP_BYTES | {b"x-request-id"}


ResponseFields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ResponseEdit:
    """A route's changes to the upstream's answer (a Gateway API ResponseHeaderModifier,
    compiled once by proxy.filters): the upstream's fields named in `drop` (lower-cased
    bytes) are left out and the `append` fields follow the rest, before the proxy's own
    rules run (hop-by-hop removal, X-Request-ID, Date, then `added`). Applied on both
    response paths; a route without one passes None and pays one `is None` test."""

    drop: frozenset[bytes]
    append: tuple[tuple[bytes, bytes], ...]

    def apply(self, raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        drop = self.drop
        out = [(name, value) for name, value in raw if name.lower() not in drop]
        out += self.append
        return out


def _without(raw: list[tuple[bytes, bytes]], added: ResponseFields) -> list[tuple[bytes, bytes]]:
    # A field the proxy sets (HSTS) replaces the upstream's own, rather than doubling it.
    names = {name.lower().encode("latin-1") for name, _ in added}
    return [(name, value) for name, value in raw if name.lower() not in names]


def downstream_headers_from_raw(
    raw: list[tuple[bytes, bytes]],
    *,
    request_id: str,
    added: ResponseFields = (),
    edit: ResponseEdit | None = None,
) -> list[tuple[str, str]]:
    """Headers to send the client, from the upstream's head as received ((name, value) byte
    pairs in, str pairs out: a list, because the response that takes it builds its own
    multidict): hop-by-hop removed, `X-Request-ID` added unless the upstream set its own.
    `Content-Length` and `Content-Encoding` pass unchanged: the body is relayed byte for byte,
    never decompressed or recompressed. `added` fields (set by the proxy) replace the
    upstream's fields of the same names. `edit`, the route's, goes first."""
    if edit is not None:
        raw = edit.apply(raw)
    if added:
        raw = _without(raw, added)
    out: list[tuple[str, str]] = []
    nominated: list[bytes] = []
    has_id = False
    for name, value in raw:
        lower = name.lower()
        if lower in _RESPONSE_SPECIAL:
            if lower == b"x-request-id":
                has_id = True
            else:
                if lower == b"connection":
                    nominated += (token.strip().lower() for token in value.split(b","))
                continue
        out.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )
    if nominated:
        gone = {token.decode("latin-1") for token in nominated}
        out = [(name, value) for name, value in out if name.lower() not in gone]
    if not has_id:
        out.append((REQUEST_ID, request_id))
    out += added
    return out


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})


def downstream_head_from_raw(
    status: int,
    reason: bytes,
    raw: list[tuple[bytes, bytes]],
    *,
    request_id: str,
    keep_alive: bool,
    added: ResponseFields = (),
    edit: ResponseEdit | None = None,
) -> bytes | None:
    """The whole HTTP/1.1 response head for the client, as bytes, by the rules of
    `downstream_headers_from_raw`, `Connection: close` added unless `keep_alive`. Only for an
    answer framed by Content-Length (the client gets the framing the upstream chose); None for
    any other, and when a `Connection` header nominates fields (rare): the caller then takes
    the general path. `added` and `edit` as for `downstream_headers_from_raw`."""
    if edit is not None:
        raw = edit.apply(raw)
    if added:
        raw = _without(raw, added)
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    has_id = has_length = has_date = False
    for name, value in raw:
        lower = name.lower()
        if lower == b"content-length":
            has_length = True
        elif lower == b"date":
            has_date = True
        elif lower in _RESPONSE_SPECIAL:
            if lower == b"x-request-id":
                has_id = True
            elif lower == b"connection" and not all(
                token.strip().lower() in _PLAIN_CONNECTION for token in value.split(b",")
            ):
                return None
            else:
                continue
        out += (name, b": ", value, b"\r\n")
    if not has_length:
        return None
    if not has_id:
        out += (b"X-Request-ID: ", request_id.encode("utf-8", "surrogateescape"), b"\r\n")
    if not has_date:
        # RFC 9110 section 6.6.1: a proxy forwarding an answer without Date adds one.
        out += (b"Date: ", _http_date(), b"\r\n")
    for added_name, added_value in added:
        out += (added_name.encode("latin-1"), b": ", added_value.encode("latin-1"), b"\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)


_date: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    # Formatted once a second; the tuple is swapped whole.
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]
