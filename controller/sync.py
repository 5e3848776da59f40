"""The sync: on a "changed" signal, rebuild the whole desired state from the cache and push it.

Level-triggered, as traefik's providers are: watch events only wake us, and every sync reads
every enrolled Service and its slices from the cache, translates them (pure), resolves route
conflicts, and compares the result with what was last pushed. Only a different snapshot is
pushed, whole, to the data plane (`apply`) and the router (`replace`), both plain defs.

The cache is never cleared on an API failure and a sync never pushes before the cache has
listed everything once, so the data plane keeps the last known endpoints while the API server
is away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.annotations import Defaults, Mode, Parsed, Problem, parse_service
from controller.events import EventRecorder
from controller.objects import ClusterView, ServiceInfo, SliceInfo
from controller.routes import Claim, resolve
from controller.translate import SliceEntries, slice_endpoints, translate, upstream_name
from proxy.model import UpstreamSpec
from proxy.routing import Route, RouteTable

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

    @property
    def synced(self) -> bool: ...

    async def wait_synced(self) -> None: ...


class SyncMetrics(Protocol):
    def sync_duration(self, seconds: float) -> None: ...

    def sync_result(self, result: str) -> None: ...

    def enrolled_services(self, n: int) -> None: ...

    def change_to_pool(self, seconds: float) -> None: ...

    def invalid_annotation(self) -> None: ...


# -- desired state (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Which Services to enrol: in ingress mode, every cached Service that opts in with
    `kubeferry.io/enabled`; in sidecar mode exactly the named ones, with no routes."""

    mode: Mode = "ingress"
    services: frozenset[tuple[str, str]] = frozenset()

    def candidates(self, view: ClusterView) -> Iterable[ServiceInfo]:
        services = view.services()
        if self.mode == "ingress":
            return [services[key] for key in sorted(services)]
        return [services[key] for key in sorted(self.services) if key in services]


@dataclass(frozen=True, slots=True)
class Desired:
    """The whole state the data plane should have."""

    upstreams: Mapping[str, UpstreamSpec]
    table: RouteTable
    # Every problem currently true, with the Service it is about.
    problems: tuple[tuple[ServiceInfo, Problem], ...] = ()
    # Sidecar mode: named Services not (yet) in the cache.
    missing: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Translated:
    service: ServiceInfo
    slices: Sequence[SliceInfo]
    parsed: Parsed
    result: tuple[UpstreamSpec, Route] | None
    slice_keys: tuple[tuple[str, str, str], ...] = ()  # the slice memo entries it used


@dataclass(slots=True)
class Translations:
    """Memo of the last translation per Service and per slice, reused while the cache hands
    back the very same objects (it replaces, never mutates, what changed). A sync after one
    pod moved re-translates one slice, not ten thousand endpoints.

    Mutable state: `services` by Service key; `slices` by (namespace, slice name, port name);
    `_used_slices`, the slice keys read during the current build (the rest are dropped)."""

    services: dict[tuple[str, str], _Translated] = field(default_factory=dict)
    slices: dict[tuple[str, str, str], tuple[SliceInfo, SliceEntries]] = field(default_factory=dict)
    _used_slices: set[tuple[str, str, str]] = field(default_factory=set)

    def get(
        self, service: ServiceInfo, slices: Sequence[SliceInfo], defaults: Defaults, mode: Mode
    ) -> _Translated:
        entry = self.services.get(service.key)
        if entry is not None and entry.service is service and entry.slices is slices:
            self._used_slices.update(entry.slice_keys)  # still in use: keep their memo
            return entry
        parsed = parse_service(service, defaults, mode=mode)
        result = None
        used: list[tuple[str, str, str]] = []
        if parsed.spec is not None:

            def per_slice(slice_: SliceInfo, port_name: str) -> SliceEntries:
                key = (slice_.namespace, slice_.name, port_name)
                used.append(key)
                return self._slice(key, slice_, port_name)

            result = translate(service, slices, parsed.spec, per_slice=per_slice)
        self._used_slices.update(used)
        entry = _Translated(service, slices, parsed, result, tuple(used))
        self.services[service.key] = entry
        return entry

    def _slice(self, key: tuple[str, str, str], slice_: SliceInfo, port_name: str) -> SliceEntries:
        cached = self.slices.get(key)
        if cached is not None and cached[0] is slice_:
            return cached[1]
        entries = slice_endpoints(slice_, port_name)
        self.slices[key] = (slice_, entries)
        return entries

    def forget_except(self, keys: set[tuple[str, str]]) -> None:
        """End of a build: drop memo entries of Services and slices it did not use."""
        for key in [k for k in self.services if k not in keys]:
            del self.services[key]
        for slice_key in [k for k in self.slices if k not in self._used_slices]:
            del self.slices[slice_key]
        self._used_slices = set()


def build_desired(
    view: ClusterView,
    selection: Selection,
    defaults: Defaults,
    *,
    memo: Translations | None = None,
) -> Desired:
    """Everything the data plane should hold, from the cache alone. Pure but for `memo`."""
    memo = memo if memo is not None else Translations()
    problems: list[tuple[ServiceInfo, Problem]] = []
    claims: list[Claim] = []
    upstreams: dict[str, UpstreamSpec] = {}
    seen: set[tuple[str, str]] = set()
    for service in selection.candidates(view):
        seen.add(service.key)
        slices = view.slices_for(service.namespace, service.name)
        entry = memo.get(service, slices, defaults, selection.mode)
        problems.extend((service, p) for p in entry.parsed.problems)
        if entry.result is None:
            continue
        upstream, route = entry.result
        upstreams[upstream.name] = upstream
        claims.append(Claim(service, route))
    memo.forget_except(seen)

    if selection.mode == "sidecar":
        missing = tuple(sorted(selection.services - seen))
        return Desired(upstreams, RouteTable(), tuple(problems), missing)

    resolution = resolve(claims)
    for loser, problem in resolution.losers:
        upstreams.pop(upstream_name(loser), None)
        problems.append((loser, problem))
    table = RouteTable.build([claim.route for claim in resolution.winners])
    return Desired(upstreams, table, tuple(problems))


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
      synced      True after the first sync of a fully listed cache
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
        self.synced = False
        # Set with `synced`, for whoever wants to await the first full sync (tests, startup).
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
        first = not self.synced
        self.synced = True

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
            self.first_synced.set()
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
