"""Listener hostname x route hostnames (Gateway API spec, HTTPRouteSpec.hostnames), alone and
through the whole model: the scenario of the conformance test HTTPRouteHostnameIntersection."""

from __future__ import annotations

import pytest

from controller.gateway import hostnames
from controller.gateway.state import build
from tests.unit.controller.gateway.builders import (
    INFRA,
    backend,
    gateway,
    inputs,
    listener,
    parent,
    route,
    rule,
    svc,
)
from tests.unit.controller.gateway.routing import condition, served_by


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("foo.example.com", "foo.example.com", True),
        ("foo.example.com", "bar.example.com", False),
        ("*.example.com", "foo.example.com", True),
        ("*.example.com", "a.b.example.com", True),  # one or more labels
        ("*.example.com", "example.com", False),  # never the suffix itself
        ("*.example.com", "fooexample.com", False),
        ("*.example.com", "*.example.com", True),
        ("*.example.com", "*.foo.example.com", True),
        ("*.foo.example.com", "*.example.com", False),
        ("foo.example.com", "*.example.com", False),
    ],
)
def test_covers(pattern: str, host: str, expected: bool) -> None:
    assert hostnames.covers(pattern, host) is expected


@pytest.mark.parametrize(
    ("listener_host", "route_hosts", "expected"),
    [
        (None, (), ()),  # both any: every host
        (None, ("a.com", "*.b.com"), ("a.com", "*.b.com")),
        ("a.com", (), ("a.com",)),
        ("*.a.com", (), ("*.a.com",)),
        ("very.specific.com", ("non.matching.com", "very.specific.com"), ("very.specific.com",)),
        (
            "*.wildcard.io",
            ("wildcard.io", "foo.wildcard.io", "foo.bar.wildcard.io"),
            ("foo.wildcard.io", "foo.bar.wildcard.io"),
        ),
        ("very.specific.com", ("*.specific.com",), ("very.specific.com",)),
        ("*.example.com", ("*.foo.example.com",), ("*.foo.example.com",)),
        ("*.foo.example.com", ("*.example.com",), ("*.foo.example.com",)),
        ("*.example.com", ("*.example.com",), ("*.example.com",)),
        ("a.com", ("b.com", "*.b.com"), None),
        ("*.wildcard.io", ("wildcard.io",), None),
        # Two route hostnames narrowing to the listener's appear once.
        ("x.a.com", ("*.a.com", "x.a.com"), ("x.a.com",)),
    ],
)
def test_intersect(
    listener_host: str | None, route_hosts: tuple[str, ...], expected: tuple[str, ...] | None
) -> None:
    assert hostnames.intersect(listener_host, route_hosts) == expected


def test_the_conformance_hostname_intersection_scenario() -> None:
    gw = gateway(
        listeners=[
            listener("listener-1", hostname="very.specific.com"),
            listener("listener-2", hostname="*.wildcard.io"),
            listener("listener-3", hostname="*.anotherwildcard.io"),
        ]
    )
    routes = [
        route(
            "s1",
            hostnames=["non.matching.com", "*.nonmatchingwildcard.io", "very.specific.com"],
            rules=[rule(path="/s1", backends=[backend("v1")])],
        ),
        route(
            "s2",
            hostnames=[
                "non.matching.com",
                "wildcard.io",
                "foo.wildcard.io",
                "bar.wildcard.io",
                "foo.bar.wildcard.io",
            ],
            rules=[rule(path="/s2", backends=[backend("v2")])],
        ),
        route(
            "s3",
            hostnames=["non.matching.com", "*.specific.com"],
            rules=[rule(path="/s3", backends=[backend("v3")])],
        ),
        route(
            "s4",
            hostnames=["*.anotherwildcard.io"],
            rules=[rule(path="/s4", backends=[backend("v1")])],
        ),
        route(
            "s5",
            hostnames=["specific.but.wrong.com", "wildcard.io"],
            rules=[rule(path="/s5", backends=[backend("v2")])],
        ),
    ]
    state = build(inputs(gateways=[gw], routes=routes, services=[svc("v1"), svc("v2"), svc("v3")]))
    v1, v2, v3 = (f"{INFRA}/{n}:8080" for n in ("v1", "v2", "v3"))
    expected = [
        ("very.specific.com", "/s1", v1),
        ("very.specific.com:1234", "/s1", v1),
        ("non.matching.com", "/s1", None),
        ("foo.nonmatchingwildcard.io", "/s1", None),
        ("foo.wildcard.io", "/s1", None),
        ("very.specific.com", "/non-matching-prefix", None),
        ("foo.wildcard.io", "/s2", v2),
        ("bar.wildcard.io", "/s2", v2),
        ("foo.bar.wildcard.io", "/s2", v2),
        ("non.matching.com", "/s2", None),
        ("wildcard.io", "/s2", None),
        ("very.specific.com", "/s2", None),
        ("very.specific.com", "/s3", v3),
        ("non.matching.com", "/s3", None),
        ("foo.specific.com", "/s3", None),
        ("foo.wildcard.io", "/s3", None),
        ("foo.anotherwildcard.io", "/s4", v1),
        ("foo.bar.anotherwildcard.io", "/s4", v1),
        ("anotherwildcard.io", "/s4", None),
        ("foo.wildcard.io", "/s4", None),
        ("specific.but.wrong.com", "/s5", None),
        ("wildcard.io", "/s5", None),
    ]
    for host, path, upstream in expected:
        assert served_by(state, host, path) == upstream, (host, path)
    assert condition(state, "s5", "Accepted") == ("False", "NoMatchingListenerHostname")
    assert condition(state, "s1", "Accepted") == ("True", "Accepted")


def test_a_listener_without_hostname_serves_every_route_hostname() -> None:
    state = build(
        inputs(
            gateways=[gateway()],
            routes=[route(hostnames=["first.com", "sub.first.com"], parents=[parent()])],
        )
    )
    assert served_by(state, "first.com", "/") == f"{INFRA}/web:8080"
    assert served_by(state, "sub.first.com", "/x") == f"{INFRA}/web:8080"
    assert served_by(state, "second.com", "/") is None


def test_the_conformance_listener_hostname_matching_scenario() -> None:
    gw = gateway(
        listeners=[
            listener("listener-1", hostname="bar.com"),
            listener("listener-2", hostname="foo.bar.com"),
            listener("listener-3", hostname="*.bar.com"),
            listener("listener-4", hostname="*.foo.com"),
        ]
    )
    routes = [
        route("v1", parents=[parent(section="listener-1")], rules=[rule(backends=[backend("v1")])]),
        route("v2", parents=[parent(section="listener-2")], rules=[rule(backends=[backend("v2")])]),
        route(
            "v3",
            parents=[parent(section="listener-3"), parent(section="listener-4")],
            rules=[rule(backends=[backend("v3")])],
        ),
    ]
    state = build(inputs(gateways=[gw], routes=routes, services=[svc("v1"), svc("v2"), svc("v3")]))
    v1, v2, v3 = (f"{INFRA}/{n}:8080" for n in ("v1", "v2", "v3"))
    for host, upstream in [
        ("bar.com", v1),
        ("foo.bar.com", v2),
        ("baz.bar.com", v3),
        ("multiple.prefixes.bar.com", v3),
        ("multiple.prefixes.foo.com", v3),
        ("foo.com", None),
        ("no.matching.host", None),
    ]:
        assert served_by(state, host, "/") == upstream, host
