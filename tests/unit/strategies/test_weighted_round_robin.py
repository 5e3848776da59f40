from __future__ import annotations

from collections import Counter

from tests.unit.strategies.conftest import endpoints, make


def test_smooth_sequence_matches_nginx_for_5_1_1() -> None:
    strategy = make("weighted-round-robin")
    a, b, c = endpoints(3, weights=(5, 1, 1))
    label = {a.key: "a", b.key: "b", c.key: "c"}
    picks = [label[strategy.choose((a, b, c), None).key] for _ in range(14)]
    # nginx's documented pattern, repeating every total-weight (7) picks.
    assert "".join(picks) == "aabacaa" * 2


def test_shares_follow_weights() -> None:
    strategy = make("weighted-round-robin")
    candidates = endpoints(3, weights=(3, 2, 1))
    counts = Counter(strategy.choose(candidates, None).key for _ in range(600))
    assert [counts[e.key] for e in candidates] == [300, 200, 100]


def test_equal_weights_is_plain_round_robin() -> None:
    strategy = make("weighted-round-robin")
    a, b, c = endpoints(3)
    assert [strategy.choose((a, b, c), None) for _ in range(6)] == [a, b, c, a, b, c]


def test_scores_survive_a_reordered_candidate_list() -> None:
    # State is keyed by endpoint, not by position: reordering changes nothing but ties.
    strategy = make("weighted-round-robin")
    a, b, c = endpoints(3, weights=(5, 1, 1))
    first = [strategy.choose((a, b, c), None) for _ in range(3)]
    rest = [strategy.choose((c, a, b), None) for _ in range(4)]
    assert Counter(e.key for e in first + rest) == {a.key: 5, b.key: 1, c.key: 1}


def test_endpoint_leaving_and_returning_keeps_shares() -> None:
    strategy = make("weighted-round-robin")
    a, b, c = endpoints(3, weights=(2, 1, 1))
    for _ in range(5):
        strategy.choose((a, b, c), None)
    for _ in range(3):
        assert strategy.choose((a, b), None) in (a, b)
    counts = Counter(strategy.choose((a, b, c), None).key for _ in range(400))
    assert [counts[e.key] for e in (a, b, c)] == [200, 100, 100]
