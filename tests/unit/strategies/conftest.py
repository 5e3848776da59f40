"""Fakes shared by the strategy tests: an in-flight table and endpoint factories."""

from __future__ import annotations

import random

from proxy.model import Endpoint
from proxy.strategies import Strategy, StrategyDeps, create_strategy


class FakeInflight:
    """An in-flight view the test sets by hand."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def inflight(self, endpoint: Endpoint) -> int:
        return self.counts.get(endpoint.key, 0)


def endpoints(count: int, *, weights: tuple[int, ...] | None = None) -> tuple[Endpoint, ...]:
    """`count` endpoints 10.0.0.1:8080, 10.0.0.2:8080, ..., with optional weights."""
    return tuple(
        Endpoint(f"10.0.0.{i + 1}", 8080, weight=weights[i] if weights else 1) for i in range(count)
    )


def make(name: str, *, seed: int = 7, inflight: FakeInflight | None = None) -> Strategy:
    deps = StrategyDeps(rng=random.Random(seed), inflight=inflight or FakeInflight())
    return create_strategy(name, deps)
