from __future__ import annotations

from tests.unit.strategies.conftest import endpoints, make


def test_cycles_in_order() -> None:
    strategy = make("round-robin")
    a, b, c = endpoints(3)
    assert [strategy.choose((a, b, c), None) for _ in range(7)] == [a, b, c, a, b, c, a]


def test_shrinking_list_keeps_rotating() -> None:
    strategy = make("round-robin")
    a, b, c = endpoints(3)
    assert [strategy.choose((a, b, c), None) for _ in range(2)] == [a, b]
    # The counter carries over: the rotation goes on instead of restarting at the first.
    assert [strategy.choose((a, c), None) for _ in range(3)] == [a, c, a]
