"""Header rewriting rules, pure."""

from __future__ import annotations

import re

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.headers import (
    connection_tokens,
    downstream_head_from_raw,
    downstream_headers_from_raw,
    request_id_for,
    upstream_request_head_raw,
    upstream_request_headers,
)


def _h(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def _raw(headers: CIMultiDictProxy[str]) -> list[tuple[bytes, bytes]]:
    # As aiohttp hands them over (raw_headers): the head's bytes, decoded with surrogateescape.
    def encode(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape")

    return [(encode(name), encode(value)) for name, value in headers.items()]


def _up(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    return upstream_request_headers(headers, client_ip="10.0.0.9", scheme="http", request_id="rid")


def test_fixed_hop_by_hop_headers_are_dropped() -> None:
    out = _up(
        _h(
            ("Host", "a"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "5"),
            ("Proxy-Connection", "x"),
            ("Proxy-Authorization", "x"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("X-Keep", "1"),
        )
    )
    assert set(out) == {
        "Host", "X-Keep", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
        "X-Request-ID",
    }  # fmt: skip


def test_headers_named_in_connection_are_dropped_case_insensitively() -> None:
    headers = _h(("Connection", "X-A, x-b"), ("Connection", "close"), ("x-a", "1"), ("X-B", "2"))
    assert connection_tokens(_raw(headers)) == {b"x-a", b"x-b", b"close"}
    assert "X-A" not in _up(headers) and "X-B" not in _up(headers)


def test_x_forwarded_for_appends_to_every_earlier_value_in_order() -> None:
    out = _up(_h(("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2, 3.3.3.3")))
    assert out.getall("X-Forwarded-For") == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"]


def test_forwarded_proto_host_and_request_id_are_the_proxys_not_the_clients() -> None:
    out = _up(
        _h(
            ("Host", "shop.test:8080"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil"),
            ("X-Request-ID", "client-sent"),
        )
    )
    assert out.getall("X-Forwarded-Proto") == ["http"]
    assert out.getall("X-Forwarded-Host") == ["shop.test:8080"]
    assert out.getall("X-Request-ID") == ["rid"]
    assert out["Host"] == "shop.test:8080"


def test_repeated_end_to_end_headers_keep_order_and_multiplicity() -> None:
    out = _up(_h(("Accept", "a"), ("Cookie", "x=1"), ("Accept", "b")))
    assert out.getall("Accept") == ["a", "b"]


def test_request_id_kept_when_sane_and_replaced_when_not() -> None:
    assert request_id_for(_h(("X-Request-ID", "abc-1"))) == "abc-1"
    for bad in ("x" * 200, "bad\nid", ""):
        generated = request_id_for(_h(("X-Request-ID", bad)))
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert request_id_for(_h()) != request_id_for(_h())


def _down(*pairs: tuple[str, str], request_id: str) -> CIMultiDict[str]:
    raw = [(name.encode(), value.encode()) for name, value in pairs]
    return CIMultiDict(downstream_headers_from_raw(raw, request_id=request_id))


def test_response_headers_drop_hop_by_hop_and_keep_framing_and_encoding() -> None:
    out = _down(
        ("Content-Length", "10"),
        ("Content-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "X-Secret"),
        ("X-Secret", "s"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        request_id="rid",
    )
    assert out["Content-Length"] == "10" and out["Content-Encoding"] == "gzip"
    assert "Transfer-Encoding" not in out and "X-Secret" not in out
    assert out.getall("Set-Cookie") == ["a=1", "b=2"]
    assert out["X-Request-ID"] == "rid"


def test_upstream_request_id_in_response_wins() -> None:
    out = _down(("X-Request-ID", "theirs"), request_id="ours")
    assert out.getall("X-Request-ID") == ["theirs"]


def _head(headers: CIMultiDictProxy[str], *, chunked: bool = False) -> bytes:
    return upstream_request_head_raw(
        "POST",
        "/a%2Fb?x=1",
        _raw(headers),
        client_ip="10.0.0.9",
        scheme="http",
        request_id="rid",
        default_host="10.1.1.1:8080",
        chunked=chunked,
    )


def test_request_head_bytes_carry_the_same_fields_as_the_multidict() -> None:
    headers = _h(
        ("Host", "shop"),
        ("Connection", "X-Hop"),
        ("X-Hop", "1"),
        ("X-Forwarded-For", "1.1.1.1"),
        ("Content-Length", "3"),
        ("X-Name", "caf\u00e9"),
    )
    head = _head(headers)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /a%2Fb?x=1 HTTP/1.1"
    assert lines[-2:] == ["", ""]
    assert lines[1:-2] == [f"{k}: {v}" for k, v in _up(headers).items()]
    assert "X-Name: caf\u00e9".encode() in head  # the bytes the client sent, unchanged


def test_request_head_adds_host_when_the_client_sent_none_and_chunked_framing() -> None:
    head = _head(_h(("Transfer-Encoding", "chunked")), chunked=True)
    assert head.count(b"Transfer-Encoding") == 1
    assert head.endswith(b"Host: 10.1.1.1:8080\r\nTransfer-Encoding: chunked\r\n\r\n")


def test_request_head_refuses_line_breaks_inside_fields() -> None:
    with pytest.raises(ValueError, match="line break"):
        _head(_h(("Host", "a"), ("X-Evil", "1\r\nX-Injected: 2")))


def test_raw_response_headers_follow_the_same_rules() -> None:
    raw = [
        (b"Content-Length", b"10"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Connection", b"X-Secret, close"),
        (b"X-Secret", b"s"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-Name", "caf\u00e9".encode()),
    ]
    out = downstream_headers_from_raw(raw, request_id="rid")
    assert out == [
        ("Content-Length", "10"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-Name", "caf\u00e9"),
        ("X-Request-ID", "rid"),
    ]
    theirs = downstream_headers_from_raw([(b"x-request-id", b"t")], request_id="ours")
    assert theirs == [("x-request-id", "t")]


def test_expect_is_answered_by_the_proxy_not_forwarded() -> None:
    assert "Expect" not in _up(_h(("Host", "a"), ("Expect", "100-continue")))


def test_whole_response_head_as_bytes() -> None:
    raw = [
        (b"Date", b"Wed, 25 Nov 2026 15:00:00 GMT"),
        (b"Content-Length", b"5"),
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Name", "caf\u00e9".encode()),
    ]
    head = downstream_head_from_raw(200, b"OK", raw, request_id="rid", keep_alive=False)
    assert head == (
        b"HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 15:00:00 GMT\r\nContent-Length: 5\r\n"
        + "X-Name: caf\u00e9".encode()
        + b"\r\nX-Request-ID: rid\r\nConnection: close\r\n\r\n"
    )
    theirs = [(b"Content-Length", b"0"), (b"X-Request-ID", b"t")]
    head = downstream_head_from_raw(404, b"Not Found", theirs, request_id="ours", keep_alive=True)
    assert head is not None
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-Request-ID: t\r\n")
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT\r\n\r\n$", head)
    assert b"ours" not in head and b"Connection" not in head


def test_whole_response_head_only_for_content_length_and_plain_connection() -> None:
    def head(*raw: tuple[bytes, bytes]) -> bytes | None:
        return downstream_head_from_raw(200, b"OK", list(raw), request_id="r", keep_alive=True)

    assert head((b"Transfer-Encoding", b"chunked")) is None  # framing follows the upstream
    assert head() is None  # ends at close
    assert head((b"Content-Length", b"1"), (b"Connection", b"X-Secret")) is None
    assert head((b"Content-Length", b"1"), (b"Connection", b"Keep-Alive, close")) is not None
