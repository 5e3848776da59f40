"""The idle-connections section's pure parts: its pass/fail rules and checks table, the
client's reading of responses and choice of sample, the file-descriptor limit plan, and its
options."""

from __future__ import annotations

import dataclasses
import resource
from collections import Counter

import pytest

from bench.fdlimit import plan, usable_connections
from bench.idle import MAX_RSS_BYTES, IdleResult, checks_table, judge
from bench.idle_client import (
    MAX_RESPONSE_BYTES,
    Answer,
    Sampled,
    parse_answer,
    request_bytes,
    sample_indices,
)
from bench.options import parse_options
from bench.wrk import WrkResult

MIB = 1024 * 1024


def wrk(rps: float, *, errors: int = 0) -> WrkResult:
    return WrkResult(
        requests_per_second=rps,
        p50_seconds=5e-3,
        p99_seconds=20e-3,
        requests=int(rps * 10),
        duration_seconds=10.0,
        non_2xx=errors,
    )


GOOD = IdleResult(
    wanted=10_000,
    attempted=10_000,
    opened=10_000,
    open_seconds=6.1,
    open_failures=Counter(),
    baseline=wrk(6000.0),
    control=wrk(5800.0),
    held=wrk(5400.0),
    active_connections=256,
    rss_before=100 * MIB,
    rss_opened=183 * MIB,
    rss_after=187 * MIB,
    closed_by_server=0,
    sample=Sampled(asked=200, answered=200, failures=Counter()),
)


def test_a_good_run_passes() -> None:
    assert judge(GOOD) == []
    assert GOOD.held_ratio == pytest.approx(0.9)


def test_throughput_must_stay_within_twenty_percent_of_the_baseline() -> None:
    assert judge(dataclasses.replace(GOOD, held=wrk(4800.0))) == []  # exactly 0.80x
    [failure] = judge(dataclasses.replace(GOOD, held=wrk(4790.0)))
    assert failure == (
        "with 10,000 idle connections held, requests/s fell to 0.80x the baseline "
        "(at least 0.80x required)"
    )
    # The control run (-c256, nothing idle) is shown, never judged.
    assert judge(dataclasses.replace(GOOD, control=wrk(100.0))) == []


def test_rss_must_stay_under_300_mib_after_opening_and_after_the_load() -> None:
    assert judge(dataclasses.replace(GOOD, rss_after=MAX_RSS_BYTES - 1)) == []
    [opened] = judge(dataclasses.replace(GOOD, rss_opened=MAX_RSS_BYTES))
    assert opened == "kubeferry's RSS after opening 300 MiB, at or over 300 MiB"
    [after] = judge(dataclasses.replace(GOOD, rss_after=320 * MIB))
    assert after == "kubeferry's RSS after the load 320 MiB, at or over 300 MiB"
    [gone] = judge(dataclasses.replace(GOOD, rss_after=None))
    assert "the process was gone" in gone


def test_every_attempted_connection_must_open() -> None:
    failures = Counter({"timed out": 3, "ConnectionRefusedError [Errno 111]": 7})
    [failure] = judge(dataclasses.replace(GOOD, opened=9_990, open_failures=failures))
    assert failure == (
        "only 9,990 of 10,000 idle connections opened "
        "(7x ConnectionRefusedError [Errno 111]; 3x timed out)"
    )


def test_a_lower_file_descriptor_limit_is_said_not_failed() -> None:
    # The limit allowed 5,000: all of them opened, so the rules hold for what was possible.
    fewer = dataclasses.replace(GOOD, attempted=5_000, opened=5_000)
    assert judge(fewer) == []
    assert "5,000 of 5,000" in checks_table(fewer)


def test_idle_connections_must_be_held_not_dropped() -> None:
    [closed] = judge(dataclasses.replace(GOOD, closed_by_server=12))
    assert closed == "kubeferry closed 12 of 10,000 idle connections"
    sample = Sampled(asked=200, answered=198, failures=Counter({"timed out": 2}))
    [unanswered] = judge(dataclasses.replace(GOOD, sample=sample))
    assert unanswered == (
        "only 198 of 200 sampled idle connections answered a second request (2x timed out)"
    )


def test_failed_requests_in_either_run_fail_the_section() -> None:
    assert judge(dataclasses.replace(GOOD, baseline=wrk(6000.0, errors=601))) == [
        "baseline run: 601 of 60000 requests failed"
    ]
    assert judge(dataclasses.replace(GOOD, held=wrk(5400.0, errors=540))) == []  # 1%
    assert judge(dataclasses.replace(GOOD, held=wrk(5400.0, errors=541))) == [
        "held run: 541 of 54000 requests failed"
    ]


