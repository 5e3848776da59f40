"""Listener isolation through the model's translation and the data plane's RouteTable: the
two scenarios of the conformance test GatewayHTTPListenerIsolation (hostnames only on the
listeners; and intersecting hostnames on listeners and routes), request by request, plus a
listener with no routes of its own and a route on two listeners of one port."""

from __future__ import annotations

from typing import Any

import pytest

from controller.gateway.state import GatewayState, build
from controller.gateway.status import SUPPORTED_FEATURES
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
from tests.unit.controller.gateway.routing import served_by, spec_for

V1 = f"{INFRA}/infra-backend-v1:8080"
LISTENERS = {
    "empty-hostname": None,
    "wildcard-example-com": "*.example.com",
    "wildcard-foo-example-com": "*.foo.example.com",
    "abc-foo-example-com": "abc.foo.example.com",
}
ROUTE_HOSTNAMES = ["bar.com", "*.example.com", "*.foo.example.com", "abc.foo.example.com"]
# (request host, the one path it is served on; every other listener's path answers 404)
EXPECTED = [
    ("bar.com", "/empty-hostname"),
    ("bar.example.com", "/wildcard-example-com"),
    ("bar.foo.example.com", "/wildcard-foo-example-com"),
    ("abc.foo.example.com", "/abc-foo-example-com"),
]


def _state(*, route_hostnames: list[str]) -> GatewayState:
    gw = gateway(
        listeners=[
            listener(name, hostname=hostname, from_="All") for name, hostname in LISTENERS.items()
        ]
    )
    routes = [
        route(
            f"attaches-to-{name}",
            parents=[parent(section=name)],
            hostnames=route_hostnames,
            rules=[rule(path=f"/{name}", backends=[backend("infra-backend-v1")])],
        )
        for name in LISTENERS
    ]
    return build(inputs(gateways=[gw], routes=routes, services=[svc("infra-backend-v1")]))


@pytest.mark.parametrize("route_hostnames", [[], ROUTE_HOSTNAMES], ids=["listeners", "both"])
def test_each_host_is_served_only_by_its_most_specific_listener(
    route_hostnames: list[str],
) -> None:
    state = _state(route_hostnames=route_hostnames)
    for host, served in EXPECTED:
        for name in LISTENERS:
            path = f"/{name}"
            want = V1 if path == served else None
            assert served_by(state, host, path) == want, (host, path)


def test_the_listener_hostnames_are_the_tables_isolated_hosts() -> None:
    table: Any = spec_for(_state(route_hostnames=[])).routes
    assert table.isolated_hosts == {h for h in LISTENERS.values() if h is not None}


def test_a_listener_without_routes_still_isolates_its_host() -> None:
    gw = gateway(
        listeners=[listener("any", from_="All"), listener("quiet", hostname="quiet.example.com")]
    )
    routes = [route(parents=[parent(section="any")], rules=[rule(backends=[backend("web")])])]
    state = build(inputs(gateways=[gw], routes=routes, services=[svc("web")]))
    assert served_by(state, "loud.example.com", "/") == f"{INFRA}/web:8080"
    assert served_by(state, "quiet.example.com", "/") is None


def test_a_route_on_two_listeners_keeps_each_host_where_it_belongs() -> None:
    # No sectionName: the route attaches to both listeners; abc.example.com is served by the
    # exact listener's copy of it, and the wildcard's copy drops that host.
    gw = gateway(
        listeners=[
            listener("wild", hostname="*.example.com"),
            listener("abc", hostname="abc.example.com"),
        ]
    )
    state = build(
        inputs(
            gateways=[gw],
            routes=[route(rules=[rule(backends=[backend("web")])])],
            services=[svc("web")],
        )
    )
    table: Any = spec_for(state).routes
    assert sorted(r.host for r in table.routes) == ["*.example.com", "abc.example.com"]
    assert served_by(state, "abc.example.com", "/") == f"{INFRA}/web:8080"
    assert served_by(state, "x.example.com", "/") == f"{INFRA}/web:8080"


def test_the_two_features_are_claimed() -> None:
    assert "GatewayHTTPListenerIsolation" in SUPPORTED_FEATURES
    assert "HTTPRouteResponseHeaderModification" in SUPPORTED_FEATURES


def test_a_response_header_modifier_with_add_and_remove_is_served() -> None:
    # Until this feature the rule was dropped (the data plane refused add/remove).
    modifier = {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {
            "set": [{"name": "X-Header-Set", "value": "s"}],
            "add": [{"name": "X-Header-Add", "value": "a"}],
            "remove": ["X-Header-Remove"],
        },
    }
    state = build(
        inputs(
            gateways=[gateway()],
            routes=[route(rules=[rule(filters=[modifier], backends=[backend("web")])])],
            services=[svc("web")],
        )
    )
    found: Any = spec_for(state).routes.match("x", "/")
    assert found is not None and found.actions is not None
    edit = found.actions.response_edit
    assert edit.drop == {b"x-header-set", b"x-header-remove"}
    assert edit.append == ((b"X-Header-Set", b"s"), (b"X-Header-Add", b"a"))
