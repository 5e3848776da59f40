"""Fixtures of the controller's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.controller.canned_api import Harness


@pytest.fixture
async def harnesses() -> AsyncIterator[list[Harness]]:
    """Harnesses a test starts (canned_api.start); stopped after it."""
    made: list[Harness] = []
    yield made
    for harness in made:
        await harness.stop()
