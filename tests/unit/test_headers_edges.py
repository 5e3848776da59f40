"""Header rules at their edges: bytes that are not UTF-8 pass through unchanged, the
X-Forwarded-* fields come from the right places, and the Date a proxy adds is the current one."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy import headers as headers_module
from proxy.headers import (
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


def _head(headers: CIMultiDictProxy[str]) -> bytes:
    return upstream_request_head_raw(
        "GET",
        "/",
        _raw(headers),
        client_ip="10.0.0.9",
        scheme="http",
        request_id="rid",
        default_host="10.1.1.1:8080",
        chunked=False,
    )


def test_without_an_incoming_x_forwarded_for_it_is_just_the_client() -> None:
    assert _up(_h(("Host", "a"))).getall("X-Forwarded-For") == ["10.0.0.9"]


def test_x_forwarded_host_is_the_host_header_wherever_it_comes() -> None:
    upstream = _up(_h(("Accept", "*/*"), ("User-Agent", "curl"), ("Host", "shop.example.com")))
    assert upstream.getall("X-Forwarded-Host") == ["shop.example.com"]
    assert "X-Forwarded-Host" not in _up(_h(("Accept", "*/*")))


@pytest.mark.parametrize(("length", "kept"), [(128, True), (129, False)])
def test_request_id_length_limit(length: int, kept: bool) -> None:
    given = "r" * length
    assert (request_id_for(_h(("X-Request-ID", given))) == given) is kept


@pytest.mark.parametrize("evil", ["1\nX-Injected: 2", "1\rX-Injected: 2"])
def test_request_head_refuses_a_bare_cr_or_lf(evil: str) -> None:
    with pytest.raises(ValueError, match=r"^line break inside a request header field$"):
        _head(_h(("Host", "a"), ("X-Evil", evil)))


def test_request_head_restores_bytes_that_are_not_utf8() -> None:
    # The server decodes the head with surrogateescape; the upstream must get the same bytes.
    value = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert b"\r\nX-Name: caf\xe9\r\n" in _head(_h(("Host", "a"), ("X-Name", value)))


def test_response_fields_that_are_not_utf8_round_trip() -> None:
    raw = [(b"X-Caf\xe9", b"\xff\xfe"), (b"Content-Length", b"0")]
    out = downstream_headers_from_raw(raw, request_id="rid")
    assert [
        (n.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
        for n, v in out[:2]
    ] == raw


def test_every_connection_header_nominates_fields() -> None:
    raw = [
        (b"Connection", b"X-One"),
        (b"Connection", b"X-Two"),
        (b"X-One", b"1"),
        (b"X-Two", b"2"),
        (b"X-Kept", b"3"),
    ]
    assert downstream_headers_from_raw(raw, request_id="rid") == [
        ("X-Kept", "3"),
        ("X-Request-ID", "rid"),
    ]


def test_added_date_is_the_current_second(monkeypatch: pytest.MonkeyPatch) -> None:
    def head() -> bytes | None:
        raw = [(b"Content-Length", b"0")]
        return downstream_head_from_raw(200, b"OK", raw, request_id="r", keep_alive=True)

    clock = [1_800_000_000.25]
    monkeypatch.setattr(headers_module.time, "time", lambda: clock[0])
    first = head()
    assert first is not None and b"\r\nDate: Fri, 15 Jan 2027 08:00:00 GMT\r\n" in first
    clock[0] += 7
    later = head()
    assert later is not None and b"\r\nDate: Fri, 15 Jan 2027 08:00:07 GMT\r\n" in later
