"""The retry budget as failover sees it: how many retries may be in flight, and that finished
requests and retries give their share back."""

from __future__ import annotations

from proxy.retry_budget import RetryBudget
from proxy.settings import RetrySettings


def retries_allowed(budget: RetryBudget) -> int:
    """Start retries until one is refused; give them back; say how many fitted."""
    started = 0
    while budget.try_start_retry():
        started += 1
        assert started < 1000, "the budget never refused"
    for _ in range(started):
        budget.retry_finished()
    return started


def test_the_floor_allows_retries_on_a_quiet_proxy() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=3)
    assert budget.limit() == 3
    assert retries_allowed(budget) == 3


def test_the_budget_grows_with_requests_in_flight_and_shrinks_as_they_finish() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=1)
    for _ in range(20):
        budget.request_started()
    assert budget.limit() == 4
    assert retries_allowed(budget) == 4
    for _ in range(15):
        budget.request_finished()
    assert budget.requests == 5
    assert budget.limit() == 1
    assert retries_allowed(budget) == 1


def test_a_finished_retry_frees_its_slot() -> None:
    budget = RetryBudget(ratio=0.5, min_concurrent=1)
    assert budget.try_start_retry() is True
    assert budget.try_start_retry() is False
    assert budget.retries == 1
    budget.retry_finished()
    assert budget.retries == 0
    assert budget.try_start_retry() is True


def test_from_settings_uses_the_ratio_and_the_floor() -> None:
    budget = RetryBudget.from_settings(RetrySettings(budget_ratio=0.5, min_concurrent_retries=2))
    assert budget.limit() == 2
    for _ in range(10):
        budget.request_started()
    assert budget.limit() == 5
    assert retries_allowed(budget) == 5


def test_the_refusal_text_says_what_was_full() -> None:
    budget = RetryBudget(ratio=0.25, min_concurrent=1)
    for _ in range(10):
        budget.request_started()
    budget.try_start_retry()
    assert str(budget) == "1 retries in flight for 10 requests, limit 2.5"
    assert repr(budget) == "<RetryBudget 1 retries in flight for 10 requests, limit 2.5>"
