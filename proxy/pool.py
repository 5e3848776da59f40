"""The pool: for each upstream, the current endpoint snapshot plus the runtime state requests need.

Mutable state, all touched only from the event loop and never across an `await`:
  _upstreams[name]      an _Upstream; its `spec` is replaced whole by `replace()`
  _Upstream.healthy     keys of endpoints that are in rotation (health state)
  _Upstream.active_down keys the active checker last judged down (an ejection ending must not
                        put those back)
  _Upstream.candidates  tuple rebuilt on every change, then swapped: `pick()` only reads it
  _inflight[key]        requests in progress per endpoint (shared across upstreams)

Every method here is a plain `def`: callers do the I/O (probing, logging) after the change.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from proxy.model import Endpoint, UpstreamSpec
from proxy.strategies import Strategy, StrategyDeps, create_strategy


@dataclass(frozen=True, slots=True)
class PoolChange:
    """Which endpoints an update added to and removed from one upstream (for the health checker)."""

    upstream: str
    added: tuple[Endpoint, ...] = ()
    removed: tuple[Endpoint, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


@dataclass(frozen=True, slots=True)
class HealthTransition:
    """An endpoint entered or left the rotation of one upstream, and why."""

    upstream: str
    endpoint: Endpoint
    healthy: bool
    reason: str
    source: str  # "active", "passive" or "outlier"


TransitionListener = Callable[[HealthTransition], None]


class _Upstream:
    __slots__ = (
        "active_down",
        "by_key",
        "candidates",
        "ejected_until",
        "failures_5xx",
        "healthy",
        "spec",
        "strategy",
    )

    def __init__(self, spec: UpstreamSpec, strategy: Strategy) -> None:
        self.spec = spec
        self.strategy = strategy
        # The health checker reports every probe, so membership checks must be O(1).
        self.by_key: dict[str, Endpoint] = {e.key: e for e in spec.endpoints}
        self.active_down: set[str] = set()
        # New endpoints start in rotation: Kubernetes readiness (or the operator) already vouched
        # for them, and passive failover catches the ones that are not there yet.
        self.healthy: set[str] = {e.key for e in spec.endpoints}
        self.ejected_until: dict[str, float] = {}
        self.failures_5xx: dict[str, int] = {}
        self.candidates: tuple[Endpoint, ...] = ()
        self.rebuild()

    def rebuild(self) -> None:
        up = [e for e in self.spec.endpoints if e.key in self.healthy]
        ready = tuple(e for e in up if e.ready)
        # Serving-but-not-ready endpoints (terminating pods) only take traffic when no ready
        # endpoint can: better a draining pod than a failed request.
        self.candidates = ready or tuple(up)


class Pool:
    """Upstreams by name. Implements the health checker's status sink and the strategies'
    in-flight view."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionListener | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._upstreams: dict[str, _Upstream] = {}
        self._inflight: dict[str, int] = {}
        self.on_transition = on_transition

    def __repr__(self) -> str:
        endpoints = sum(len(u.spec.endpoints) for u in self._upstreams.values())
        healthy = sum(len(u.healthy) for u in self._upstreams.values())
        return f"<Pool {len(self._upstreams)} upstreams, {endpoints} endpoints, {healthy} healthy>"

    # -- snapshots in ------------------------------------------------------------------------

    def replace(self, spec: UpstreamSpec) -> PoolChange:
        """Install `spec` as the whole truth for its upstream; return what was added and removed.

        Endpoints that stay keep their health state; a changed strategy starts afresh.
        Requests already sent to a removed endpoint keep their own reference and finish.
        """
        current = self._upstreams.get(spec.name)
        if current is None:
            self._upstreams[spec.name] = _Upstream(spec, self._new_strategy(spec))
            return PoolChange(spec.name, added=spec.endpoints)
        if current.spec == spec:
            return PoolChange(spec.name)
        by_key = {e.key: e for e in spec.endpoints}
        added = tuple(e for e in spec.endpoints if e.key not in current.by_key)
        removed = tuple(e for e in current.spec.endpoints if e.key not in by_key)
        if (current.spec.strategy, current.spec.hash_on) != (spec.strategy, spec.hash_on):
            current.strategy = self._new_strategy(spec)
        health_turned_off = current.spec.health.enabled and not spec.health.enabled
        current.spec = spec
        current.by_key = by_key
        current.healthy = (current.healthy & by_key.keys()) | {e.key for e in added}
        current.active_down &= by_key.keys()
        current.ejected_until = {k: t for k, t in current.ejected_until.items() if k in by_key}
        current.failures_5xx = {k: n for k, n in current.failures_5xx.items() if k in by_key}
        current.rebuild()
        if health_turned_off:
            # Nothing will probe these any more: an endpoint held out by a failed probe or a
            # passive failure (no ejection time) would stay out forever. Ejections run on.
            current.active_down.clear()
            for endpoint in spec.endpoints:
                if endpoint.key not in current.ejected_until:
                    self._set(current, endpoint, True, "health checks disabled", "active")
        return PoolChange(spec.name, added=added, removed=removed)

    def remove(self, name: str) -> PoolChange:
        """Drop an upstream entirely; return its endpoints as removed."""
        current = self._upstreams.pop(name, None)
        if current is None:
            return PoolChange(name)
        return PoolChange(name, removed=current.spec.endpoints)

    def _new_strategy(self, spec: UpstreamSpec) -> Strategy:
        return create_strategy(spec.strategy, StrategyDeps(rng=self._rng, inflight=self))

    # -- reads -------------------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        return tuple(self._upstreams)

    def spec(self, name: str) -> UpstreamSpec | None:
        current = self._upstreams.get(name)
        return current.spec if current else None

    def specs(self) -> dict[str, UpstreamSpec]:
        return {name: u.spec for name, u in self._upstreams.items()}

    def is_healthy(self, name: str, endpoint: Endpoint) -> bool:
        current = self._upstreams.get(name)
        return current is not None and endpoint.key in current.healthy

    def has_candidates(self, name: str) -> bool:
        current = self._upstreams.get(name)
        return current is not None and bool(self._live_candidates(current))

    def pick(
        self, name: str, *, hash_key: str | None = None, exclude: Container[str] = ()
    ) -> Endpoint | None:
        """Choose an endpoint of upstream `name` for one attempt, or None if none is healthy.

        `exclude` holds keys already tried by this request, so a retry goes elsewhere.
        """
        current = self._upstreams.get(name)
        if current is None:
            return None
        candidates = self._live_candidates(current)
        if exclude:
            candidates = tuple(e for e in candidates if e.key not in exclude)
        if not candidates:
            return None
        return current.strategy.choose(candidates, hash_key)

    def _live_candidates(self, current: _Upstream) -> tuple[Endpoint, ...]:
        if current.ejected_until:
            self._expire_ejections(current)
        return current.candidates

    def _expire_ejections(self, current: _Upstream) -> None:
        now = self._clock()
        for key, until in list(current.ejected_until.items()):
            if until <= now:
                del current.ejected_until[key]
                endpoint = current.by_key.get(key)
                # An endpoint the active checker holds down stays down until a probe passes.
                if endpoint is not None and key not in current.active_down:
                    self._set(current, endpoint, True, "ejection time over", "outlier")

    def inflight(self, endpoint: Endpoint) -> int:
        return self._inflight.get(endpoint.key, 0)

    def describe(self) -> list[dict[str, Any]]:
        """The pool as plain data, for the admin `/backends` endpoint."""
        return [
            {
                "upstream": name,
                "strategy": u.spec.strategy,
                "endpoints": [
                    {
                        "address": e.key,
                        "weight": e.weight,
                        "ready": e.ready,
                        "healthy": e.key in u.healthy,
                        "inflight": self._inflight.get(e.key, 0),
                    }
                    for e in u.spec.endpoints
                ],
            }
            for name, u in sorted(self._upstreams.items())
        ]

    # -- runtime state -----------------------------------------------------------------------

    def acquire(self, endpoint: Endpoint) -> None:
        self._inflight[endpoint.key] = self._inflight.get(endpoint.key, 0) + 1

    def release(self, endpoint: Endpoint) -> None:
        left = self._inflight.get(endpoint.key, 0) - 1
        if left > 0:
            self._inflight[endpoint.key] = left
        else:
            self._inflight.pop(endpoint.key, None)

    def report(self, upstream: str, endpoint: Endpoint, *, healthy: bool, reason: str) -> None:
        """Active health verdict, thresholds already applied. The checker repeats its verdict
        after every probe, so this must be (and is) a no-op when nothing changes; that
        repetition is what brings back an endpoint a passive failure took out."""
        current = self._upstreams.get(upstream)
        if current is None or endpoint.key not in current.by_key:
            return  # a probe that finished after its endpoint left: nothing to change
        if healthy:
            current.active_down.discard(endpoint.key)
        else:
            current.active_down.add(endpoint.key)
        if healthy and endpoint.key in current.ejected_until:
            return  # an outlier stays out for its ejection time even if /healthz passes
        self._set(current, endpoint, healthy, reason, "active")

    def report_failure(self, upstream: str, endpoint: Endpoint, reason: str) -> None:
        """Passive: a request could not reach the endpoint. It leaves the rotation at once and
        comes back on the next passing active check (or after the ejection time when active
        checks are off)."""
        current = self._upstreams.get(upstream)
        if current is None or endpoint.key not in current.healthy:
            return
        if not current.spec.health.enabled:
            until = self._clock() + current.spec.outlier.ejection_seconds
            current.ejected_until[endpoint.key] = until
        self._set(current, endpoint, False, reason, "passive")

    def report_status(self, upstream: str, endpoint: Endpoint, status: int) -> None:
        """Outlier detection: count consecutive 5xx answers; eject at the configured count."""
        current = self._upstreams.get(upstream)
        if current is None or endpoint.key not in current.by_key:
            return  # an answer that arrived after its endpoint left
        limit = current.spec.outlier.consecutive_5xx
        if limit <= 0:
            return
        if status < 500:
            current.failures_5xx.pop(endpoint.key, None)
            return
        count = current.failures_5xx.get(endpoint.key, 0) + 1
        current.failures_5xx[endpoint.key] = count
        if count >= limit and endpoint.key in current.healthy:
            current.failures_5xx.pop(endpoint.key, None)
            current.ejected_until[endpoint.key] = (
                self._clock() + current.spec.outlier.ejection_seconds
            )
            self._set(current, endpoint, False, f"{count} consecutive 5xx responses", "outlier")

    def _set(
        self, current: _Upstream, endpoint: Endpoint, healthy: bool, reason: str, source: str
    ) -> None:
        if (endpoint.key in current.healthy) == healthy:
            return
        if healthy:
            current.healthy.add(endpoint.key)
        else:
            current.healthy.discard(endpoint.key)
        current.rebuild()
        if self.on_transition is not None:
            self.on_transition(
                HealthTransition(current.spec.name, endpoint, healthy, reason, source)
            )
