"""Run-to-run spread in the result tables: (max - min) / median of the rounds' requests/s, a
column only where rows have rounds to compare, and the note with every round's value."""

from __future__ import annotations

import dataclasses

import pytest

from bench.loadbalancers import (
    BARE_PROXY,
    FRAMEWORK_FLOOR,
    KUBEFERRY_ACCESS,
    LEANEST,
    framework_notes,
    summarize,
)
from bench.options import parse_options
from bench.report import Row, describe_rounds, markdown_table, spread, text_table
from bench.wrk import WrkResult


def result(rps: float) -> WrkResult:
    return WrkResult(
        requests_per_second=rps,
        p50_seconds=1e-3,
        p99_seconds=2e-3,
        requests=int(rps * 10),
        duration_seconds=10.0,
    )


def test_spread_is_range_over_median() -> None:
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([110.0, 90.0, 100.0]) == pytest.approx(0.2)  # order does not matter
    assert spread([100.0, 100.0]) == 0.0
    # Even count: the median is the mean of the middle two.
    assert spread([80.0, 90.0, 110.0, 120.0]) == pytest.approx(40.0 / 100.0)


def test_no_spread_without_two_rounds_or_with_a_zero_median() -> None:
    assert spread([]) is None
    assert spread([100.0]) is None
    assert spread([0.0, 0.0, 5.0]) is None


def test_the_spread_column_follows_requests_per_second_when_rows_have_rounds() -> None:
    rows = [
        Row("nginx", result(100.0), rounds=(90.0, 100.0, 110.0)),
        Row("kubeferry", result(50.0), rounds=(50.0, 50.0, 55.0)),
        Row("haproxy", problem="not found"),
    ]
    lines = markdown_table(rows, 100.0).splitlines()
    assert lines[0] == (
        "| load balancer | requests/s | spread | p50 | p99 | CPU/request | errors | vs nginx |"
    )
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| nginx | 100 | 20% | 1.00 ms | 2.00 ms | - | 0 | 1.00x |"
    assert lines[3] == "| kubeferry | 50 | 10% | 1.00 ms | 2.00 ms | - | 0 | 0.50x |"
    assert lines[4] == "| haproxy | - | - | - | - | - | - | not run: not found |"


def test_single_runs_keep_the_table_without_a_spread_column() -> None:
    text = text_table([Row("nginx", result(100.0))], 100.0, first="run", ratio="vs baseline")
    header = text.splitlines()[0].split()
    assert "spread" not in header
    assert header[0] == "run" and header[-2:] == ["vs", "baseline"]


def test_the_rounds_note_lists_every_value_and_the_spread() -> None:
    row = Row("nginx", result(26419.0), rounds=(27456.0, 21205.0, 26419.0))
    assert describe_rounds(row) == (
        "nginx: requests/s per round 27,456, 21,205, 26,419 (spread 24%)."
    )


def test_the_framework_reference_is_described_and_compared_not_judged() -> None:
    rows = [
        Row("nginx", result(40000.0)),
        Row(KUBEFERRY_ACCESS, result(10000.0)),
        Row(FRAMEWORK_FLOOR, result(20000.0)),
    ]
    notes = framework_notes(rows)
    assert "a reference, not a load balancer" in notes[0]
    assert "does not count for the floor" in notes[0]
    assert notes[1] == f"{KUBEFERRY_ACCESS} reaches 0.50x the reference's requests/s."
    with_cpu = [
        Row(KUBEFERRY_ACCESS, dataclasses.replace(result(10000.0), server_cpu_seconds=12.0)),
        Row(FRAMEWORK_FLOOR, dataclasses.replace(result(20000.0), server_cpu_seconds=12.0)),
    ]
    assert framework_notes(with_cpu)[1] == (
        f"{KUBEFERRY_ACCESS} reaches 0.50x the reference's requests/s; of its 120 µs of CPU "
        "per request, the framework alone spends 60 µs (50%)."
    )
    assert framework_notes([Row(FRAMEWORK_FLOOR, problem="failed")]) == []


def test_the_reference_row_never_stands_in_for_kubeferry_at_the_floor() -> None:
    options = parse_options(["--floor", "0.5"])
    high_reference = Row(FRAMEWORK_FLOOR, result(90000.0))
    below = summarize(
        options,
        [Row("nginx", result(40000.0)), Row(KUBEFERRY_ACCESS, result(10000.0)), high_reference],
        [],
    )
    assert any(f.startswith("floor missed") for f in below.failures)
    missing = summarize(options, [Row("nginx", result(40000.0)), high_reference], [])
    assert any("did not run" in f for f in missing.failures)
    met = summarize(
        options,
        [Row("nginx", result(40000.0)), Row(KUBEFERRY_ACCESS, result(20000.0)), high_reference],
        [],
    )
    assert met.failures == ()
    assert FRAMEWORK_FLOOR in met.markdown


def test_the_bare_proxy_reference_is_held_against_half_of_nginx() -> None:
    def cpu(rps: float, seconds: float) -> WrkResult:
        return dataclasses.replace(result(rps), server_cpu_seconds=seconds)

    rows = [
        Row("nginx", cpu(40000.0, 8.0)),  # 20 us per request
        Row(BARE_PROXY, cpu(10000.0, 5.0)),  # 50 us per request
        Row(FRAMEWORK_FLOOR, result(20000.0)),
    ]
    bare = [note for note in framework_notes(rows) if note.startswith(BARE_PROXY)]
    assert len(bare) == 1
    assert bare[0].endswith(
        "50 µs of CPU per request, against the 40 µs that 0.5x nginx's requests/s allows "
        "(twice nginx's 20 µs)."
    )


def test_the_leanest_proxy_reference_is_held_against_half_of_nginx_too() -> None:
    rows = [
        Row("nginx", dataclasses.replace(result(40000.0), server_cpu_seconds=8.0)),  # 20 us
        Row(LEANEST, dataclasses.replace(result(20000.0), server_cpu_seconds=9.0)),  # 45 us
        Row(FRAMEWORK_FLOOR, result(20000.0)),
    ]
    [note] = [note for note in framework_notes(rows) if note.startswith(LEANEST)]
    assert note.endswith("45 µs of CPU per request against the 40 µs budget of 0.5x nginx.")
    assert framework_notes([Row(LEANEST, problem="failed")]) == []
