"""Balancing strategies: one algorithm per module, chosen by name from `STRATEGIES`.

A strategy only ever sees the healthy candidates the pool hands it (never an empty
sequence) and returns one of them. Strategies that keep state key it by `Endpoint.key`,
because the candidate sequence changes whenever health or membership changes.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy.model import Endpoint


class InflightView(Protocol):
    """Read access to how many requests each endpoint is serving right now."""

    def inflight(self, endpoint: Endpoint) -> int: ...


class Strategy(Protocol):
    """Chooses one endpoint among healthy candidates."""

    def choose(self, candidates: Sequence[Endpoint], hash_key: str | None) -> Endpoint:
        """Return one of `candidates` (non-empty). `hash_key` is set only for hashing strategies."""
        ...


@dataclass(frozen=True, slots=True)
class StrategyDeps:
    """What a strategy may depend on: injected so tests are deterministic."""

    rng: random.Random
    inflight: InflightView


StrategyFactory = Callable[[StrategyDeps], Strategy]


class UnknownStrategyError(ValueError):
    """Raised for a strategy name that is not in the registry."""


# Name -> "module:factory". Imported on first use, as uvicorn's protocol table does, so
# adding a strategy is one module plus one line here.
STRATEGIES: dict[str, str] = {
    "round-robin": "proxy.strategies.round_robin:create",
    "weighted-round-robin": "proxy.strategies.weighted_round_robin:create",
    "least-request": "proxy.strategies.least_request:create",
    "random": "proxy.strategies.random_choice:create",
    "consistent-hash": "proxy.strategies.consistent_hash:create",
}


def strategy_names() -> tuple[str, ...]:
    return tuple(sorted(STRATEGIES))


def create_strategy(name: str, deps: StrategyDeps) -> Strategy:
    """Build a fresh strategy instance; raise UnknownStrategyError naming the valid choices."""
    try:
        target = STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}"
        ) from None
    module_name, _, attribute = target.partition(":")
    factory: StrategyFactory = getattr(importlib.import_module(module_name), attribute)
    return factory(deps)
