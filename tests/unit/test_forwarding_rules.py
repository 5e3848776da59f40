"""Retry budget, failure classification and admission checks: pure rules."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from proxy import upstream
from proxy.admission import refusal
from proxy.errors import classify
from proxy.retry_budget import RetryBudget


def test_budget_allows_the_floor_when_quiet() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=3)
    assert [budget.try_start_retry() for _ in range(4)] == [True, True, True, False]
    budget.retry_finished()
    assert budget.try_start_retry()


def test_budget_scales_with_requests_in_flight() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=0)
    for _ in range(50):
        budget.request_started()
    assert sum(budget.try_start_retry() for _ in range(20)) == 10
    assert repr(budget) == "<RetryBudget 10 retries in flight for 50 requests, limit 10>"


def test_connect_failures_may_go_anywhere_broken_ones_only_if_idempotent() -> None:
    refused = classify(
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
            ConnectionRefusedError(111, "refused"),
        )
    )
    assert (refused.kind, refused.status) == ("connect", 502)
    assert refused.retryable(idempotent=False, replayable=True)
    assert not refused.retryable(idempotent=False, replayable=False)

    broken = classify(aiohttp.ServerDisconnectedError())
    assert (broken.kind, broken.status) == ("reset", 502)
    assert broken.retryable(idempotent=True, replayable=True)
    assert not broken.retryable(idempotent=False, replayable=True)

    slow = classify(TimeoutError())
    assert (slow.kind, slow.status) == ("timeout", 504)
    assert not slow.retryable(idempotent=True, replayable=True)


@pytest.mark.parametrize(
    ("error", "kind", "status", "nothing_sent", "backend_fault"),
    [
        (
            upstream.ConnectFailed(ConnectionRefusedError(111, "refused")),
            "connect",
            502,
            True,
            True,
        ),
        (upstream.ConnectTimeout("slow"), "connect_timeout", 502, True, True),
        (upstream.RequestNotSent("reset at once"), "not_sent", 502, True, True),
        (upstream.UpstreamTimeout("silent"), "timeout", 504, False, True),
        (upstream.FirstByteTimeout("no answer"), "first_byte_timeout", 504, False, True),
        (upstream.NoResponse("closed"), "reset", 502, False, True),
        (upstream.StaleConnection("idle close"), "stale", 502, False, False),
    ],
)
def test_upstream_client_failures(
    error: upstream.UpstreamError, kind: str, status: int, nothing_sent: bool, backend_fault: bool
) -> None:
    failure = classify(error)
    assert (failure.kind, failure.status, failure.nothing_sent) == (kind, status, nothing_sent)
    assert failure.backend_fault is backend_fault


def test_a_first_byte_timeout_goes_elsewhere_only_when_idempotent_unlike_a_slow_body() -> None:
    stopped = classify(upstream.FirstByteTimeout("no answer"))
    assert stopped.retryable(idempotent=True, replayable=True)
    assert not stopped.retryable(idempotent=False, replayable=True)
    assert not stopped.retryable(idempotent=True, replayable=False)
    assert not classify(upstream.UpstreamTimeout("silent")).retryable(
        idempotent=True, replayable=True
    )


def test_a_request_not_sent_may_go_anywhere_like_a_refused_connect() -> None:
    not_sent = classify(upstream.RequestNotSent("reset at once"))
    assert not_sent.retryable(idempotent=False, replayable=True)


def test_a_stale_connection_is_retried_elsewhere_only_when_idempotent() -> None:
    stale = classify(upstream.StaleConnection("idle close"))
    assert stale.retryable(idempotent=True, replayable=True)
    assert not stale.retryable(idempotent=False, replayable=True)


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("GET", "/", {}, None),
        ("CONNECT", "/", {}, 405),
        ("GET", "http://elsewhere/", {}, 400),
        ("OPTIONS", "*", {}, 400),
        ("POST", "/", {"Content-Length": "5", "Transfer-Encoding": "chunked"}, 400),
        ("POST", "/", {"Transfer-Encoding": "gzip"}, 400),
        ("POST", "/", {"Content-Length": "101"}, 413),
        ("POST", "/", {"Content-Length": "100"}, None),
        ("POST", "/", {"Transfer-Encoding": "chunked"}, None),
    ],
)
def test_refusals(method: str, path: str, headers: dict[str, str], expected: int | None) -> None:
    request = make_mocked_request(method, path, headers=CIMultiDict(headers))
    result = refusal(request, max_body_bytes=100)
    assert (result[0] if result else None) == expected
