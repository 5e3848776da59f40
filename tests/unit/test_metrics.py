"""Metric families, their labels, and forgetting the series of departed endpoints."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from proxy.metrics import Metrics


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.retry(upstream="web", outcome="resent")

    assert first.registry is not second.registry
    assert value(first, "kubeferry_retries_total", upstream="web", outcome="resent") == 1
    assert value(second, "kubeferry_retries_total", upstream="web", outcome="resent") is None


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.retry(upstream="web", outcome="resent")

    assert metrics.registry is registry
    labels = {"upstream": "web", "outcome": "resent"}
    assert registry.get_sample_value("kubeferry_retries_total", labels) == 1


def test_requests_are_counted_by_route_upstream_backend_and_status() -> None:
    metrics = Metrics()
    for status, seconds in ((200, 0.002), (200, 0.004), (502, 0.5)):
        metrics.observe_request(
            route="api",
            upstream="web",
            backend="10.0.0.1:80",
            status=status,
            duration_seconds=seconds,
        )

    ok = {"route": "api", "upstream": "web", "backend": "10.0.0.1:80"}
    assert value(metrics, "kubeferry_requests_total", **ok, status="200") == 2
    assert value(metrics, "kubeferry_requests_total", **ok, status="502") == 1
    latency = {"route": "api", "upstream": "web"}
    assert value(metrics, "kubeferry_request_duration_seconds_count", **latency) == 3
    assert value(metrics, "kubeferry_request_duration_seconds_sum", **latency) == 0.506
    assert value(metrics, "kubeferry_request_duration_seconds_bucket", **latency, le="0.005") == 2


def test_retries_errors_and_health() -> None:
    metrics = Metrics()
    metrics.retry(upstream="web", outcome="not_sent")
    metrics.retry(upstream="web", outcome="not_sent")
    metrics.retry(upstream="web", outcome="budget_refused")
    metrics.upstream_error(upstream="web", backend="10.0.0.1:80", kind="connect")
    metrics.backend_health(upstream="web", backend="10.0.0.1:80", healthy=True)
    metrics.backend_health(upstream="web", backend="10.0.0.2:80", healthy=True)
    metrics.backend_health(upstream="web", backend="10.0.0.2:80", healthy=False)
    metrics.health_probe(upstream="web", backend="10.0.0.1:80", ok=True, duration_seconds=0.01)
    metrics.health_probe(upstream="web", backend="10.0.0.2:80", ok=False, duration_seconds=3.0)

    retries = "kubeferry_retries_total"
    assert value(metrics, retries, upstream="web", outcome="not_sent") == 2
    assert value(metrics, retries, upstream="web", outcome="budget_refused") == 1
    assert (
        value(
            metrics,
            "kubeferry_upstream_errors_total",
            upstream="web",
            backend="10.0.0.1:80",
            kind="connect",
        )
        == 1
    )
    assert value(metrics, "kubeferry_backend_up", upstream="web", backend="10.0.0.1:80") == 1
    assert value(metrics, "kubeferry_backend_up", upstream="web", backend="10.0.0.2:80") == 0
    probes = "kubeferry_health_checks_total"
    assert value(metrics, probes, upstream="web", backend="10.0.0.1:80", result="ok") == 1
    assert value(metrics, probes, upstream="web", backend="10.0.0.2:80", result="fail") == 1
    assert value(metrics, "kubeferry_health_check_duration_seconds_count", upstream="web") == 2


def test_forget_backend_drops_only_that_backends_series() -> None:
    metrics = Metrics()
    for backend in ("10.0.0.1:80", "10.0.0.2:80"):
        metrics.observe_request(
            route="api", upstream="web", backend=backend, status=200, duration_seconds=0.01
        )
        metrics.upstream_error(upstream="web", backend=backend, kind="timeout")
        metrics.backend_health(upstream="web", backend=backend, healthy=True)
        metrics.health_probe(upstream="web", backend=backend, ok=True, duration_seconds=0.01)
    # Same address in another upstream: a different series, kept.
    metrics.backend_health(upstream="other", backend="10.0.0.1:80", healthy=True)

    metrics.forget_backend(upstream="web", backend="10.0.0.1:80")

    for backend, expected in (("10.0.0.1:80", None), ("10.0.0.2:80", 1.0)):
        web = {"upstream": "web", "backend": backend}
        assert value(metrics, "kubeferry_requests_total", route="api", **web, status="200") == (
            expected
        )
        assert value(metrics, "kubeferry_upstream_errors_total", **web, kind="timeout") == expected
        assert value(metrics, "kubeferry_backend_up", **web) == expected
        assert value(metrics, "kubeferry_health_checks_total", **web, result="ok") == expected
    assert '10.0.0.1:80",kind' not in generate_latest(metrics.registry).decode()
    assert value(metrics, "kubeferry_backend_up", upstream="other", backend="10.0.0.1:80") == 1
    # Latency is per route and upstream, not per backend: it stays.
    latency = {"route": "api", "upstream": "web"}
    assert value(metrics, "kubeferry_request_duration_seconds_count", **latency) == 2

    # A request to the forgotten backend later starts its series afresh.
    metrics.observe_request(
        route="api", upstream="web", backend="10.0.0.1:80", status=200, duration_seconds=0.01
    )
    assert (
        value(
            metrics,
            "kubeferry_requests_total",
            route="api",
            upstream="web",
            backend="10.0.0.1:80",
            status="200",
        )
        == 1
    )


def test_forgetting_an_unknown_backend_is_harmless() -> None:
    Metrics().forget_backend(upstream="nope", backend="10.9.9.9:80")


def test_latency_buckets_are_inclusive_upper_bounds_and_inf_holds_everything() -> None:
    metrics = Metrics()
    for seconds in (0.005, 0.0050001, 60.0):  # on a bound, just past it, past every bound
        metrics.observe_request(
            route="api", upstream="web", backend="10.0.0.1:80", status=200, duration_seconds=seconds
        )
    latency = {"route": "api", "upstream": "web"}
    bucket = "kubeferry_request_duration_seconds_bucket"
    assert value(metrics, bucket, **latency, le="0.0025") == 0
    assert value(metrics, bucket, **latency, le="0.005") == 1
    assert value(metrics, bucket, **latency, le="0.01") == 2
    assert value(metrics, bucket, **latency, le="30.0") == 2
    assert value(metrics, bucket, **latency, le="+Inf") == 3
    assert value(metrics, "kubeferry_request_duration_seconds_count", **latency) == 3
