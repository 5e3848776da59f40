"""Prometheus metrics of the control plane, registered in the data plane's registry so one
`/metrics` endpoint shows both."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ControllerMetrics:
    """Watch health (restarts, relists), sync cost and what is enrolled."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._watch_restarts = Counter(
            "kubeferry_controller_watch_restarts_total",
            "Watch requests restarted (server timeout, dropped connection or error), by kind.",
            ["kind"],
            registry=registry,
        )
        self._relists = Counter(
            "kubeferry_controller_relists_total",
            "Full lists of a kind (at start and after a 410 Gone or an error).",
            ["kind"],
            registry=registry,
        )
        self._sync_seconds = Histogram(
            "kubeferry_controller_sync_seconds",
            "Time to rebuild the desired state from the cache and push it.",
            buckets=_SYNC_BUCKETS,
            registry=registry,
        )
        self._syncs = Counter(
            "kubeferry_controller_syncs_total",
            "Syncs by result: pushed (something changed), unchanged, or error.",
            ["result"],
            registry=registry,
        )
        self._enrolled = Gauge(
            "kubeferry_controller_enrolled_services",
            "Services currently balanced (enrolled and with a valid route).",
            registry=registry,
        )
        self._change_to_pool = Histogram(
            "kubeferry_controller_change_to_pool_seconds",
            "From the cache noticing a change to the pool holding the new snapshot.",
            buckets=_SYNC_BUCKETS,
            registry=registry,
        )
        self._invalid = Counter(
            "kubeferry_controller_invalid_annotations_total",
            "Distinct invalid annotation values reported (each reported once).",
            registry=registry,
        )
        self._full_rebuilds = Counter(
            "kubeferry_controller_full_rebuilds_total",
            "Syncs that rebuilt the whole desired state instead of what changed, by reason: "
            "start, relist, resync (the periodic safety net) or error (after a failed sync).",
            ["reason"],
            registry=registry,
        )

    def watch_restart(self, *, kind: str) -> None:
        self._watch_restarts.labels(kind=kind).inc()

    def relist(self, *, kind: str) -> None:
        self._relists.labels(kind=kind).inc()

    def sync_duration(self, seconds: float) -> None:
        self._sync_seconds.observe(seconds)

    def sync_result(self, result: str) -> None:
        self._syncs.labels(result=result).inc()

    def enrolled_services(self, n: int) -> None:
        self._enrolled.set(n)

    def change_to_pool(self, seconds: float) -> None:
        self._change_to_pool.observe(seconds)

    def invalid_annotation(self) -> None:
        self._invalid.inc()

    def full_rebuild(self, reason: str) -> None:
        self._full_rebuilds.labels(reason=reason).inc()
