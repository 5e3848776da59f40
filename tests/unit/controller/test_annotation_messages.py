"""What a Service owner reads: the exact reason of every annotation problem (it becomes a
Kubernetes Event), and where each value's valid range begins and ends."""

from __future__ import annotations

import pytest

from controller.annotation_table import ANNOTATIONS
from controller.annotations import (
    MAX_DURATION_SECONDS,
    MAX_THRESHOLD,
    Defaults,
    parse_duration,
    parse_host,
    parse_path,
    parse_service,
    parse_strategy,
    parse_threshold,
)
from proxy.model import HashOn, HealthSpec, OutlierSpec
from proxy.settings import Settings
from tests.unit.controller.factories import service

DEFAULTS = Defaults(strategy="round-robin", health=HealthSpec())
STRATEGIES = "consistent-hash, least-request, random, round-robin, weighted-round-robin"
# Every row of the annotation table, by name.
KNOWN = ", ".join(sorted(doc.name for doc in ANNOTATIONS))
NOT_ENROLLED = "the Service is not enrolled until this is fixed"


@pytest.mark.parametrize(
    ("annotations", "reason", "blocking"),
    [
        ({"enabled": "yes"}, 'must be "true" or "false"; the Service is not enrolled', True),
        (
            {"strategy": "fastest"},
            f"unknown strategy; choose one of: {STRATEGIES}; using the default 'round-robin'",
            False,
        ),
        (
            {"hash-on": "client"},
            "has no effect with strategy 'round-robin' (only with 'consistent-hash')",
            False,
        ),
        ({"health-path": "healthz"}, "must start with '/'; using the default '/healthz'", False),
        (
            {"health-path": "/a#b"},
            "must not contain spaces, control characters or '#'; using the default '/healthz'",
            False,
        ),
        (
            {"health-path": "/" + "a" * 1024},
            "longer than 1024 characters; using the default '/healthz'",
            False,
        ),
        (
            {"health-interval": "5x"},
            "not a duration (like '5s', '500ms', '1m' or '2.5'); using the default 5.0s",
            False,
        ),
        (
            {"health-interval": "2h"},
            "must be above 0 and at most 3600s; using the default 5.0s",
            False,
        ),
        (
            {"health-timeout": "0"},
            "must be above 0 and at most 3600s; using the default 3.0s",
            False,
        ),
        ({"healthy-threshold": "0"}, "must be between 1 and 100; using the default 1", False),
        ({"unhealthy-threshold": "x"}, "not a whole number; using the default 1", False),
        ({"host": " "}, f"empty host; {NOT_ENROLLED}", True),
        (
            {"host": "shop.example.com:80"},
            "not a host name (exact 'shop.example.com' or wildcard '*.example.com'); "
            + NOT_ENROLLED,
            True,
        ),
        ({"path-prefix": "api"}, f"must start with '/'; {NOT_ENROLLED}", True),
        (
            {"port": "grpc"},
            "names no TCP port of the Service (ports: http:80); it is not enrolled",
            True,
        ),
        ({"helth-path": "/x"}, f"unknown annotation (known: {KNOWN}); ignored", False),
    ],
)
def test_problem_reasons(annotations: dict[str, str], reason: str, blocking: bool) -> None:
    parsed = parse_service(service(annotations=annotations), DEFAULTS, mode="ingress")
    (problem,) = parsed.problems
    (name, value), *_ = annotations.items()
    assert (problem.annotation, problem.value) == (f"kubeferry.io/{name}", value)
    assert problem.reason == reason
    assert problem.blocking is blocking
    assert (parsed.spec is None) is blocking


def test_an_unnamed_port_is_listed_as_unnamed() -> None:
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"port": 8000}]
    parsed = parse_service(
        service(ports=ports, annotations={"port": "53"}), DEFAULTS, mode="ingress"
    )
    (problem,) = parsed.problems
    assert (
        problem.reason
        == "names no TCP port of the Service (ports: (unnamed):8000); it is not enrolled"
    )


def test_a_service_without_tcp_ports_says_so() -> None:
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    parsed = parse_service(service(ports=ports), DEFAULTS, mode="ingress")
    assert parsed.spec is None
    (problem,) = parsed.problems
    assert (problem.annotation, problem.value, problem.blocking) == ("kubeferry.io/port", "", True)
    assert problem.reason == "the Service has no TCP port; it is not enrolled"


