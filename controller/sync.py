"""The sync: on a "changed" signal, rebuild the whole desired state from the cache and push it.

Level-triggered, as traefik's providers are: watch events only wake us, and every sync reads
every enrolled Service and its slices from the cache, translates them and resolves route
conflicts (pure, controller.desired), and compares the result with what was last pushed. Only
a different snapshot is pushed, whole, to the data plane (`apply`) and the router (`replace`),
both plain defs.

The cache is never cleared on an API failure and a sync never pushes before the cache has
listed everything once, so the data plane keeps the last known endpoints while the API server
is away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from controller.annotations import Defaults, Problem
from controller.desired import Selection, Translations, build_desired
from controller.events import EventRecorder
from controller.objects import ClusterView, ServiceInfo
from proxy.model import UpstreamSpec
from proxy.routing import RouteTable

logger = logging.getLogger("kubeferry.controller")

READY_CONDITION = "controller_synced"


# -- what the sync talks to -----------------------------------------------------------------


class UpstreamSink(Protocol):
    """The data plane: takes the whole set of upstreams, removes the ones missing."""

    def apply(self, upstreams: Mapping[str, UpstreamSpec]) -> bool: ...


class RouteSink(Protocol):
    """The ingress router: takes a whole route table."""

    def replace(self, table: RouteTable) -> bool: ...


class ReadinessSink(Protocol):
    def set(self, condition: str, ok: bool) -> None: ...


class ChangeWaiter(Protocol):
    async def wait(self) -> float:
        """Return (coalesced) after a change, with the monotonic time it was first noticed."""
        ...


class SyncSource(ClusterView, Protocol):
    """The cache as the sync's loop sees it."""

    @property
    def changed(self) -> ChangeWaiter: ...

    async def wait_synced(self) -> None: ...


class SyncMetrics(Protocol):
    def sync_duration(self, seconds: float) -> None: ...

    def sync_result(self, result: str) -> None: ...

    def enrolled_services(self, n: int) -> None: ...

    def change_to_pool(self, seconds: float) -> None: ...

    def invalid_annotation(self) -> None: ...


# -- the sync loop --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What one sync did (for tests, logs and metrics)."""

    pushed_upstreams: bool
    pushed_routes: bool
    enrolled: int
    reported: tuple[tuple[ServiceInfo, Problem], ...] = ()

    @property
    def pushed(self) -> bool:
        return self.pushed_upstreams or self.pushed_routes


