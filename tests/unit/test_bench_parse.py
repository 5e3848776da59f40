"""The benchmark's reading of wrk reports (canned output, no processes) and its table."""

from __future__ import annotations

import dataclasses

import pytest

from bench.processes import BenchError
from bench.report import Row, markdown_table
from bench.wrk import parse_wrk

CLEAN = """\
Running 10s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   571.05us  207.48us   5.40ms   83.07%
    Req/Sec    56.41k     2.80k   60.35k    80.00%
  Latency Distribution
     50%  528.00us
     75%  649.00us
     90%  784.00us
     99%    1.33ms
  561270 requests in 10.00s, 87.24MB read
Requests/sec:  56122.40
Transfer/sec:      8.72MB
"""

WITH_ERRORS = """\
Running 3s test @ http://127.0.0.1:8081/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.18ms   30.02ms   1.02s    97.91%
    Req/Sec     3.50k   420.11     4.01k    73.33%
  Latency Distribution
     50%    6.91ms
     75%    8.02ms
     90%   10.44ms
     99%    1.01s
  10466 requests in 3.01s, 1.58MB read
  Socket errors: connect 0, read 12, write 3, timeout 7
  Non-2xx or 3xx responses: 40
Requests/sec:   3477.08
Transfer/sec:    537.27KB
"""


def test_clean_run() -> None:
    result = parse_wrk(CLEAN)

    assert result.requests_per_second == 56122.40
    assert result.p50_seconds == pytest.approx(528e-6)
    assert result.p99_seconds == pytest.approx(1.33e-3)
    assert (result.requests, result.duration_seconds) == (561270, 10.0)
    assert (result.socket_errors, result.non_2xx, result.errors) == (0, 0, 0)


def test_errors_and_second_units() -> None:
    result = parse_wrk(WITH_ERRORS)

    assert result.requests_per_second == 3477.08
    assert result.p50_seconds == pytest.approx(6.91e-3)
    assert result.p99_seconds == pytest.approx(1.01)
    assert (result.requests, result.duration_seconds) == (10466, 3.01)
    assert (result.socket_errors, result.non_2xx, result.errors) == (22, 40, 62)


def test_minutes_unit() -> None:
    text = CLEAN.replace("99%    1.33ms", "99%    1.50m")

    assert parse_wrk(text).p99_seconds == pytest.approx(90.0)


def test_report_without_latency_distribution_is_refused() -> None:
    without = "\n".join(line for line in CLEAN.splitlines() if "%  " not in line)

    with pytest.raises(BenchError, match="--latency"):
        parse_wrk(without)


def test_garbage_is_refused() -> None:
    with pytest.raises(BenchError):
        parse_wrk("unable to connect to 127.0.0.1:8080 Connection refused\n")


def test_markdown_table_ratios_against_nginx() -> None:
    nginx = dataclasses.replace(parse_wrk(CLEAN), server_cpu_seconds=4.49)
    slower = parse_wrk(WITH_ERRORS)
    table = markdown_table(
        [Row("nginx", nginx), Row("kubeferry", slower), Row("haproxy", problem="not found")],
        nginx.requests_per_second,
    )

    lines = table.splitlines()
    assert lines[0] == (
        "| load balancer | requests/s | p50 | p99 | CPU/request | errors | vs nginx |"
    )
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| nginx | 56,122 | 528 µs | 1.33 ms | 8.0 µs | 0 | 1.00x |"
    assert lines[3] == "| kubeferry | 3,477 | 6.91 ms | 1.01 s | - | 62 | 0.06x |"
    assert lines[4] == "| haproxy | - | - | - | - | - | not run: not found |"
