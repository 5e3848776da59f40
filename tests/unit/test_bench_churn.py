"""The churn section's pure parts: its options and the summary of kubeferry's access log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.churn import describe_access_log, down_seconds
from bench.options import parse_options


def test_churn_options_default_quick_and_bounds() -> None:
    default = parse_options([])
    assert (default.churn_period_seconds, default.churn_cycles) == (20, 3)
    quick = parse_options(["--quick", "--churn-period", "60"])
    assert (quick.churn_period_seconds, quick.churn_cycles) == (4, 2)
    assert parse_options(["--only", "churn", "--churn-cycles", "5"]).churn_cycles == 5
    with pytest.raises(SystemExit):
        parse_options(["--churn-period", "2"])


def test_a_backend_stays_down_a_quarter_of_the_period_at_most_two_seconds() -> None:
    assert (down_seconds(4), down_seconds(20)) == (1.0, 2.0)


def test_the_access_log_summary_names_what_saved_requests_and_what_failed(
    tmp_path: Path,
) -> None:
    lines = [
        {"event": "access", "status": 200, "retries": 0},
        {"event": "access", "status": 200, "retries": 1, "error": "connect failed: [Errno 111]"},
        {"event": "access", "status": 200, "retries": 1, "error": "connect failed: [Errno 111]"},
        {"event": "access", "status": 200, "retries": 1, "error": "no response: reset"},
        {
            "event": "access",
            "status": 502,
            "retries": 0,
            "error": "no response: reused upstream connection closed before any response",
        },
        {"event": "upstream_failure", "status": 0},
    ]
    log = tmp_path / "kubeferry.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))

    assert describe_access_log(log) == (
        "kubeferry + JSON access log: requests saved by a retry: 2 after a refused connect, "
        "1 after a broken connection (re-sent). Failed: 1x no response: reused upstream "
        "connection closed before any response."
    )