class Sync:
    """Turns cache contents into data-plane snapshots.

    Mutable state, changed only in `sync()` (a plain def, no await inside):
      _pushed     the upstreams last applied (None: nothing pushed yet)
      _reported   problems already logged and reported, by Service uid; a problem is reported
                  again only after it went away, or changed, and came back
      _missing    sidecar upstreams last logged as not found
      _memo       translations reused while their inputs are the same objects
      first_synced  set by the first sync (of a fully listed cache); awaited by startup and tests
    """

    def __init__(
        self,
        view: ClusterView,
        *,
        selection: Selection,
        defaults: Defaults,
        dataplane: UpstreamSink,
        router: RouteSink | None = None,
        readiness: ReadinessSink | None = None,
        events: EventRecorder | None = None,
        metrics: SyncMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if selection.mode == "ingress" and router is None:
            raise ValueError("ingress mode needs a router for the routes")
        self._view = view
        self._selection = selection
        self._defaults = defaults
        self._dataplane = dataplane
        self._router = router
        self._readiness = readiness
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._pushed: Mapping[str, UpstreamSpec] | None = None
        self._reported: frozenset[tuple[str, Problem]] = frozenset()
        self._missing: tuple[tuple[str, str], ...] = ()
        self._memo = Translations()
        self.first_synced = asyncio.Event()
        if readiness is not None:
            readiness.set(READY_CONDITION, False)

    def __repr__(self) -> str:
        pushed = "nothing pushed" if self._pushed is None else f"{len(self._pushed)} upstreams"
        return f"<Sync {self._selection.mode}: {pushed}, {len(self._reported)} problems>"

    async def run(self, source: SyncSource) -> None:
        """Sync after the cache's first full list, then on every change, forever.

        A failing sync (a bug) is logged and the last pushed state stays; the next change
        tries again."""
        await source.wait_synced()
        changed_at: float | None = None
        while True:
            try:
                self.sync(changed_at=changed_at)
            except Exception:  # the top of a task: keep serving the last good state
                logger.exception("sync failed; keeping the last pushed state")
                if self._metrics is not None:
                    self._metrics.sync_result("error")
            changed_at = await source.changed.wait()

    def sync(self, *, changed_at: float | None = None) -> SyncOutcome:
        """Rebuild, compare, push what changed, report new problems. Plain def: nothing can
        interleave, so requests never see new routes before their upstreams exist."""
        started = self._clock()
        desired = build_desired(self._view, self._selection, self._defaults, memo=self._memo)

        pushed_upstreams = False
        if self._pushed is None or desired.upstreams != self._pushed:
            self._dataplane.apply(desired.upstreams)
            self._pushed = desired.upstreams
            pushed_upstreams = True
        pushed_routes = self._router.replace(desired.table) if self._router is not None else False

        current = frozenset((service.uid, problem) for service, problem in desired.problems)
        new = tuple(
            (service, problem)
            for service, problem in desired.problems
            if (service.uid, problem) not in self._reported
        )
        self._reported = current
        missing_now = [key for key in desired.missing if key not in self._missing]
        self._missing = desired.missing
        first = not self.first_synced.is_set()
        self.first_synced.set()

        # Reporting and readiness after the state change.
        for service, problem in new:
            self._report(service, problem)
        for namespace, name in missing_now:
            logger.warning(
                "upstream Service not found; its port answers 503 until it exists",
                extra={"event": "service_missing", "namespace": namespace, "service": name},
            )
        if first:
            # The first full cache (thousands of objects in a big cluster) lives until the next
            # relist: moved out of the collector's generations it is not traversed again, which
            # keeps full collections, and so the p99 change-to-pool delay, short.
            gc.freeze()
            if self._readiness is not None:
                self._readiness.set(READY_CONDITION, True)
        outcome = SyncOutcome(pushed_upstreams, pushed_routes, len(desired.upstreams), new)
        self._record(outcome, started=started, changed_at=changed_at)
        if first or outcome.pushed:
            logger.info(
                "synced",
                extra={
                    "event": "sync",
                    "upstreams": outcome.enrolled,
                    "routes": len(desired.table.routes),
                    "pushed_upstreams": pushed_upstreams,
                    "pushed_routes": pushed_routes,
                },
            )
        return outcome

    def _report(self, service: ServiceInfo, problem: Problem) -> None:
        event = "invalid_annotation" if problem.event_reason == "InvalidAnnotation" else "problem"
        logger.warning(
            problem.message,
            extra={
                "event": event,
                "namespace": service.namespace,
                "service": service.name,
                "annotation": problem.annotation,
                "value": problem.value,
                "reason": problem.event_reason,
                "detail": problem.reason,
                "blocking": problem.blocking,
            },
        )
        if self._events is not None:
            self._events.warn(service, problem.event_reason, problem.message)
        if self._metrics is not None and problem.event_reason == "InvalidAnnotation":
            self._metrics.invalid_annotation()

    def _record(self, outcome: SyncOutcome, *, started: float, changed_at: float | None) -> None:
        if self._metrics is None:
            return
        now = self._clock()
        self._metrics.sync_duration(now - started)
        self._metrics.sync_result("pushed" if outcome.pushed else "unchanged")
        self._metrics.enrolled_services(outcome.enrolled)
        if outcome.pushed and changed_at is not None:
            self._metrics.change_to_pool(now - changed_at)
