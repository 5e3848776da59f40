"""A retry budget, as Envoy's: retries in flight stay below a share of requests in flight.

Per-request retry limits alone let a failing cluster multiply load by (1 + max_retries);
the budget caps the extra load at `ratio` of current traffic (with a small floor so a quiet
proxy can still retry). Mutable state is two counters, changed only from the event loop.

Unlike Envoy's, it is asked only for retries that re-send a request a backend may have seen
(proxy.failover): one that nothing received is extra work for nobody, and refusing it is what
turned a backend's restart into failed requests under load (issue 14).
"""

from __future__ import annotations

from proxy.settings import RetrySettings


class RetryBudget:
    """Counts requests and retries in flight; `try_start_retry()` says whether one more fits."""

    __slots__ = ("_floor", "_ratio", "requests", "retries")

    def __init__(self, *, ratio: float, min_concurrent: int) -> None:
        self._ratio = ratio
        self._floor = min_concurrent
        self.requests = 0
        self.retries = 0

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryBudget:
        return cls(ratio=settings.budget_ratio, min_concurrent=settings.min_concurrent_retries)

    def __repr__(self) -> str:
        return f"<RetryBudget {self}>"

    def __str__(self) -> str:
        # What an access line says when a retry was refused.
        return (
            f"{self.retries} retries in flight for {self.requests} requests, limit {self.limit():g}"
        )

    def limit(self) -> float:
        """How many retries may be in flight now."""
        return max(self._floor, self._ratio * self.requests)

    def request_started(self) -> None:
        self.requests += 1

    def request_finished(self) -> None:
        self.requests -= 1

    def try_start_retry(self) -> bool:
        """Reserve a retry slot if the budget allows; pair a True with `retry_finished()`."""
        if self.retries >= self.limit():
            return False
        self.retries += 1
        return True

    def retry_finished(self) -> None:
        self.retries -= 1
