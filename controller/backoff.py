"""How long a reconnect loop waits after consecutive failures (used by controller.watch)."""

from __future__ import annotations

import random


class Backoff:
    """Full-jitter exponential backoff ("Exponential Backoff And Jitter", AWS architecture blog).
    A plain object with no I/O: the caller sleeps."""

    def __init__(self, *, initial_seconds: float, max_seconds: float, rng: random.Random) -> None:
        self._initial = initial_seconds
        self._max = max_seconds
        self._rng = rng
        self.failures = 0

    def __repr__(self) -> str:
        return f"<Backoff {self.failures} failures, cap {self.cap_seconds():g}s>"

    def cap_seconds(self) -> float:
        return float(min(self._max, self._initial * 2 ** min(self.failures, 64)))

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        delay = self._rng.uniform(0, self.cap_seconds())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
