"""Least request by the power of two choices."""

from __future__ import annotations

import random
from collections.abc import Sequence

from proxy.model import Endpoint
from proxy.strategies import InflightView, StrategyDeps


class LeastRequest:
    """Samples two distinct candidates at random and takes the one with fewer requests in
    flight. Unlike a full scan for the minimum, this does not send every new request of a
    burst to the same momentarily idle endpoint, and it costs O(1) per pick (Mitzenmacher,
    "The Power of Two Choices in Randomized Load Balancing")."""

    __slots__ = ("_inflight", "_rng")

    def __init__(self, rng: random.Random, inflight: InflightView) -> None:
        self._rng = rng
        self._inflight = inflight

    def choose(self, candidates: Sequence[Endpoint], hash_key: str | None) -> Endpoint:
        count = len(candidates)
        if count == 1:
            return candidates[0]
        first = self._rng.randrange(count)
        # Draw from the other count - 1 slots so the two are always distinct.
        second = self._rng.randrange(count - 1)
        if second >= first:
            second += 1
        a, b = candidates[first], candidates[second]
        return a if self._inflight.inflight(a) <= self._inflight.inflight(b) else b


def create(deps: StrategyDeps) -> LeastRequest:
    return LeastRequest(deps.rng, deps.inflight)