def test_several_problems_are_all_reported_in_annotation_order() -> None:
    annotations = {"zz-unknown": "1", "aa-unknown": "2", "strategy": "x", "health-timeout": "y"}
    parsed = parse_service(service(annotations=annotations), DEFAULTS, mode="ingress")
    assert [p.annotation for p in parsed.problems] == [
        "kubeferry.io/aa-unknown",
        "kubeferry.io/zz-unknown",
        "kubeferry.io/strategy",
        "kubeferry.io/health-timeout",
    ]
    assert parsed.spec is not None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (".5", 0.5),
        ("5.", 5.0),
        ("1.5ms", 0.0015),
        ("0.001", 0.001),
        ("3600", MAX_DURATION_SECONDS),
        ("60m", MAX_DURATION_SECONDS),
        ("5 ", 5.0),
    ],
)
def test_duration_range_and_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3600.5", "61m", "0", "0ms", "5 s", "s", "1d", "5ss", "x5"])
def test_durations_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "value"), [("1", 1), (" 7 ", 7), (str(MAX_THRESHOLD), 100)])
def test_threshold_range(text: str, value: int) -> None:
    assert parse_threshold(text) == value


@pytest.mark.parametrize("text", ["0", str(MAX_THRESHOLD + 1), "-1", "1.5", ""])
def test_thresholds_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_threshold(text)


LABEL_63 = "a" * 63


@pytest.mark.parametrize(
    ("text", "host"),
    [
        (" Shop.Example.COM ", "shop.example.com"),
        ("*.example.com", "*.example.com"),
        ("a", "a"),
        ("a-b.c", "a-b.c"),
        (f"{LABEL_63}.example.com", f"{LABEL_63}.example.com"),
        (".".join(["a" * 49] * 5) + ".abc", ".".join(["a" * 49] * 5) + ".abc"),  # 253
    ],
)
def test_host_names_accepted(text: str, host: str) -> None:
    assert parse_host(text) == host


@pytest.mark.parametrize(
    "text",
    [
        f"{LABEL_63}a.example.com",  # a 64-character label
        ".".join(["a" * 49] * 5) + ".abcd",  # 254 characters
        "a-.example.com",
        "shop..example.com",
        "shop.example.com.",
        "*example.com",
        "sh_op.example.com",
    ],
)
def test_host_names_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host(text)


def test_path_length_limit_is_inclusive() -> None:
    longest = "/" + "a" * 1023
    assert parse_path(f" {longest} ") == longest
    with pytest.raises(ValueError):
        parse_path(longest + "a")


@pytest.mark.parametrize("text", ["/a\tb", "/a\x00b", "/a b"])
def test_paths_with_whitespace_or_control_characters_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_path(text)


def test_strategy_names_are_case_and_space_insensitive() -> None:
    assert parse_strategy(" Least-Request ") == "least-request"


@pytest.mark.parametrize("value", ["TRUE", " false", "False "])
def test_enabled_is_case_insensitive(value: str) -> None:
    parsed = parse_service(
        service(annotations={"enabled": value}, enabled=False), DEFAULTS, mode="ingress"
    )
    assert (parsed.spec is not None) is (value.strip().lower() == "true")
    assert parsed.problems == ()


def test_defaults_follow_every_setting() -> None:
    settings = Settings(
        strategy="consistent-hash",
        hash_on="header:X-User",
        health={"path": "/ping", "interval_seconds": 2},
        outlier={"consecutive_5xx": 3, "ejection_seconds": 10},
    )
    assert Defaults.from_settings(settings) == Defaults(
        strategy="consistent-hash",
        hash_on=HashOn("header", "X-User"),
        health=HealthSpec(path="/ping", interval_seconds=2.0),
        outlier=OutlierSpec(consecutive_5xx=3, ejection_seconds=10.0),
    )


def test_the_default_hash_key_applies_and_is_named_when_an_annotation_is_bad() -> None:
    defaults = Defaults(strategy="consistent-hash", hash_on=HashOn("header", "X-User"))
    plain = parse_service(service(), defaults, mode="ingress").spec
    assert plain is not None and plain.hash_on == HashOn("header", "X-User")
    parsed = parse_service(service(annotations={"hash-on": "body"}), defaults, mode="ingress")
    assert parsed.spec is not None and parsed.spec.hash_on == HashOn("header", "X-User")
    (problem,) = parsed.problems
    assert problem.reason.endswith("; using the default 'header:X-User'")


def test_the_port_problem_lists_every_tcp_port_or_none() -> None:
    two = [{"name": "metrics", "port": 9090}, {"name": "http", "port": 80}]
    parsed = parse_service(service(ports=two, annotations={"port": "81"}), DEFAULTS, mode="ingress")
    (problem,) = parsed.problems
    assert "(ports: metrics:9090, http:80)" in problem.reason
    udp_only = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    parsed = parse_service(
        service(ports=udp_only, annotations={"port": "53"}), DEFAULTS, mode="ingress"
    )
    (problem,) = parsed.problems
    assert problem.reason == "names no TCP port of the Service (ports: none); it is not enrolled"