def test_the_checks_table_marks_each_rule() -> None:
    lines = checks_table(dataclasses.replace(GOOD, rss_after=310 * MIB)).splitlines()
    assert lines[0] == "| check | measured | limit | result |"
    assert (
        lines[2] == "| idle keep-alive connections opened | 10,000 of 10,000 in 6.1 s | all | ok |"
    )
    assert lines[3] == (
        "| requests/s with them held (wrk -c256) vs baseline | 0.90x | >= 0.80x | ok |"
    )
    assert lines[4] == (
        "| kubeferry RSS after opening (before it) | 183 MiB (100 MiB) | < 300 MiB | ok |"
    )
    assert lines[5] == "| kubeferry RSS after the load | 310 MiB | < 300 MiB | FAIL |"
    assert lines[7] == (
        "| sampled idle connections answering a second request | 200 of 200 | all | ok |"
    )


HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: keep-alive\r\n\r\n"
)
BODY = b"hello from backend 1\n"


def test_a_response_is_complete_once_its_body_is() -> None:
    whole = HEAD + BODY
    assert parse_answer(whole) == Answer(200, keep_alive=True, length=len(whole))
    assert parse_answer(whole[:-1]) is None
    assert parse_answer(HEAD[:20]) is None
    # Bytes past the response are not its own.
    assert parse_answer(whole + b"HTTP/1.1").length == len(whole)  # type: ignore[union-attr]


def test_connection_close_and_chunked_bodies() -> None:
    closing = HEAD.replace(b"keep-alive", b"close") + BODY
    assert parse_answer(closing) == Answer(200, keep_alive=False, length=len(closing))
    chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parse_answer(chunked + b"5\r\nhello\r\n") is None
    done = chunked + b"5\r\nhello\r\n0\r\n\r\n"
    assert parse_answer(done) == Answer(503, keep_alive=True, length=len(done))


def test_what_is_not_a_response_is_refused() -> None:
    with pytest.raises(ValueError, match="status line"):
        parse_answer(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ValueError, match="status line"):
        parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ValueError, match="header line"):
        parse_answer(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n")
    with pytest.raises(ValueError, match="Content-Length"):
        parse_answer(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody")
    with pytest.raises(ValueError, match="too long"):
        parse_answer(b"HTTP/1.1 200 OK\r\n" + b"x" * MAX_RESPONSE_BYTES)


def test_each_idle_request_is_a_plain_get_with_its_number() -> None:
    assert request_bytes(42) == (
        b"GET /idle/42 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kubeferry-bench\r\n\r\n"
    )


def test_the_sample_spreads_over_the_opening_order() -> None:
    assert sample_indices(10_000, 200)[:3] == [0, 50, 100]
    assert sample_indices(10_000, 200)[-1] == 9_950
    assert len(set(sample_indices(10_000, 200))) == 200
    assert sample_indices(5, 200) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 200) == []


INF = resource.RLIM_INFINITY


def test_the_soft_limit_goes_to_the_hard_one() -> None:
    assert plan(1024, 20_000, wanted=11_024, is_root=False, ceiling=1_048_576) == (20_000, 20_000)
    # Without root a low hard limit stays; the section then uses what it allows.
    assert plan(1024, 4096, wanted=11_024, is_root=False, ceiling=1_048_576) == (4096, 4096)


def test_root_raises_a_low_hard_limit_to_what_is_wanted_never_past_nr_open() -> None:
    assert plan(1024, 4096, wanted=11_024, is_root=True, ceiling=1_048_576) == (11_024, 11_024)
    assert plan(1024, 4096, wanted=11_024, is_root=True, ceiling=8192) == (8192, 8192)
    # Nothing is ever lowered.
    assert plan(50_000, 60_000, wanted=11_024, is_root=True, ceiling=1_048_576) == (
        60_000,
        60_000,
    )


def test_an_unlimited_hard_limit_stays_unlimited_and_the_soft_one_stops_at_nr_open() -> None:
    assert plan(1024, INF, wanted=11_024, is_root=True, ceiling=1_048_576) == (1_048_576, INF)


def test_usable_connections_leave_headroom() -> None:
    assert usable_connections(20_000, wanted=10_000) == 10_000
    assert usable_connections(4096, wanted=10_000) == 4096 - 1024
    assert usable_connections(512, wanted=10_000) == 0


def test_idle_options() -> None:
    default = parse_options([])
    assert (default.idle_connections, default.idle_active_connections) == (10_000, 256)
    quick = parse_options(["--quick", "--only", "idle"])
    assert (quick.only, quick.idle_connections, quick.duration_seconds) == ("idle", 10_000, 3)
    assert (
        parse_options(["--idle-connections", "500", "--idle-active", "64"]).idle_connections == 500
    )
    for bad in (
        ["--idle-connections", "0"],
        ["--idle-connections", "30000"],
        ["--idle-active", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_options(bad)
