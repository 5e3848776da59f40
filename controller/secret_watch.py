"""One list+watch stream per Secret that an enrolled Service names in `kubeferry.io/tls-secret`.

The sync says which Secrets are referenced (`want`, a plain def, after each sync whose set
changed); `run` opens a stream (controller.watch's three-layer loop, with a field selector on
the Secret's name) for each new one and closes the streams of Secrets no Service names any
more, which forgets them in the cache. So the process holds the data of exactly the Secrets it
serves, and RBAC needs get/list/watch on secrets in the watched namespaces (the field selector
narrows what the API server sends, not what it allows).

Mutable state (event loop only): `_wanted`, the Secrets the last sync referenced; `_running`,
the stream task of each Secret being watched, owned by `run`'s TaskGroup.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from controller.cache import Cache, Key
from controller.watch import Sleep, WatchMetrics, WatchTiming, stream_forever

log = logging.getLogger("kubeferry.controller.watch")


class SecretWatches:
    """Keeps one Secret stream open per referenced Secret."""

    def __init__(
        self,
        api: Any,
        cache: Cache,
        *,
        metrics: WatchMetrics,
        timing: WatchTiming,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._api = api
        self._cache = cache
        self._metrics = metrics
        self._timing = timing
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._wanted: frozenset[Key] = frozenset()
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"<SecretWatches {len(self._running)} watched, {len(self._wanted)} wanted>"

    def want(self, secrets: frozenset[Key]) -> None:
        """Watch exactly these (namespace, name) Secrets from now on."""
        if secrets != self._wanted:
            self._wanted = secrets
            self._wake.set()

    async def run(self) -> None:
        """Open and close streams as `want` says, until cancelled (which ends them all)."""
        async with asyncio.TaskGroup() as group:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._reconcile(group)

    def _reconcile(self, group: asyncio.TaskGroup) -> None:
        wanted = self._wanted
        for key in [k for k in self._running if k not in wanted]:
            self._running.pop(key).cancel()
            self._cache.close_secret(*key)
            log.info(
                "no Service names Secret %s/%s any more; forgot it",
                *key,
                extra={"event": "secret_unwatched", "namespace": key[0], "secret": key[1]},
            )
        for key in sorted(wanted - self._running.keys()):
            scope = self._cache.open_secret(*key)
            self._running[key] = group.create_task(
                stream_forever(
                    self._api,
                    self._cache,
                    kind="Secret",
                    scope=scope,
                    metrics=self._metrics,
                    timing=self._timing,
                    rng=self._rng,
                    clock=self._clock,
                    sleep=self._sleep,
                ),
                name=f"watch Secret {key[0]}/{key[1]}",
            )
