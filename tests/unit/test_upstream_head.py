"""UpstreamConnection's response head rules, fed bytes through a fake transport: 1xx answers
handed to the exchange's sink, trailers kept apart from the head, and HeadLimits. No sockets,
no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from proxy.upstream import HeadLimits, HeadTooLarge, NoResponse
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.timers import Watchdog
from tests.unit.test_upstream_connection import FakeTransport, whole_body

LIMITS = HeadLimits(head_bytes=2048, field_bytes=512, field_count=10)


def connection(limits: HeadLimits = LIMITS) -> tuple[UpstreamConnection, FakeTransport]:
    watchdog = Watchdog(idle_seconds=60.0, total_seconds=None)
    conn = UpstreamConnection(asyncio.get_running_loop(), watchdog=watchdog, limits=limits)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


Interim = tuple[int, bytes, list[tuple[bytes, bytes]]]


def recorder() -> tuple[list[Interim], object]:
    seen: list[Interim] = []

    def sink(status: int, reason: bytes, fields: list[tuple[bytes, bytes]]) -> None:
        seen.append((status, reason, list(fields)))

    return seen, sink


async def test_interim_answers_reach_the_sink_in_order_and_100_continue_does_not() -> None:
    conn, _ = connection()
    seen, sink = recorder()
    conn.begin(head_only=False, interim=sink)  # type: ignore[arg-type]
    conn.data_received(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n")
    assert seen == [(102, b"Processing", [])]
    conn.data_received(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>\r\n\r\n"
    )
    assert not conn.head_done
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await conn.wait_head()
    assert seen[1] == (
        103,
        b"Early Hints",
        [(b"Link", b"</a.css>; rel=preload"), (b"Link", b"</b.js>")],
    )
    assert (conn.status, conn.reason, conn.headers) == (200, b"OK", [(b"Content-Length", b"2")])
    assert whole_body(conn) == b"ok"
    assert conn.finish() is True


async def test_without_a_sink_interim_answers_are_dropped() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
    conn.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")
    await conn.wait_head()
    assert (conn.status, conn.headers) == (204, [])


async def test_a_reason_phrase_split_across_reads_is_whole() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 404 Not Fo")
    conn.data_received(b"und\r\nContent-Length: 0\r\n\r\n")
    await conn.wait_head()
    assert conn.reason == b"Not Found"


async def test_trailers_are_kept_apart_from_the_head() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Checksum: abc123\r\nSet-Cookie: from-trailer=1\r\n\r\n"
    )
    await conn.wait_head()
    assert conn.headers == [(b"Transfer-Encoding", b"chunked"), (b"Trailer", b"X-Checksum")]
    assert conn.trailers == [(b"X-Checksum", b"abc123"), (b"Set-Cookie", b"from-trailer=1")]
    assert whole_body(conn) == b"abc"
    assert conn.finish() is True
    conn.begin(head_only=False)
    assert conn.trailers is None  # a new exchange starts without the last one's


async def test_a_chunked_body_without_trailers_has_none() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    conn.data_received(b"0\r\n\r\n")
    await conn.wait_head()
    assert whole_body(conn) == b"abc"
    assert conn.trailers is None


def _refused(conn: UpstreamConnection, transport: FakeTransport, words: str) -> None:
    assert isinstance(conn.error, HeadTooLarge), conn.error
    assert words in str(conn.error)
    assert transport.aborted and not conn.reusable


async def test_a_head_within_the_limits_passes() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    # 10 fields (the limit), 1,804 bytes as counted (limit 2,048), one line of 502 (limit 512)
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 150) for i in range(8))
    big = b"X-Big: " + b"b" * 493 + b"\r\n"
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + fields + big + b"\r\n")
    await conn.wait_head()
    assert conn.error is None


async def test_one_field_line_over_the_limit_is_refused() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 600 + b"\r\nContent-Length: 0\r\n\r\n"
    )
    _refused(conn, transport, "field line of 609 bytes over the 512-byte limit")
    with pytest.raises(HeadTooLarge):
        await conn.wait_head()


async def test_an_endless_field_line_is_refused_before_it_ends() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nX-Big: ")
    for _ in range(3):
        conn.data_received(b"a" * 1000)
    _refused(conn, transport, "response head of 3024+ bytes over the 2048-byte limit")


async def test_a_whole_head_over_the_limit_is_refused_even_with_its_body_in_the_same_read() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 400) for i in range(6))
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" + fields + b"\r\nabc")
    _refused(conn, transport, "over the 2048-byte limit")


async def test_too_many_fields_are_refused() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(11))
    conn.data_received(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n")
    _refused(conn, transport, "with 11 fields over the 10-field limit")


async def test_interim_heads_count_towards_the_head_limit() -> None:
    conn, transport = connection()
    seen, sink = recorder()
    conn.begin(head_only=False, interim=sink)  # type: ignore[arg-type]
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"x" * 400 + b">\r\n\r\n"
    for _ in range(6):
        conn.data_received(hint)
    _refused(conn, transport, "response head")
    assert 0 < len(seen) < 6


async def test_trailer_sections_have_the_same_limits() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert conn.take() == b"abc"
    conn.data_received(b"0\r\n" + b"".join(b"X-T%d: v\r\n" % i for i in range(11)) + b"\r\n")
    _refused(conn, transport, "trailer section with 11 fields")
    with pytest.raises(HeadTooLarge):
        await conn.wait_body()


async def test_an_endless_trailer_line_is_refused_before_it_ends() -> None:
    conn, transport = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n")
    conn.data_received(b"X-Trailer: ")
    for _ in range(4):
        conn.data_received(b"t" * 1000)
    _refused(conn, transport, "trailer section of 3011+ bytes")


async def test_large_chunks_are_not_mistaken_for_trailers() -> None:
    conn, _ = connection()
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(5):
        conn.data_received(b"1000\r\n")  # each chunk's data comes in the next read
        conn.data_received(b"d" * 0x1000 + b"\r\n")
        assert conn.error is None
        conn.take()
    conn.data_received(b"0\r\n\r\n")
    assert conn.drained and conn.error is None


async def test_garbage_after_an_interim_answer_is_still_no_response() -> None:
    conn, _ = connection()
    seen, sink = recorder()
    conn.begin(head_only=False, interim=sink)  # type: ignore[arg-type]
    conn.data_received(b"HTTP/1.1 103 Early Hints\r\n\r\nnonsense\r\n\r\n")
    assert isinstance(conn.error, NoResponse) and not isinstance(conn.error, HeadTooLarge)
    assert [status for status, _, _ in seen] == [103]


def test_limits_must_be_positive_and_a_line_no_longer_than_the_head() -> None:
    with pytest.raises(ValueError, match="positive"):
        HeadLimits(head_bytes=0, field_bytes=0)
    with pytest.raises(ValueError, match="more than the head"):
        HeadLimits(head_bytes=1024, field_bytes=2048)


async def test_a_small_exchange_with_too_many_fields_is_still_refused() -> None:
    conn, transport = connection(HeadLimits(head_bytes=4096, field_bytes=4096, field_count=3))
    conn.begin(head_only=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n")
    _refused(conn, transport, "with 4 fields over the 3-field limit")
