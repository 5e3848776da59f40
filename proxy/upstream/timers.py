"""Idle, first-byte and total deadlines of upstream exchanges, checked by one shared timer.

A timer per exchange (armed, then cancelled when the answer arrives a millisecond later) costs
more than the rest of the client's bookkeeping. Instead every exchange in flight is in one set,
and a single timer sweeps it every `tick` seconds while the set is not empty; each connection
judges its own deadlines (`Watched.check`). A deadline is thus noticed up to one tick late;
the tick is a tenth of the shortest limit, at most a second.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Watched(Protocol):
    """An exchange in flight (UpstreamConnection): fails itself if a deadline passed."""

    def check(self, now: float) -> None: ...


class Watchdog:
    """The exchanges in flight of one client and the timer that sweeps them."""

    __slots__ = (
        "_busy",
        "_handle",
        "first_byte_seconds",
        "idle_seconds",
        "tick_seconds",
        "total_seconds",
    )

    def __init__(
        self,
        *,
        idle_seconds: float,
        total_seconds: float | None = None,
        first_byte_seconds: float | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.total_seconds = total_seconds
        self.first_byte_seconds = first_byte_seconds
        shortest = min(s for s in (idle_seconds, total_seconds, first_byte_seconds) if s)
        self.tick_seconds = min(1.0, max(0.01, shortest / 10))
        # Mutable state: the exchanges in flight; the pending sweep while there are any.
        self._busy: set[Watched] = set()
        self._handle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Watchdog {len(self._busy)} exchanges, tick {self.tick_seconds:g} s>"

    def watch(self, exchange: Watched) -> None:
        self._busy.add(exchange)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.tick_seconds, self._run)

    def unwatch(self, exchange: Watched) -> None:
        self._busy.discard(exchange)

    def sweep(self, now: float) -> None:
        """Let every exchange in flight check its deadlines against `now`."""
        for exchange in list(self._busy):
            exchange.check(now)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = None
        self.sweep(loop.time())
        if self._busy:
            self._handle = loop.call_later(self.tick_seconds, self._run)
