from __future__ import annotations

import pytest

from proxy.strategies import STRATEGIES, UnknownStrategyError, strategy_names
from tests.unit.strategies.conftest import make


def test_unknown_name_raises_naming_the_valid_choices() -> None:
    with pytest.raises(UnknownStrategyError) as caught:
        make("fastest")
    message = str(caught.value)
    assert "'fastest'" in message
    for name in strategy_names():
        assert name in message


def test_unknown_strategy_error_is_a_value_error() -> None:
    assert issubclass(UnknownStrategyError, ValueError)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_registered_name_builds_a_fresh_instance(name: str) -> None:
    assert make(name) is not make(name)
