from __future__ import annotations

from collections import Counter

import pytest

from proxy.strategies.consistent_hash import ConsistentHash, Ring, hash_point
from tests.unit.strategies.conftest import endpoints, make

KEYS = [f"user-{i}" for i in range(10_000)]
N = 10


def assignment(strategy: object, candidates: tuple[object, ...]) -> dict[str, str]:
    assert isinstance(strategy, ConsistentHash)
    return {key: strategy.choose(candidates, key).key for key in KEYS}  # type: ignore[arg-type]


def test_same_key_same_endpoint() -> None:
    strategy = make("consistent-hash")
    candidates = endpoints(N)
    first = assignment(strategy, candidates)
    assert assignment(strategy, candidates) == first
    # A fresh instance (another proxy replica, or after a restart) agrees: the hash is stable.
    assert assignment(make("consistent-hash", seed=99), candidates) == first


def test_order_of_candidates_does_not_matter() -> None:
    candidates = endpoints(N)
    assert assignment(make("consistent-hash"), candidates) == assignment(
        make("consistent-hash"), tuple(reversed(candidates))
    )


def test_keys_spread_evenly() -> None:
    counts = Counter(assignment(make("consistent-hash"), endpoints(N)).values())
    assert len(counts) == N
    # 160 virtual nodes each: every endpoint within +-35% of the fair share of 1,000.
    assert all(650 < count < 1350 for count in counts.values()), counts


@pytest.mark.parametrize("removed_index", [0, 4, 9])
def test_removing_one_of_n_moves_only_its_keys(removed_index: int) -> None:
    strategy = make("consistent-hash")
    candidates = endpoints(N)
    before = assignment(strategy, candidates)
    removed = candidates[removed_index]
    after = assignment(strategy, tuple(e for e in candidates if e != removed))
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == removed.key}
    assert len(moved) <= 1.5 * len(KEYS) / N


def test_adding_one_moves_about_one_in_n_plus_one() -> None:
    strategy = make("consistent-hash")
    candidates = endpoints(N + 1)
    before = assignment(strategy, candidates[:N])
    after = assignment(strategy, candidates)
    moved = {key for key in KEYS if before[key] != after[key]}
    # Keys only ever move to the newcomer, and about 1/(N+1) of them do.
    assert {after[key] for key in moved} == {candidates[N].key}
    assert 0.5 * len(KEYS) / (N + 1) <= len(moved) <= 1.5 * len(KEYS) / (N + 1)


def test_heavier_endpoint_gets_more_keys() -> None:
    candidates = endpoints(3, weights=(2, 1, 1))
    counts = Counter(assignment(make("consistent-hash"), candidates).values())
    assert 0.4 < counts[candidates[0].key] / len(KEYS) < 0.6


def test_no_hash_key_falls_back_to_random() -> None:
    strategy = make("consistent-hash")
    candidates = endpoints(4)
    assert {strategy.choose(candidates, None) for _ in range(400)} == set(candidates)


def test_ring_is_built_once_per_candidate_set(monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[int] = []
    original = Ring.build.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Ring], candidates: tuple[object, ...]) -> Ring:
        builds.append(len(candidates))
        return original(cls, candidates)  # type: ignore[no-any-return]

    monkeypatch.setattr(Ring, "build", classmethod(counting))
    strategy = make("consistent-hash")
    full = endpoints(5)
    retry = full[1:]
    for i in range(50):
        strategy.choose(full, f"k{i}")
        strategy.choose(list(full), f"k{i}")  # equal content, another object: cached too
        strategy.choose(retry, f"k{i}")  # a retry's smaller set gets its own cached ring
    assert builds == [5, 4]


def test_hash_point_is_stable() -> None:
    # Pinned: a change here would remap every key on every proxy after an upgrade.
    assert hash_point("user-1") == 11145382709976293768
    assert 0 <= hash_point("x") < 2**64
