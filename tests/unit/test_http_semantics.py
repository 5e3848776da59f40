"""Pure rules for what the proxy adds around an answer: trailer filtering, relayed 1xx heads,
and its own answers to unparsable requests."""

from __future__ import annotations

import pytest

from proxy.errors import Failure, classify
from proxy.protocol import closing_error_bytes
from proxy.relay import interim_head
from proxy.settings import SettingsError, load_settings
from proxy.trailers import FORBIDDEN, trailer_block
from proxy.upstream import HeadTooLarge


def test_allowed_trailers_pass_in_order_as_received() -> None:
    raw = [(b"X-Checksum", b"abc123"), (b"Server-Timing", b"db;dur=53"), (b"grpc-status", b"0")]
    assert trailer_block(raw) == (
        b"X-Checksum: abc123\r\nServer-Timing: db;dur=53\r\ngrpc-status: 0\r\n"
    )


@pytest.mark.parametrize(
    "name",
    [
        b"Content-Length",
        b"Transfer-Encoding",
        b"Trailer",
        b"Connection",
        b"Host",
        b"Authorization",
        b"WWW-Authenticate",
        b"Set-Cookie",
        b"Cookie",
        b"Content-Type",
        b"Content-Encoding",
        b"Cache-Control",
        b"Location",
        b"X-Request-ID",
    ],
)
def test_framing_routing_auth_and_control_fields_never_pass_as_trailers(name: bytes) -> None:
    assert name.lower() in FORBIDDEN
    assert trailer_block([(name, b"v"), (name.upper(), b"v")]) == b""


def test_interim_head_keeps_links_and_drops_hop_by_hop_fields() -> None:
    raw = [
        (b"Link", b"</a.css>; rel=preload"),
        (b"Connection", b"X-Hop, keep-alive"),
        (b"X-Hop", b"secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Link", b"</b.js>; rel=preload"),
    ]
    assert interim_head(103, b"Early Hints", raw) == (
        b"HTTP/1.1 103 Early Hints\r\n"
        b"Link: </a.css>; rel=preload\r\n"
        b"Link: </b.js>; rel=preload\r\n\r\n"
    )


def test_an_interim_head_without_fields_or_reason() -> None:
    assert interim_head(102, b"", []) == b"HTTP/1.1 102 \r\n\r\n"


def test_the_answer_to_an_unparsable_request_is_http11_and_closes() -> None:
    raw = closing_error_bytes(431)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"Connection: close" in lines
    assert b"Content-Length: %d" % len(body) in lines
    assert body == b"Request Header Fields Too Large\n"


def test_a_head_over_the_limits_is_a_final_502_that_keeps_the_backend() -> None:
    failure = classify(HeadTooLarge("upstream response head of 70000+ bytes over the limit"))
    assert (failure.kind, failure.status, failure.backend_fault) == ("head_too_large", 502, False)
    assert "70000+ bytes" in failure.reason
    assert not failure.retryable(idempotent=True, replayable=True)
    assert Failure("reset", 502, False, "x").retryable(idempotent=True, replayable=True)


def test_head_limit_settings_refuse_a_field_limit_over_the_head_limit() -> None:
    with pytest.raises(SettingsError, match=r"max_response_field_bytes \(70000\) must not exceed"):
        load_settings(overrides={"limits": {"max_response_field_bytes": 70_000}})
    with pytest.raises(SettingsError, match=r"limits\.max_response_head_bytes"):
        load_settings(overrides={"limits": {"max_response_head_bytes": 10}})
    limits = load_settings().limits
    assert (
        limits.max_response_head_bytes,
        limits.max_response_field_bytes,
        limits.max_response_header_count,
    ) == (60 * 1024, 16 * 1024, 100)
