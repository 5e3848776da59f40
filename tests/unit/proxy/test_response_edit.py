"""A route's ResponseHeaderModifier on both response paths (the whole head as bytes and the
streamed response's field list), and X-Forwarded-Host after a Host rewrite: pure."""

from __future__ import annotations

import pytest

from proxy.filters import ResponseHeaderModifier
from proxy.headers import (
    ResponseEdit,
    downstream_head_from_raw,
    downstream_headers_from_raw,
    upstream_request_head_raw,
)

UPSTREAM = [
    (b"Content-Length", b"2"),
    (b"x-header-set", b"original-set"),
    (b"X-Header-Add", b"original-add"),
    (b"x-header-remove", b"original-remove"),
    (b"Another", b"kept"),
    (b"Date", b"Tue, 01 Dec 2026 00:00:00 GMT"),
]
EDIT = ResponseHeaderModifier(
    set=(("X-Header-Set", "set"),),
    add=(("X-Header-Add", "added"), ("x-lowercase-add", "lower")),
    remove=("X-Header-Remove",),
).edit()
EXPECTED = [
    ("Content-Length", "2"),
    ("X-Header-Add", "original-add"),
    ("Another", "kept"),
    ("Date", "Tue, 01 Dec 2026 00:00:00 GMT"),
    ("X-Header-Set", "set"),
    ("X-Header-Add", "added"),
    ("x-lowercase-add", "lower"),
]


def _fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK" and lines[-2:] == ["", ""]
    return [(n, v) for n, _, v in (line.partition(": ") for line in lines[1:-2])]


def test_the_streamed_path_sets_adds_and_removes() -> None:
    out = downstream_headers_from_raw(UPSTREAM, request_id="rid", edit=EDIT)
    assert out == [*EXPECTED, ("X-Request-ID", "rid")]


def test_the_whole_head_path_gives_the_same_fields() -> None:
    head = downstream_head_from_raw(
        200, b"OK", UPSTREAM, request_id="rid", keep_alive=True, edit=EDIT
    )
    assert head is not None
    assert _fields(head) == [*EXPECTED, ("X-Request-ID", "rid")]


@pytest.mark.parametrize("whole", [True, False])
def test_proxy_fields_still_follow_the_edit(whole: bool) -> None:
    # HSTS (`added`) replaces a field of its name the route set; a route may set
    # X-Request-ID itself (as the upstream may); removing Date makes the proxy add its own.
    edit = ResponseHeaderModifier(
        set=(("Strict-Transport-Security", "max-age=1"), ("X-Request-ID", "mine")),
        remove=("Date",),
    ).edit()
    added = (("Strict-Transport-Security", "max-age=60"),)
    raw = [(b"Content-Length", b"0"), (b"Date", b"Tue, 01 Dec 2026 00:00:00 GMT")]
    if whole:
        head = downstream_head_from_raw(
            200, b"OK", raw, request_id="rid", keep_alive=True, added=added, edit=edit
        )
        assert head is not None
        fields = _fields(head)
        assert [v for n, v in fields if n == "Date"] != ["Tue, 01 Dec 2026 00:00:00 GMT"]
        fields = [(n, v) for n, v in fields if n != "Date"]
    else:
        fields = downstream_headers_from_raw(raw, request_id="rid", added=added, edit=edit)
    assert fields == [
        ("Content-Length", "0"),
        ("X-Request-ID", "mine"),
        ("Strict-Transport-Security", "max-age=60"),
    ]


def test_an_empty_edit_changes_nothing() -> None:
    empty = ResponseEdit(frozenset(), ())
    assert downstream_headers_from_raw(UPSTREAM, request_id="r", edit=empty) == (
        downstream_headers_from_raw(UPSTREAM, request_id="r")
    )


def _request_head(raw: list[tuple[bytes, bytes]], forwarded_host: str | None) -> list[bytes]:
    head = upstream_request_head_raw(
        "GET",
        "/",
        raw,
        client_ip="10.0.0.9",
        scheme="http",
        request_id="rid",
        default_host="10.1.1.1:80",
        chunked=False,
        forwarded_host=forwarded_host,
    )
    return [line for line in head.split(b"\r\n") if line.startswith(b"X-Forwarded-Host")]


def test_x_forwarded_host_is_the_clients_host_after_a_rewrite() -> None:
    rewritten = [(b"Host", b"backend.internal"), (b"X-Forwarded-Host", b"spoofed")]
    assert _request_head(rewritten, "shop.example.com:8080") == [
        b"X-Forwarded-Host: shop.example.com:8080"
    ]
    # Without a rewrite, the Host forwarded is the client's own.
    assert _request_head(rewritten, None) == [b"X-Forwarded-Host: backend.internal"]
    # A client that sent no Host (HTTP/1.0) gets none, whatever the rewrite set.
    assert _request_head(rewritten, "") == []
