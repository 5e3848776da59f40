"""Which routes attach to which listeners: parentRef sectionName and port, allowedRoutes
(namespaces Same/All/Selector with matchLabels and matchExpressions; kinds), hostnames, and
the reasons a parent refuses a route; attachedRoutes per listener."""

from __future__ import annotations

from typing import Any

import pytest

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
from tests.unit.controller.gateway.routing import (
    condition,
    listener_condition,
    listener_status,
    route_parents,
    served_by,
)

APPS_LABELS = {"kubernetes.io/metadata.name": "apps", "team": "blue", "tier": "web"}


def _namespaces() -> dict[str, dict[str, str]]:
    return {
        INFRA: {"kubernetes.io/metadata.name": INFRA},
        "apps": APPS_LABELS,
        "other": {"kubernetes.io/metadata.name": "other", "team": "red"},
    }


def _app_route(namespace: str = "apps", **kwargs: Any) -> dict[str, Any]:
    return route(
        "app",
        namespace,
        parents=[parent(namespace=INFRA)],
        rules=[rule(backends=[backend("web")])],
        **kwargs,
    )


def _attach(listen: dict[str, Any], namespace: str = "apps") -> tuple[str, str]:
    state = build(
        inputs(
            gateways=[gateway(listeners=[listen])],
            routes=[_app_route(namespace)],
            services=[svc("web", namespace)],
            namespaces=_namespaces(),
        )
    )
    return condition(state, "app", "Accepted", namespace=namespace)


def test_from_same_refuses_other_namespaces() -> None:
    assert _attach(listener()) == ("False", "NotAllowedByListeners")
    assert _attach(listener(), INFRA) == ("True", "Accepted")


def test_from_all_takes_every_namespace() -> None:
    assert _attach(listener(from_="All")) == ("True", "Accepted")
    assert _attach(listener(from_="All"), "other") == ("True", "Accepted")


@pytest.mark.parametrize(
    ("selector", "apps", "other"),
    [
        ({"matchLabels": {"team": "blue"}}, True, False),
        ({"matchLabels": {}}, True, True),  # the empty selector selects everything
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["red", "x"]}]},
            False,
            True,
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["red"]}]},
            True,
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False, True),
        (
            {
                "matchLabels": {"team": "blue"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}],
            },
            False,
            False,
        ),
    ],
)
def test_from_selector_matches_the_route_namespace_labels(
    selector: dict[str, Any], apps: bool, other: bool
) -> None:
    listen = listener(from_="Selector", selector=selector)
    for namespace, allowed in (("apps", apps), ("other", other)):
        expected = ("True", "Accepted") if allowed else ("False", "NotAllowedByListeners")
        assert _attach(listen, namespace) == expected, namespace


def test_a_namespace_not_in_the_cache_is_not_selected() -> None:
    listen = listener(from_="Selector", selector={"matchLabels": {}})
    assert _attach(listen, "unknown") == ("False", "NotAllowedByListeners")


def test_kinds_without_httproute_refuse_every_route() -> None:
    listen = listener(kinds=[{"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}])
    assert _attach(listen, INFRA) == ("False", "NotAllowedByListeners")


def test_section_name_and_port_select_listeners() -> None:
    gw = gateway(listeners=[listener("a", 80), listener("b", 8080)])
    routes = [
        route("to-b", parents=[parent(section="b")], rules=[rule(path="/b")]),
        route("to-8080", parents=[parent(port=8080)], rules=[rule(path="/p")]),
        route("to-a-8080", parents=[parent(section="a", port=8080)]),
        route("to-c", parents=[parent(section="c")]),
    ]
    state = build(inputs(gateways=[gw], routes=routes))
    assert condition(state, "to-b", "Accepted") == ("True", "Accepted")
    assert condition(state, "to-8080", "Accepted") == ("True", "Accepted")
    assert condition(state, "to-a-8080", "Accepted") == ("False", "NoMatchingParent")
    assert condition(state, "to-c", "Accepted") == ("False", "NoMatchingParent")
    assert served_by(state, "x", "/b", port=8080) == f"{INFRA}/web:8080"
    assert served_by(state, "x", "/b", port=80) is None
    assert listener_status(state, "a")["attachedRoutes"] == 0
    assert listener_status(state, "b")["attachedRoutes"] == 2


def test_attached_routes_count_each_route_once_per_listener() -> None:
    gw = gateway(listeners=[listener("http", hostname="*.example.com")])
    routes = [
        # Two parentRefs to the same listener: one route.
        route("twice", parents=[parent(), parent(section="http")], hostnames=["a.example.com"]),
        route("other-host", hostnames=["a.example.net"]),
        route("any-host"),
    ]
    state = build(inputs(gateways=[gw], routes=routes))
    assert listener_status(state, "http")["attachedRoutes"] == 2
    assert condition(state, "other-host", "Accepted") == ("False", "NoMatchingListenerHostname")
    assert [p["parentRef"] for p in route_parents(state, "twice")] == [
        parent(),
        parent(section="http"),
    ]


def test_identical_parent_refs_get_one_status_entry() -> None:
    state = build(inputs(gateways=[gateway()], routes=[route(parents=[parent(), parent()])]))
    assert len(route_parents(state, "route")) == 1


def test_parents_of_other_controllers_and_kinds_are_not_ours() -> None:
    theirs = gateway("theirs", class_name="other-class")
    routes = [
        route("only-theirs", parents=[parent("theirs")]),
        route("mesh", parents=[{"group": "", "kind": "Service", "name": "web"}]),
        route("missing", parents=[parent("no-such-gateway")]),
        route("both", parents=[parent("theirs"), parent()]),
    ]
    state = build(inputs(gateways=[gateway(), theirs], routes=routes))
    for name in ("only-theirs", "mesh", "missing"):
        assert ("HTTPRoute", INFRA, name) not in state.statuses
    assert [p["parentRef"]["name"] for p in route_parents(state, "both")] == ["gw"]
    assert ("Gateway", INFRA, "theirs") not in state.statuses


def test_a_route_on_two_gateways_reaches_both() -> None:
    gws = [gateway("one"), gateway("two")]
    state = build(inputs(gateways=gws, routes=[route(parents=[parent("one"), parent("two")])]))
    assert served_by(state, "x", "/", gateway="one") == f"{INFRA}/web:8080"
    assert served_by(state, "x", "/", gateway="two") == f"{INFRA}/web:8080"
    assert [condition(state, "route", "Accepted", index=i) for i in (0, 1)] == [
        ("True", "Accepted"),
        ("True", "Accepted"),
    ]


def test_a_route_does_not_leak_into_a_gateway_it_does_not_name() -> None:
    gws = [gateway("one"), gateway("two")]
    state = build(inputs(gateways=gws, routes=[route(parents=[parent("one")])]))
    assert served_by(state, "x", "/", gateway="two") is None


def test_an_unsupported_protocol_takes_no_routes_and_no_kinds() -> None:
    gw = gateway(listeners=[listener("http"), listener("tcp", 9000, "TCP")])
    state = build(inputs(gateways=[gw], routes=[route(parents=[parent(section="tcp")])]))
    assert listener_condition(state, "tcp", "Accepted") == ("False", "UnsupportedProtocol")
    assert listener_status(state, "tcp")["supportedKinds"] == []
    assert condition(state, "route", "Accepted") == ("False", "NotAllowedByListeners")
