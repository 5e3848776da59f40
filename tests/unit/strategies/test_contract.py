"""The contract every registered strategy keeps, whatever its algorithm."""

from __future__ import annotations

import pytest

from proxy.strategies import strategy_names
from tests.unit.strategies.conftest import endpoints, make

pytestmark = pytest.mark.parametrize("name", strategy_names())


def test_returns_one_of_the_candidates(name: str) -> None:
    strategy = make(name)
    candidates = endpoints(4)
    for i in range(200):
        assert strategy.choose(candidates, f"user-{i}") in candidates


def test_single_candidate_is_always_returned(name: str) -> None:
    strategy = make(name)
    (only,) = endpoints(1)
    for key in (None, "a", "b"):
        assert strategy.choose((only,), key) is only


def test_without_hash_key_still_answers(name: str) -> None:
    strategy = make(name)
    candidates = endpoints(3)
    assert strategy.choose(candidates, None) in candidates


def test_candidates_shrinking_and_growing_between_calls(name: str) -> None:
    strategy = make(name)
    full = endpoints(6)
    shapes = [full, full[:2], full[1:5], full[5:], full, full[::2], full[3:]]
    for round_ in range(20):
        for shape in shapes:
            chosen = strategy.choose(shape, f"k{round_}")
            assert chosen in shape, f"{chosen} is not among the current candidates"


def test_lists_and_rebuilt_tuples_are_handled_alike(name: str) -> None:
    # The pool passes tuples; a caller building a fresh list each time must get the same
    # answers, so no strategy may rely on the identity of the sequence.
    first, second = make(name, seed=3), make(name, seed=3)
    candidates = endpoints(5)
    for i in range(100):
        assert first.choose(candidates, f"k{i}") == second.choose(list(candidates), f"k{i}")


def test_excluded_endpoint_is_never_returned(name: str) -> None:
    # Retries hand the strategy the candidates minus the endpoints already tried.
    strategy = make(name)
    candidates = endpoints(5)
    tried = candidates[2]
    remaining = tuple(e for e in candidates if e != tried)
    for i in range(300):
        strategy.choose(candidates, f"k{i}")
        assert strategy.choose(remaining, f"k{i}") != tried


def test_deterministic_with_a_seeded_rng(name: str) -> None:
    candidates = endpoints(5)
    runs = []
    for _ in range(2):
        strategy = make(name, seed=42)
        runs.append([strategy.choose(candidates, f"k{i % 17}").key for i in range(200)])
    assert runs[0] == runs[1]


def test_distribution_covers_every_candidate(name: str) -> None:
    strategy = make(name)
    candidates = endpoints(5)
    # Distinct hash keys, so a hashing strategy spreads too; the others ignore the key.
    seen = {strategy.choose(candidates, f"user-{i}").key for i in range(1000)}
    assert seen == {e.key for e in candidates}


def test_distribution_without_hash_keys_covers_every_candidate(name: str) -> None:
    strategy = make(name)
    candidates = endpoints(5)
    seen = {strategy.choose(candidates, None).key for _ in range(1000)}
    assert seen == {e.key for e in candidates}
