"""Waiting for an eventually consistent system without timing assertions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout_seconds: float = 30,
    interval_seconds: float = 0.2,
) -> T:
    """Runs ``check`` until it stops raising AssertionError and returns its result.

    Controllers converge, they do not answer at once: tests state the end state as plain asserts
    inside ``check``. The timeout only bounds the wait; when it passes, the last assertion error is
    raised, so the failure says what was still wrong rather than "timed out".
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval_seconds)
