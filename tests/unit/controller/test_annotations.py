from pathlib import Path

import pytest

from controller.annotation_table import ANNOTATIONS, markdown_table
from controller.annotations import Defaults, parse_duration, parse_service
from proxy.model import HashOn, HealthSpec
from tests.unit.controller.factories import service

DEFAULTS = Defaults(strategy="round-robin", health=HealthSpec())
TWO_PORTS = (
    {"name": "metrics", "port": 9090},
    {"name": "http", "port": 80, "targetPort": 8080},
)


def test_not_opted_in_is_silently_ignored() -> None:
    parsed = parse_service(
        service(enabled=False, annotations={"port": "nope"}), DEFAULTS, mode="ingress"
    )
    assert parsed.spec is None
    assert parsed.problems == ()


@pytest.mark.parametrize("value", ["false", "False", " true "])
def test_enabled_values(value: str) -> None:
    parsed = parse_service(
        service(enabled=False, annotations={"enabled": value}), DEFAULTS, mode="ingress"
    )
    assert (parsed.spec is not None) == (value.strip() == "true")
    assert parsed.problems == ()


@pytest.mark.parametrize("value", ["yes", "1", "ture", ""])
def test_enabled_invalid_is_reported_and_not_enrolled(value: str) -> None:
    parsed = parse_service(
        service(enabled=False, annotations={"enabled": value}), DEFAULTS, mode="ingress"
    )
    assert parsed.spec is None
    (problem,) = parsed.problems
    assert problem.annotation == "kubeferry.io/enabled"
    assert problem.value == value
    assert problem.blocking


def test_sidecar_needs_no_enabled_and_ignores_route() -> None:
    svc = service(enabled=False, annotations={"host": "not a host!", "strategy": "random"})
    parsed = parse_service(svc, DEFAULTS, mode="sidecar")
    assert parsed.spec is not None
    assert parsed.spec.strategy == "random"
    assert parsed.spec.host is None
    assert parsed.problems == ()


def test_all_defaults() -> None:
    spec = parse_service(service(), DEFAULTS, mode="ingress").spec
    assert spec is not None
    assert (spec.port.name, spec.host, spec.path_prefix) == ("http", None, "/")
    assert (spec.strategy, spec.hash_on, spec.health) == ("round-robin", None, HealthSpec())


def test_defaults_come_from_settings_defaults() -> None:
    custom = Defaults(strategy="least-request", health=HealthSpec(path="/ping"))
    spec = parse_service(service(), custom, mode="ingress").spec
    assert spec is not None
    assert (spec.strategy, spec.health.path) == ("least-request", "/ping")


def test_every_annotation_valid() -> None:
    svc = service(
        ports=TWO_PORTS,
        annotations={
            "port": "metrics",
            "host": "Shop.Example.com",
            "path-prefix": "/api",
            "strategy": "consistent-hash",
            "hash-on": "header:X-User",
            "health-path": "/ready",
            "health-interval": "500ms",
            "health-timeout": "2s",
            "healthy-threshold": "2",
            "unhealthy-threshold": "3",
        },
    )
    parsed = parse_service(svc, DEFAULTS, mode="ingress")
    assert parsed.problems == ()
    spec = parsed.spec
    assert spec is not None
    assert spec.port.name == "metrics"
    assert (spec.host, spec.path_prefix) == ("shop.example.com", "/api")
    assert (spec.strategy, spec.hash_on) == ("consistent-hash", HashOn("header", "X-User"))
    assert spec.health == HealthSpec(
        path="/ready",
        interval_seconds=0.5,
        timeout_seconds=2.0,
        healthy_threshold=2,
        unhealthy_threshold=3,
    )


def test_wildcard_host() -> None:
    spec = parse_service(service(annotations={"host": "*.example.com"}), DEFAULTS, mode="ingress")
    assert spec.spec is not None and spec.spec.host == "*.example.com"


