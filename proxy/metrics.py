"""Prometheus metrics for the data plane, in a registry of their own.

The request path calls `observe_request` once per request. Its two families
(`kubeferry_requests_total`, `kubeferry_request_duration_seconds`) are plain dicts of ints
and bucket lists read at scrape time (`_RequestSeries`): prometheus_client's Counter.inc and
Histogram.observe take a lock and walk the buckets in Python, which made recording one
request cost about 2.6 us; the dicts cost about 0.6 us. The rarer families keep
prometheus_client's label children, looked up once per label set (`_Children`).
Endpoints that leave the pool are forgotten, so their series disappear from `/metrics`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
    (`__missing__`), so a hit is a plain dict lookup. `on_new` hears of every key created."""

    __slots__ = ("_family", "_on_new")

    def __init__(self, family: _Child, on_new: Callable[[LabelValues], None] | None = None) -> None:
        super().__init__()
        self._family: _Child = family
        self._on_new = on_new

    def __missing__(self, key: LabelValues) -> _Child:
        child: _Child = self._family.labels(*key)  # labels() turns the values into strings
        self[key] = child
        if self._on_new is not None:
            self._on_new(key)
        return child

    def forget(self, key: LabelValues) -> None:
        """Drop one label set: from this cache and from the family (so from /metrics)."""
        if self.pop(key, None) is not None:
            self._family.remove(*key)


class Metrics:
    """The proxy's metric families and the cheap ways to record into them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A registry per instance, not prometheus_client's global one: tests and embedded
        # proxies each get their own and never collide on family names.
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._request_series = _RequestSeries()
        self.registry.register(self._request_series)
        self._retries = Counter(
            "kubeferry_retries_total",
            "Failed attempts that could have been retried, by upstream and outcome: not_sent "
            "(retried; nothing had reached the backend, so no budget needed), resent (retried "
            "within the retry budget), budget_refused (the budget refused it; the client got "
            "the error).",
            ("upstream", "outcome"),
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "kubeferry_upstream_errors_total",
            "Failed attempts to reach a backend, by kind (connect, timeout, reset, ...).",
            ("upstream", "backend", "kind"),
            registry=self.registry,
        )
        self._backend_up = _BackendUp()
        self.registry.register(self._backend_up)
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
        # Label children by label tuple; only ever grown or pruned from the event loop. The
        # per-endpoint ones are also indexed by (upstream, backend) as they are created, so
        # forgetting an endpoint drops exactly its own series: finding them by scanning every
        # series (a collect() per family) took most of a second per removed endpoint with
        # 100,000 endpoints in the pool.
        self._by_backend: dict[tuple[str, str], list[tuple[_Children[Any], LabelValues]]] = {}
        self._retry_children = _Children(self._retries)
        self._error_children = self._per_backend(self._upstream_errors, upstream_at=0)
        self._probe_children = self._per_backend(self._health_checks, upstream_at=0)

    def _per_backend(self, family: _Child, *, upstream_at: int) -> _Children[_Child]:
        children: _Children[_Child]

        def index(key: LabelValues) -> None:
            endpoint = (str(key[upstream_at]), str(key[upstream_at + 1]))
            self._by_backend.setdefault(endpoint, []).append((children, key))

        children = _Children(family, index)
        return children

    def observe_request(
        self, *, route: str, upstream: str, backend: str, status: int, duration_seconds: float
    ) -> None:
        """Count one answered request and record its latency."""
        series = self._request_series
        counts = series.counts
        key = (route, upstream, backend, status)
        count = counts.get(key)
        if count is None:
            series.new_backend_key(key)
            count = 0
        counts[key] = count + 1
        latency = series.latency.get((route, upstream))
        if latency is None:
            latency = series.latency[route, upstream] = [0.0] + [0] * (len(REQUEST_BUCKETS) + 1)
        # [sum, one count per bucket (le), +Inf]: the bucket is the first bound >= the value.
        latency[0] += duration_seconds
        latency[1 + bisect_left(REQUEST_BUCKETS, duration_seconds)] += 1

    def retry(self, *, upstream: str, outcome: str) -> None:
        """Count a retry made (`not_sent`, `resent`) or refused (`budget_refused`)."""
        self._retry_children[upstream, outcome].inc()

    def upstream_error(self, *, upstream: str, backend: str, kind: str) -> None:
        self._error_children[upstream, backend, kind].inc()

    def backend_health(self, *, upstream: str, backend: str, healthy: bool) -> None:
        self._backend_up.values[upstream, backend] = 1 if healthy else 0

    def health_probe(
        self, *, upstream: str, backend: str, ok: bool, duration_seconds: float
    ) -> None:
        self._probe_children[upstream, backend, "ok" if ok else "fail"].inc()
        self._health_duration.labels(upstream).observe(duration_seconds)

    def forget_backend(self, *, upstream: str, backend: str) -> None:
        """Drop every series of an endpoint that left the pool (the upstream's own stay)."""
        for children, key in self._by_backend.pop((upstream, backend), ()):
            children.forget(key)
        self._request_series.forget_backend(upstream, backend)
        self._backend_up.values.pop((upstream, backend), None)


class _RequestSeries(Collector):
    """kubeferry_requests_total and kubeferry_request_duration_seconds as plain dicts, written
    by observe_request and read at scrape time, both on the event loop."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str, int], int] = {}
        # (route, upstream) -> [sum, count per REQUEST_BUCKETS bound, count above them all]
        self.latency: dict[tuple[str, str], list[float]] = {}
        self._by_backend: dict[tuple[str, str], list[tuple[str, str, str, int]]] = {}

    def new_backend_key(self, key: tuple[str, str, str, int]) -> None:
        self._by_backend.setdefault((key[1], key[2]), []).append(key)

    def forget_backend(self, upstream: str, backend: str) -> None:
        for key in self._by_backend.pop((upstream, backend), ()):
            self.counts.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "kubeferry_requests_total",
            "Requests answered, by route, upstream, backend and status.",
            labels=("route", "upstream", "backend", "status"),
        )
        for (route, upstream, backend, status), count in self.counts.items():
            requests.add_metric((route, upstream, backend, str(status)), count)
        yield requests
        duration = HistogramMetricFamily(
            "kubeferry_request_duration_seconds",
            "Time from request received to response sent, by route and upstream.",
            labels=("route", "upstream"),
        )
        bounds = [*map(floatToGoString, REQUEST_BUCKETS), "+Inf"]
        for labels, latency in self.latency.items():
            cumulative: list[tuple[str, float]] = []
            total = 0.0
            for bound, in_bucket in zip(bounds, latency[1:], strict=True):
                total += in_bucket
                cumulative.append((bound, total))
            duration.add_metric(labels, cumulative, latency[0])
        yield duration


class _BackendUp(Collector):
    """kubeferry_backend_up, read from a plain dict at scrape time. Every endpoint has this
    series from the moment it joins the pool: a Gauge child per endpoint made the first push
    of 100,000 endpoints spend most of its time in `labels()` (validation, a lock and four
    objects per child) and hold tens of MiB. Written and scraped on the event loop only."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kubeferry_backend_up",
            "1 while the backend is in rotation, 0 while it is out.",
            labels=("upstream", "backend"),
        )
        for labels, value in self.values.items():
            family.add_metric(labels, value)
        yield family
