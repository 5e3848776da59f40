from __future__ import annotations

from collections import Counter

from tests.unit.strategies.conftest import endpoints, make


def test_uniform_when_weights_are_equal() -> None:
    strategy = make("random")
    candidates = endpoints(4)
    counts = Counter(strategy.choose(candidates, None) for _ in range(8000))
    assert all(1700 < counts[e] < 2300 for e in candidates)


def test_proportional_to_weight() -> None:
    strategy = make("random")
    candidates = endpoints(3, weights=(6, 3, 1))
    counts = Counter(strategy.choose(candidates, None) for _ in range(10_000))
    shares = [counts[e] / 10_000 for e in candidates]
    assert 0.55 < shares[0] < 0.65
    assert 0.25 < shares[1] < 0.35
    assert 0.07 < shares[2] < 0.13


def test_weights_follow_a_changed_candidate_tuple() -> None:
    strategy = make("random")
    heavy, light = endpoints(2, weights=(9, 1))
    for _ in range(10):
        strategy.choose((heavy, light), None)
    # Same members, other order: a cumulative table reused by position would give the
    # light endpoint 90% of the picks.
    counts = Counter(strategy.choose((light, heavy), None) for _ in range(5000))
    assert 0.05 < counts[light] / 5000 < 0.15
