"""Random choice, proportional to `Endpoint.weight`."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from proxy.model import Endpoint
from proxy.strategies import StrategyDeps


class RandomChoice:
    """Picks a candidate at random with probability weight / total weight (uniform when all
    weights are equal, the common case, which skips the cumulative table entirely)."""

    __slots__ = ("_cumulative", "_last", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # Mutable state: the cumulative weights of the last candidate tuple seen. The pool
        # hands over the same tuple object until something changes, so an identity check
        # usually avoids recomputing; `_last` holds a reference, so its id cannot be reused.
        self._last: tuple[Endpoint, ...] | None = None
        self._cumulative: list[int] | None = None

    def choose(self, candidates: Sequence[Endpoint], hash_key: str | None) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
        cumulative = self._cumulative_weights(candidates)
        if cumulative is None:
            return self._rng.choice(candidates)
        return self._rng.choices(candidates, cum_weights=cumulative)[0]

    def _cumulative_weights(self, candidates: Sequence[Endpoint]) -> list[int] | None:
        """Cumulative weights, or None when all weights are equal."""
        if candidates is self._last:
            return self._cumulative
        first = candidates[0].weight
        if all(e.weight == first for e in candidates):
            cumulative = None
        else:
            cumulative = list(itertools.accumulate(e.weight for e in candidates))
        if isinstance(candidates, tuple):
            self._last, self._cumulative = candidates, cumulative
        return cumulative


def create(deps: StrategyDeps) -> RandomChoice:
    return RandomChoice(deps.rng)
