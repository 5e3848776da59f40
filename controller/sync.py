"""The sync: on a "changed" signal, bring the desired state up to date from the cache and push it.

Level-triggered, as traefik's providers are: watch events only wake us, and the sync reads the
objects themselves from the cache. What it reads is narrowed by the cache's note of what
changed (`take_changes`): only the Services touched are translated again and only the routes
they claim re-resolved (controller.desired). A full rebuild of everything runs at the start,
after every relist and every `resync_interval_seconds` as a safety net. The result is compared
with what was last pushed, and only upstreams whose snapshot differs are pushed, each whole,
to the data plane (`update`; `apply` with the whole set after a full rebuild); the route table
goes to the router (`replace`) only when it changed, and so do the certificates by host, as a
whole CertificateSet (with the listener's default certificate) to the CertificateStore, before
the routes, so a route that redirects to https finds its certificate there. The Secrets the
Services name go to the Secret watches (`want`). All plain defs.

The cache is never cleared on an API failure and a sync never pushes before the cache has
listed everything once, so the data plane keeps the last known endpoints while the API server
is away.

With `--gateway-api` the same step asks the Gateway side (controller.gateway_sync) for its
desired state: its upstreams are pushed with the annotated ones (names never clash), its
listener Secrets join the Secret watches, and its listeners, Services and statuses go to the
Gateway writer (`want`, I/O there).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from controller.annotations import Defaults, Problem
from controller.cache import Changes
from controller.collector import collector_paused
from controller.desired import Desired, DesiredState, Selection
from controller.events import EventRecorder
from controller.objects import ClusterView, ServiceInfo
from proxy.model import UpstreamSpec
from proxy.routing import RouteTable
from proxy.tls.certificate import Certificate
from proxy.tls.store import CertificateSet

if TYPE_CHECKING:  # only with --gateway-api is the Gateway side imported at all
    from controller.gateway_sync import GatewayDesired

logger = logging.getLogger("kubeferry.controller")

READY_CONDITION = "controller_synced"
# With HTTPS: ready only once every Secret the first sync's Services name has been listed, so
# a new replica does not answer HTTPS clients with the default certificate during a rollout.
SECRETS_CONDITION = "tls_secrets_listed"


# -- what the sync talks to -----------------------------------------------------------------


class UpstreamSink(Protocol):
    """The data plane: takes whole upstream snapshots."""

    def apply(self, upstreams: Mapping[str, UpstreamSpec]) -> bool:
        """The whole set: hold exactly these upstreams, remove the ones missing."""
        ...

    def update(self, changes: Mapping[str, UpstreamSpec | None]) -> bool:
        """Replace the named upstreams (None: remove it), leave the others alone."""
        ...


class RouteSink(Protocol):
    """The ingress router: takes a whole route table."""

    def replace(self, table: RouteTable) -> bool: ...


class CertificateSink(Protocol):
    """The HTTPS listeners' CertificateStore: takes a whole CertificateSet."""

    @property
    def current(self) -> CertificateSet: ...

    def replace(self, certificates: CertificateSet) -> bool: ...


class SecretInterest(Protocol):
    """The Secret watches: told which (namespace, name) Secrets the Services name."""

    def want(self, secrets: frozenset[tuple[str, str]]) -> None: ...


class GatewaySource(Protocol):
    """The Gateway API side (controller.gateway_sync.GatewaySync): its desired state, brought
    up to date with the Services, slices and Secrets that changed (None: everything may have);
    None while its streams have not listed."""

    def sync(self, changes: Changes | None = None) -> GatewayDesired | None: ...


class GatewaySink(Protocol):
    """Applies a Gateway desired state: listeners, Services, statuses (GatewayWriter)."""

    def want(self, desired: GatewayDesired) -> None: ...


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

    def take_changes(self) -> Changes:
        """What changed since the last call, then forget it."""
        ...


class SyncMetrics(Protocol):
    def sync_duration(self, seconds: float) -> None: ...

    def sync_result(self, result: str) -> None: ...

    def enrolled_services(self, n: int) -> None: ...

    def change_to_pool(self, seconds: float) -> None: ...

    def invalid_annotation(self) -> None: ...

    def full_rebuild(self, reason: str) -> None: ...


# -- the sync loop --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What one sync did (for tests, logs and metrics)."""

    pushed_upstreams: bool
    pushed_routes: bool
    enrolled: int
    reported: tuple[tuple[ServiceInfo, Problem], ...] = ()
    # Whether everything was rebuilt (else only what the changes touched), and how many
    # upstream snapshots differed from the ones pushed before.
    full: bool = True
    changed_upstreams: int = 0
    pushed_certificates: bool = False

    @property
    def pushed(self) -> bool:
        return self.pushed_upstreams or self.pushed_routes or self.pushed_certificates


