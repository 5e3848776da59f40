"""Full-jitter exponential backoff: growth, cap, reset, determinism with a seeded RNG."""

from __future__ import annotations

import random

from controller.watch import Backoff


def make(seed: int = 3) -> Backoff:
    return Backoff(initial_seconds=0.5, max_seconds=30.0, rng=random.Random(seed))


def test_the_cap_doubles_from_half_a_second_to_thirty() -> None:
    backoff = make()
    caps = []
    for _ in range(10):
        caps.append(backoff.cap_seconds())
        backoff.next_delay()
    assert caps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_delays_are_full_jitter_under_the_cap() -> None:
    backoff = make()
    for _ in range(200):
        cap = backoff.cap_seconds()
        assert 0 <= backoff.next_delay() <= cap
    assert backoff.cap_seconds() == 30


def test_a_seeded_rng_gives_the_same_delays() -> None:
    first, second = make(seed=11), make(seed=11)
    assert [first.next_delay() for _ in range(8)] == [second.next_delay() for _ in range(8)]
    rng = random.Random(11)
    expected = [rng.uniform(0, min(30, 0.5 * 2**n)) for n in range(8)]
    third = make(seed=11)
    assert [third.next_delay() for _ in range(8)] == expected


def test_reset_starts_over() -> None:
    backoff = make()
    for _ in range(6):
        backoff.next_delay()
    assert repr(backoff) == "<Backoff 6 failures, cap 30s>"
    backoff.reset()
    assert backoff.cap_seconds() == 0.5
    assert backoff.next_delay() <= 0.5


def test_a_huge_failure_count_does_not_overflow() -> None:
    backoff = make()
    backoff.failures = 10_000
    assert backoff.cap_seconds() == 30
