"""Wait for a condition by polling, with a deadline: the alternative to fixed sleeps.

A test states what it waits for and how long it is willing to wait; it passes as soon as the
condition holds, so a slow machine makes it slower, not flaky.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], object] | Callable[[], Awaitable[object]]


async def eventually(
    condition: Condition,
    *,
    # The deadline is the point of this helper, so it takes one (ASYNC109 expects callers to
    # wrap it in asyncio.timeout, which would lose the condition-naming message).
    timeout: float = 5.0,  # noqa: ASYNC109
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Return once `condition()` is truthy (awaiting it if it returns an awaitable); raise
    AssertionError naming the condition if it still is not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            what = message or getattr(condition, "__name__", repr(condition))
            raise AssertionError(f"condition not met within {timeout}s: {what}")
        await asyncio.sleep(interval)
