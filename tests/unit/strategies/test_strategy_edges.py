"""Edges of the balancing algorithms that the per-strategy suites do not reach: membership
changes, tiny and lopsided weights, two candidates, the registry's error message."""

from __future__ import annotations

from collections import Counter

import pytest

from proxy.model import Endpoint
from proxy.strategies import UnknownStrategyError, strategy_names
from proxy.strategies.consistent_hash import POINTS_PER_ENDPOINT, Ring
from tests.unit.strategies.conftest import FakeInflight, endpoints, make


def test_unknown_strategy_message_lists_the_choices_comma_separated() -> None:
    with pytest.raises(UnknownStrategyError) as caught:
        make("fastest")
    assert str(caught.value) == (
        f"unknown strategy 'fastest'; choose one of: {', '.join(strategy_names())}"
    )


def test_least_request_never_picks_the_busiest_wherever_it_sits() -> None:
    # Two distinct samples: the busiest loses every pair it is drawn into, in any position.
    for position in range(3):
        inflight = FakeInflight()
        strategy = make("least-request", inflight=inflight)
        candidates = endpoints(3)
        inflight.counts[candidates[position].key] = 10
        picks = Counter(strategy.choose(candidates, None) for _ in range(600))
        assert picks[candidates[position]] == 0, position
        assert len(picks) == 2


def label(**named: Endpoint) -> dict[str, str]:
    return {endpoint.key: name for name, endpoint in named.items()}


def test_weighted_round_robin_newcomer_starts_at_zero() -> None:
    strategy = make("weighted-round-robin")
    a, b, c = endpoints(3, weights=(1, 1, 2))
    names = label(a=a, b=b, c=c)
    picks = [strategy.choose((a, b), None) for _ in range(3)]
    picks += [strategy.choose((a, b, c), None) for _ in range(8)]
    # c joins with score 0 (as nginx does); its weight 2 gives it half the picks of each cycle.
    assert "".join(names[e.key] for e in picks) == "aba" + "bcac" + "bcac"


def test_weighted_round_robin_keeps_the_scores_of_endpoints_that_stay() -> None:
    strategy = make("weighted-round-robin")
    a, b, c = endpoints(3, weights=(3, 2, 1))
    names = label(a=a, b=b, c=c)
    picks = [strategy.choose((a, b, c), None) for _ in range(4)]
    # c leaves: a and b go on from where they were instead of restarting the rotation.
    picks += [strategy.choose((a, b), None) for _ in range(5)]
    assert "".join(names[e.key] for e in picks) == "abac" + "baaba"


def points_per_owner(ring: Ring) -> dict[str, int]:
    return dict(Counter(owner.key for owner in ring.owners))


@pytest.mark.parametrize(
    "weights",
    [(1, 1), (1, 3), (17, 303), (3, 7), (1, 2, 3, 4)],
)
def test_ring_points_follow_the_weights(weights: tuple[int, ...]) -> None:
    candidates = endpoints(len(weights), weights=weights)
    budget = POINTS_PER_ENDPOINT * len(weights)
    expected = {e.key: round(budget * e.weight / sum(weights)) for e in candidates}
    ring = Ring.build(candidates)
    assert points_per_owner(ring) == expected
    assert list(ring.points) == sorted(ring.points)


def test_ring_gives_a_negligible_weight_one_point_not_zero() -> None:
    light, heavy = endpoints(2, weights=(1, 100_000))
    assert points_per_owner(Ring.build((light, heavy))) == {
        light.key: 1,
        heavy.key: 2 * POINTS_PER_ENDPOINT,
    }


def test_consistent_hash_splits_keys_between_two_candidates() -> None:
    strategy = make("consistent-hash")
    pair = endpoints(2)
    counts = Counter(strategy.choose(pair, f"user-{i}") for i in range(1000))
    assert set(counts) == set(pair)
    assert min(counts.values()) > 300