class Sync:
    """Turns cache contents into data-plane snapshots.

    Mutable state, changed only in `sync()` (a plain def, no await inside):
      _pushed     the upstreams last applied (None: nothing pushed yet)
      _table      the route table last handed to the router
      _reported   problems already logged and reported, by Service uid; a problem is reported
                  again only after it went away, or changed, and came back
      _missing    sidecar upstreams last logged as not found
      _state      the desired state and its indexes, kept up to date between syncs
      _certs      the certificates by host last handed to the certificate store
      _secrets_listed  whether the Secrets named at startup have all been listed once
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
        certificates: CertificateSink | None = None,
        secrets: SecretInterest | None = None,
        readiness: ReadinessSink | None = None,
        events: EventRecorder | None = None,
        metrics: SyncMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        resync_interval_seconds: float = 0.0,
        gateway: GatewaySource | None = None,
        gateway_sink: GatewaySink | None = None,
    ) -> None:
        if selection.mode == "ingress" and router is None:
            raise ValueError("ingress mode needs a router for the routes")
        self._view = view
        self._selection = selection
        self._defaults = defaults
        self._dataplane = dataplane
        self._router = router
        self._certificate_sink = certificates
        self._secret_interest = secrets
        self._readiness = readiness
        self._events = events
        self._metrics = metrics
        self._clock = clock
        if resync_interval_seconds < 0:
            raise ValueError("resync_interval_seconds must be 0 (off) or positive")
        self._resync_interval_seconds = resync_interval_seconds
        self._gateway = gateway
        self._gateway_sink = gateway_sink
        self._pushed: Mapping[str, UpstreamSpec] | None = None
        self._table: RouteTable | None = None
        self._certs: Mapping[str, Certificate] | None = None
        self._reported: frozenset[tuple[str, Problem]] = frozenset()
        self._missing: tuple[tuple[str, str], ...] = ()
        self._state = DesiredState(view, selection, defaults)
        self.first_synced = asyncio.Event()
        self._secrets_listed = certificates is None
        if readiness is not None:
            readiness.set(READY_CONDITION, False)
            if not self._secrets_listed:
                readiness.set(SECRETS_CONDITION, False)

    def __repr__(self) -> str:
        pushed = "nothing pushed" if self._pushed is None else f"{len(self._pushed)} upstreams"
        return f"<Sync {self._selection.mode}: {pushed}, {len(self._reported)} problems>"

    async def run(self, source: SyncSource) -> None:
        """Sync after the cache's first full list, then on every change, forever; rebuild
        everything after a relist and every `resync_interval_seconds` (0: never), changes
        or not.

        A failing sync (a bug) is logged and the last pushed state stays; the next sync, on
        the next change, is a full rebuild, so the changes the failed one took are not lost."""
        await source.wait_synced()
        changed_at: float | None = None
        full: str | None = "start"  # why the next sync rebuilds everything; None: it need not
        resync_at = self._clock() + self._resync_interval_seconds
        while True:
            changes = source.take_changes()
            if full is None and changes.everything:
                full = "relist"
            if full is not None:
                resync_at = self._clock() + self._resync_interval_seconds
                if self._metrics is not None:
                    self._metrics.full_rebuild(full)
            try:
                self.sync(changed_at=changed_at, changes=None if full else changes)
                full = None
            except Exception:  # the top of a task: keep serving the last good state
                logger.exception("sync failed; keeping the last pushed state")
                if self._metrics is not None:
                    self._metrics.sync_result("error")
                full = "error"
            timeout = None
            if self._resync_interval_seconds:
                timeout = max(0.0, resync_at - self._clock())
            try:
                changed_at = await asyncio.wait_for(source.changed.wait(), timeout)
            except TimeoutError:
                changed_at, full = None, full or "resync"

    def sync(
        self, *, changed_at: float | None = None, changes: Changes | None = None
    ) -> SyncOutcome:
        """Bring the desired state up to date (only what `changes` touched; everything when
        None), push what differs, report new problems. Plain def: nothing can interleave, so
        requests never see new routes before their upstreams exist."""
        started = self._clock()
        full = changes is None or changes.everything or self._pushed is None
        # A full rebuild allocates objects by the hundred thousand and keeps them.
        with collector_paused() if full else contextlib.nullcontext():
            state = self._state
            desired = state.rebuild() if changes is None or full else state.update(changes)
            gateway = None
            if self._gateway is not None:
                gateway = self._gateway.sync(None if full else changes)
            upstreams = desired.upstreams
            if gateway is not None and gateway.upstreams:
                # Distinct names (`ns/name:port`), so one set for the data plane.
                upstreams = {**desired.upstreams, **gateway.upstreams}
            delta = _delta(self._pushed or {}, upstreams)
            pushed_upstreams = False
            if self._pushed is None or delta:
                if full:
                    self._dataplane.apply(upstreams)
                else:
                    self._dataplane.update(delta)
                self._pushed = upstreams
                pushed_upstreams = True
        pushed_certificates = False
        sink = self._certificate_sink
        if sink is not None and desired.certificates is not self._certs:
            # The default certificate is the listener's own (a file the reloader may swap).
            pushed_certificates = sink.replace(
                CertificateSet.build(sink.current.default, desired.certificates)
            )
            self._certs = desired.certificates
        pushed_routes = False
        if self._router is not None and desired.table is not self._table:
            pushed_routes = self._router.replace(desired.table)
            self._table = desired.table

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
        secrets_listed_now = not self._secrets_listed and all(
            self._view.secret_listed(*secret) for secret in desired.secrets
        )
        self._secrets_listed = self._secrets_listed or secrets_listed_now

        # Reporting, watch interest and readiness after the state change.
        if self._secret_interest is not None:
            wanted = desired.secrets
            if gateway is not None and gateway.secrets:
                wanted = wanted | gateway.secrets
            self._secret_interest.want(wanted)
        if gateway is not None and self._gateway_sink is not None:
            # Listeners, Services and statuses: after the upstreams their routes name.
            self._gateway_sink.want(gateway)
        if pushed_certificates:
            _log_certificates(desired.certificates)
        for service, problem in new:
            self._report(service, problem)
        for namespace, name in missing_now:
            logger.warning(
                "upstream Service not found; its port answers 503 until it exists",
                extra={"event": "service_missing", "namespace": namespace, "service": name},
            )
        if secrets_listed_now and self._readiness is not None:
            self._readiness.set(SECRETS_CONDITION, True)
        if first:
            # The first full cache (thousands of objects in a big cluster) lives until the next
            # relist: moved out of the collector's generations it is not traversed again, which
            # keeps full collections, and so the p99 change-to-pool delay, short.
            gc.freeze()
            if self._readiness is not None:
                self._readiness.set(READY_CONDITION, True)
        outcome = SyncOutcome(
            pushed_upstreams,
            pushed_routes,
            len(desired.upstreams),
            new,
            full,
            len(delta),
            pushed_certificates,
        )
        self._record(outcome, started=started, changed_at=changed_at)
        self._log(outcome, desired, first=first)
        return outcome

    def _log(self, outcome: SyncOutcome, desired: Desired, *, first: bool) -> None:
        if not (first or outcome.pushed):
            return
        logger.info(
            "synced",
            extra={
                "event": "sync",
                "upstreams": outcome.enrolled,
                "routes": len(desired.table.routes),
                "pushed_upstreams": outcome.pushed_upstreams,
                "pushed_routes": outcome.pushed_routes,
                "full": outcome.full,
                "changed_upstreams": outcome.changed_upstreams,
            },
        )

    def _report(self, service: ServiceInfo, problem: Problem) -> None:
        event = _PROBLEM_EVENTS.get(problem.event_reason, "problem")
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


_PROBLEM_EVENTS = {
    "InvalidAnnotation": "invalid_annotation",
    "InvalidTLSSecret": "invalid_tls_secret",
}


def _log_certificates(certificates: Mapping[str, Certificate]) -> None:
    # What is served now, by host: serials, sources and expiry dates, never key material.
    logger.info(
        "TLS certificates updated: %d hosts",
        len(certificates),
        extra={
            "event": "tls_certificates",
            "hosts": {host: certificate.describe() for host, certificate in certificates.items()},
        },
    )


def _delta(
    pushed: Mapping[str, UpstreamSpec], desired: Mapping[str, UpstreamSpec]
) -> dict[str, UpstreamSpec | None]:
    """The upstreams whose snapshot differs from the one pushed (None: gone). Compared with
    what was pushed, not taken from the desired state's own bookkeeping, so a push is always
    exactly the difference; unchanged snapshots are the same objects (one pointer check)."""
    delta: dict[str, UpstreamSpec | None] = {}
    added = 0
    for name, spec in desired.items():
        old = pushed.get(name)
        if old is None:
            added += 1
        if old is not spec and old != spec:
            delta[name] = spec
    if len(pushed) > len(desired) - added:  # some pushed name is no longer desired
        delta.update((name, None) for name in pushed if name not in desired)
    return delta
