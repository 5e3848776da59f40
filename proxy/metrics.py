"""Prometheus metrics for the data plane, in a registry of their own.

The request path calls `observe_request` once per request, so label children are looked up
once per label set and kept in dicts keyed by the label tuple (`_Children`): after the first
request of a kind, recording costs two dict lookups and two increments, not a `labels()` call
each.
Endpoints that leave the pool are forgotten, so their series disappear from `/metrics`.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Proxy overhead plus a fast backend sits well under a millisecond; slow backends run to seconds.
REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
PROBE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_Child = TypeVar("_Child", Counter, Histogram)
LabelValues = tuple[str | int, ...]


class _Children(dict[LabelValues, _Child]):
    """Label children of one family by label tuple; `labels()` runs only on a key's first use
    (`__missing__`), so a hit is a plain dict lookup."""

    __slots__ = ("_family",)

    def __init__(self, family: _Child) -> None:
        super().__init__()
        self._family: _Child = family

    def __missing__(self, key: LabelValues) -> _Child:
        child: _Child = self._family.labels(*key)  # labels() turns the values into strings
        self[key] = child
        return child


class Metrics:
    """The proxy's metric families and the cheap ways to record into them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A registry per instance, not prometheus_client's global one: tests and embedded
        # proxies each get their own and never collide on family names.
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "kubeferry_requests_total",
            "Requests answered, by route, upstream, backend and status.",
            ("route", "upstream", "backend", "status"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "kubeferry_request_duration_seconds",
            "Time from request received to response sent, by route and upstream.",
            ("route", "upstream"),
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._retries = Counter(
            "kubeferry_retries_total",
            "Extra attempts made after a failed attempt, by upstream.",
            ("upstream",),
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "kubeferry_upstream_errors_total",
            "Failed attempts to reach a backend, by kind (connect, timeout, reset, ...).",
            ("upstream", "backend", "kind"),
            registry=self.registry,
        )
        self._backend_up = Gauge(
            "kubeferry_backend_up",
            "1 while the backend is in rotation, 0 while it is out.",
            ("upstream", "backend"),
            registry=self.registry,
        )
        self._health_checks = Counter(
            "kubeferry_health_checks_total",
            "Active health probes, by result (ok or fail).",
            ("upstream", "backend", "result"),
            registry=self.registry,
        )
        self._health_duration = Histogram(
            "kubeferry_health_check_duration_seconds",
            "Duration of active health probes, by upstream.",
            ("upstream",),
            buckets=PROBE_BUCKETS,
            registry=self.registry,
        )
        # Label children by label tuple; only ever grown or pruned from the event loop.
        self._request_children = _Children(self._requests)
        self._duration_children = _Children(self._duration)
        self._retry_children = _Children(self._retries)

    def observe_request(
        self, *, route: str, upstream: str, backend: str, status: int, duration_seconds: float
    ) -> None:
        """Count one answered request and record its latency."""
        self._request_children[route, upstream, backend, status].inc()
        self._duration_children[route, upstream].observe(duration_seconds)

    def retry(self, *, upstream: str) -> None:
        self._retry_children[(upstream,)].inc()

    def upstream_error(self, *, upstream: str, backend: str, kind: str) -> None:
        # Rare by nature (each one is a failed attempt): no child cache needed.
        self._upstream_errors.labels(upstream, backend, kind).inc()

    def backend_health(self, *, upstream: str, backend: str, healthy: bool) -> None:
        self._backend_up.labels(upstream, backend).set(1 if healthy else 0)

    def health_probe(
        self, *, upstream: str, backend: str, ok: bool, duration_seconds: float
    ) -> None:
        self._health_checks.labels(upstream, backend, "ok" if ok else "fail").inc()
        self._health_duration.labels(upstream).observe(duration_seconds)

    def forget_backend(self, *, upstream: str, backend: str) -> None:
        """Drop every series of an endpoint that left the pool (the upstream's own stay)."""
        for key in [k for k in self._request_children if k[1] == upstream and k[2] == backend]:
            del self._request_children[key]
        _remove_matching(
            self._requests, ("route", "upstream", "backend", "status"), upstream, backend
        )
        _remove_matching(self._backend_up, ("upstream", "backend"), upstream, backend)
        _remove_matching(self._upstream_errors, ("upstream", "backend", "kind"), upstream, backend)
        _remove_matching(self._health_checks, ("upstream", "backend", "result"), upstream, backend)


def _remove_matching(
    family: Counter | Gauge, names: tuple[str, ...], upstream: str, backend: str
) -> None:
    # Collecting is prometheus_client's public way to enumerate a family's label sets; this
    # runs when endpoints leave the pool, never per request.
    doomed: set[tuple[str, ...]] = set()
    for metric in family.collect():
        for sample in metric.samples:
            if (
                sample.labels.get("upstream") == upstream
                and sample.labels.get("backend") == backend
            ):
                doomed.add(tuple(sample.labels[name] for name in names))
    for labels in doomed:
        family.remove(*labels)
