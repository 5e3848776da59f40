from __future__ import annotations

from collections import Counter

from tests.unit.strategies.conftest import FakeInflight, endpoints, make


def test_less_loaded_of_two_wins() -> None:
    inflight = FakeInflight()
    strategy = make("least-request", inflight=inflight)
    busy, idle = endpoints(2)
    inflight.counts[busy.key] = 5
    # With two candidates both are always sampled, so the idle one wins every time.
    assert {strategy.choose((busy, idle), None) for _ in range(50)} == {idle}


def test_most_loaded_is_never_chosen_among_many() -> None:
    inflight = FakeInflight()
    strategy = make("least-request", inflight=inflight)
    candidates = endpoints(5)
    for load, endpoint in enumerate(candidates):
        inflight.counts[endpoint.key] = load
    counts = Counter(strategy.choose(candidates, None) for _ in range(2000))
    # The busiest endpoint loses every pair it is drawn into.
    assert counts[candidates[-1]] == 0
    # The idlest wins every pair it is in: 2 of 5 draws include it, so about 40%.
    assert counts[candidates[0]] == max(counts.values())
    assert 0.3 < counts[candidates[0]] / 2000 < 0.5


def test_two_distinct_candidates_are_compared() -> None:
    # If the two samples could be the same endpoint, a loaded one would sometimes win
    # against itself; with distinct samples the idle one wins every pair.
    inflight = FakeInflight()
    strategy = make("least-request", inflight=inflight)
    loaded, idle = endpoints(2)
    inflight.counts[loaded.key] = 1
    assert all(strategy.choose((loaded, idle), None) is idle for _ in range(100))


def test_ties_spread_over_all() -> None:
    strategy = make("least-request")
    candidates = endpoints(4)
    counts = Counter(strategy.choose(candidates, None) for _ in range(4000))
    assert set(counts) == set(candidates)
    assert min(counts.values()) > 700