@pytest.mark.parametrize(
    ("name", "value", "field", "default"),
    [
        ("strategy", "fastest", "strategy", "round-robin"),
        ("hash-on", "body", "hash_on", None),
        ("health-path", "healthz", "path", "/healthz"),
        ("health-path", "/a b", "path", "/healthz"),
        ("health-interval", "5x", "interval_seconds", 5.0),
        ("health-interval", "0s", "interval_seconds", 5.0),
        ("health-interval", "-1", "interval_seconds", 5.0),
        ("health-interval", "2h", "interval_seconds", 5.0),
        ("health-timeout", "soon", "timeout_seconds", 3.0),
        ("healthy-threshold", "0", "healthy_threshold", 1),
        ("healthy-threshold", "two", "healthy_threshold", 1),
        ("unhealthy-threshold", "1000", "unhealthy_threshold", 1),
    ],
)
def test_invalid_value_falls_back_to_default_and_is_reported(
    name: str, value: str, field: str, default: object
) -> None:
    annotations = {name: value}
    if name == "hash-on":
        annotations["strategy"] = "consistent-hash"
    parsed = parse_service(service(annotations=annotations), DEFAULTS, mode="ingress")
    assert parsed.spec is not None, "a field with a default never blocks enrolment"
    holder = parsed.spec if field in ("strategy", "hash_on") else parsed.spec.health
    assert getattr(holder, field) == default
    (problem,) = parsed.problems
    assert problem.annotation == f"kubeferry.io/{name}"
    assert problem.value == value
    assert not problem.blocking
    assert "default" in problem.reason
    assert value in problem.message and name in problem.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("host", "shop.example.com:80"),
        ("host", "*"),
        ("host", "a.*.example.com"),
        ("host", ""),
        ("host", "-bad.example.com"),
        ("path-prefix", "api"),
        ("path-prefix", "/a b"),
        ("path-prefix", ""),
        ("port", "grpc"),
        ("port", "81"),
    ],
)
def test_invalid_route_or_port_blocks_enrolment(name: str, value: str) -> None:
    parsed = parse_service(service(annotations={name: value}), DEFAULTS, mode="ingress")
    assert parsed.spec is None
    (problem,) = parsed.problems
    assert (problem.annotation, problem.value, problem.blocking) == (
        f"kubeferry.io/{name}",
        value,
        True,
    )
    assert "not enrolled" in problem.reason


def test_problems_are_equal_for_equal_input() -> None:
    svc = service(annotations={"strategy": "x", "health-interval": "y"})
    first = parse_service(svc, DEFAULTS, mode="ingress").problems
    assert first == parse_service(svc, DEFAULTS, mode="ingress").problems
    assert len(first) == 2


def test_unknown_annotation_is_reported_not_blocking() -> None:
    parsed = parse_service(service(annotations={"helth-path": "/x"}), DEFAULTS, mode="ingress")
    assert parsed.spec is not None
    (problem,) = parsed.problems
    assert problem.annotation == "kubeferry.io/helth-path"
    assert "unknown" in problem.reason


def test_hash_on_without_consistent_hash_is_reported() -> None:
    parsed = parse_service(service(annotations={"hash-on": "client"}), DEFAULTS, mode="ingress")
    assert parsed.spec is not None and parsed.spec.hash_on == HashOn("client")
    (problem,) = parsed.problems
    assert "no effect" in problem.reason


@pytest.mark.parametrize(
    ("ports", "annotation", "expected"),
    [
        ([{"port": 80}], None, 80),  # the only port (unnamed)
        (TWO_PORTS, None, 80),  # the one named http
        ([{"name": "a", "port": 81}, {"name": "b", "port": 82}], None, 81),  # else the first
        (TWO_PORTS, "9090", 9090),  # by number
        (TWO_PORTS, "metrics", 9090),  # by name
        (
            [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "web", "port": 8000}],
            None,
            8000,
        ),  # UDP ports do not count
    ],
)
def test_port_selection(
    ports: list[dict[str, object]], annotation: str | None, expected: int
) -> None:
    annotations = {"port": annotation} if annotation else {}
    spec = parse_service(
        service(ports=ports, annotations=annotations), DEFAULTS, mode="ingress"
    ).spec
    assert spec is not None
    assert spec.port.port == expected


def test_service_without_ports_is_not_enrolled() -> None:
    parsed = parse_service(service(ports=()), DEFAULTS, mode="ingress")
    assert parsed.spec is None
    assert parsed.problems[0].event_reason == "NoServicePort"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), ("2.5", 2.5), (" 3S ", 3.0), ("1h", 3600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_docs_carry_the_generated_table() -> None:
    docs = Path(__file__).parents[3] / "docs" / "annotations.md"
    assert markdown_table() in docs.read_text()
    for doc in ANNOTATIONS:
        assert f"`kubeferry.io/{doc.name}`" in markdown_table()
