"""Round robin: each healthy candidate in turn."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.model import Endpoint
from proxy.strategies import StrategyDeps


class RoundRobin:
    """Cycles through the candidates. A changed candidate list keeps the counter, so the
    rotation continues rather than restarting at the first endpoint."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Endpoint], hash_key: str | None) -> Endpoint:
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]


def create(deps: StrategyDeps) -> RoundRobin:
    return RoundRobin()
