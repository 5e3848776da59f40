"""The two clocks of an upstream exchange: idle (no progress) and total.

One idle timer per exchange, pushed back when it fires early instead of re-armed on every
read: a read costs one clock reading (`last_activity`), not a timer cancel and create.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.upstream.failures import UpstreamError, UpstreamTimeout


class ExchangeTimers:
    """Calls `on_expiry` once the backend made no progress for `idle_seconds` (time while
    `client_holds()`, i.e. the proxy is not reading because its client is slow, does not
    count), or once `total_seconds` passed since `start`."""

    __slots__ = (
        "_client_holds",
        "_deadline",
        "_idle",
        "_loop",
        "_on_expiry",
        "_timer",
        "last_activity",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        idle_seconds: float,
        *,
        client_holds: Callable[[], bool],
        on_expiry: Callable[[UpstreamError], None],
    ) -> None:
        self._loop = loop
        self._idle = idle_seconds
        self._client_holds = client_holds
        self._on_expiry = on_expiry
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.last_activity = 0.0  # loop time of the last progress; set by the connection

    def start(self, total_seconds: float | None) -> None:
        loop = self._loop
        self.last_activity = now = loop.time()
        self._timer = loop.call_at(now + self._idle, self._idle_check)
        if total_seconds is not None:
            self._deadline = loop.call_at(now + total_seconds, self._total_expired)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _idle_check(self) -> None:
        now = self._loop.time()
        due = self.last_activity + self._idle
        if now < due or self._client_holds():
            self._timer = self._loop.call_at(max(due, now + 0.05), self._idle_check)
            return
        self._timer = None
        self.stop()
        self._on_expiry(UpstreamTimeout(f"upstream silent for {self._idle:g} s"))

    def _total_expired(self) -> None:
        self._deadline = None
        self.stop()
        self._on_expiry(UpstreamTimeout("upstream exchange over its total time limit"))
