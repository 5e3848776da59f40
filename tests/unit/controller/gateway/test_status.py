"""The desired statuses: GatewayClass (Accepted, SupportedVersion, supportedFeatures), Gateway
(Accepted, Programmed, addresses, listeners with their conditions and reasons), HTTPRoute
parents; observedGeneration everywhere, lastTransitionTime kept while a condition holds, and
other controllers' parent entries left alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.gateway.state import GatewayState, build
from controller.gateway.status import SUPPORTED_FEATURES
from tests.unit.controller.gateway.builders import (
    CLASS,
    CONTROLLER,
    INFRA,
    LATER,
    NOW,
    gateway,
    gateway_class,
    inputs,
    listener,
    parent,
    route,
    rule,
)
from tests.unit.controller.gateway.routing import (
    condition,
    gateway_condition,
    listener_condition,
    listener_status,
    matched,
    route_parents,
)

HTTP_ROUTE = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}
GRPC_ROUTE = {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}


def _conditions(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def _every_condition(state: GatewayState) -> list[dict[str, Any]]:
    found = []
    for status in state.statuses.values():
        found.extend(status.get("conditions", ()))
        for item in status.get("listeners", ()):
            found.extend(item["conditions"])
        for item in status.get("parents", ()):
            found.extend(item["conditions"])
    return found


def test_our_gateway_class_is_accepted_with_sorted_supported_features() -> None:
    state = build(
        inputs(classes=[gateway_class(), gateway_class("theirs", controller="example.com/x")])
    )
    status = state.statuses[("GatewayClass", "", CLASS)]
    assert _conditions(status)["Accepted"]["status"] == "True"
    names = [f["name"] for f in status["supportedFeatures"]]
    assert names == sorted(names) == list(SUPPORTED_FEATURES)
    assert {"Gateway", "HTTPRoute", "ReferenceGrant"} <= set(names)
    assert "SupportedVersion" not in _conditions(status)  # the bundle version is unknown
    assert ("GatewayClass", "", "theirs") not in state.statuses


def test_supported_version_follows_the_crd_bundle_version() -> None:
    for version, expected in (
        ("v1.6.3", ("True", "SupportedVersion")),
        ("v1.7.0", ("False", "UnsupportedVersion")),
    ):
        state = build(inputs(bundle_version=version))
        cond = _conditions(state.statuses[("GatewayClass", "", CLASS)])
        assert (cond["SupportedVersion"]["status"], cond["SupportedVersion"]["reason"]) == expected
        assert cond["Accepted"]["status"] == "True"  # best effort either way


def test_a_class_with_parameters_is_refused_and_its_gateways_are_not_served() -> None:
    ref = {"group": "example.com", "kind": "Config", "name": "x"}
    state = build(inputs(classes=[gateway_class(parametersRef=ref)], gateways=[gateway()]))
    cond = _conditions(state.statuses[("GatewayClass", "", CLASS)])["Accepted"]
    assert (cond["status"], cond["reason"]) == ("False", "InvalidParameters")
    assert ("Gateway", INFRA, "gw") not in state.statuses
    assert state.listeners == ()


def test_a_gateway_is_programmed_once_it_has_an_address_and_its_sockets() -> None:
    def programmed(**kwargs: Any) -> tuple[str, str]:
        return gateway_condition(build(inputs(gateways=[gateway()], **kwargs)), "Programmed")

    assert programmed() == ("False", "AddressNotAssigned")
    assert programmed(addresses={(INFRA, "gw"): "10.96.0.7"}) == ("False", "Pending")
    state = build(inputs(gateways=[gateway()], addresses={(INFRA, "gw"): "10.96.0.7"}))
    internal = state.listeners[0].port
    done = build(
        inputs(
            gateways=[gateway()],
            addresses={(INFRA, "gw"): "10.96.0.7"},
            bound_ports=frozenset({internal}),
        )
    )
    assert gateway_condition(done, "Programmed") == ("True", "Programmed")
    assert listener_condition(done, "http", "Programmed") == ("True", "Programmed")
    assert done.statuses[("Gateway", INFRA, "gw")]["addresses"] == [
        {"type": "IPAddress", "value": "10.96.0.7"}
    ]


def test_unsupported_protocols_make_the_listeners_not_valid() -> None:
    mixed = gateway("mixed", listeners=[listener("http"), listener("invalid", 9000, "UDP")])
    only = gateway("only", listeners=[listener("invalid", 9000, "TCP")])
    state = build(inputs(gateways=[mixed, only]))
    assert gateway_condition(state, "Accepted", gateway="mixed") == ("True", "ListenersNotValid")
    assert gateway_condition(state, "Accepted", gateway="only") == ("False", "ListenersNotValid")
    assert listener_condition(state, "http", "Accepted", gateway="mixed") == ("True", "Accepted")
    assert listener_status(state, "invalid", gateway="only")["supportedKinds"] == []
    # No socket and no Service port for a listener that can never be served.
    assert [s.name for s in state.listeners] == ["gateway/infra/mixed/80"]
    assert [p.port for p in state.gateway_services[(INFRA, "mixed")].ports] == [80]
    assert (INFRA, "only") not in state.gateway_services


def test_invalid_route_kinds_are_left_out_of_supported_kinds() -> None:
    state = build(
        inputs(
            gateways=[
                gateway("only", listeners=[listener(kinds=[GRPC_ROUTE])]),
                gateway("both", listeners=[listener(kinds=[GRPC_ROUTE, HTTP_ROUTE])]),
            ]
        )
    )
    for name, kinds in (("only", []), ("both", [HTTP_ROUTE])):
        assert listener_condition(state, "http", "ResolvedRefs", gateway=name) == (
            "False",
            "InvalidRouteKinds",
        )
        assert listener_status(state, "http", gateway=name)["supportedKinds"] == kinds


def test_conflicting_listeners_are_marked_and_not_served() -> None:
    gw = gateway(
        listeners=[
            listener("a", 80, hostname="a.example.com"),
            listener("a-again", 80, hostname="a.example.com"),
            listener("b", 80, hostname="b.example.com"),
            listener("plain", 8443),
            listener("tls", 8443, "HTTPS", certificates=[]),
        ]
    )
    state = build(inputs(gateways=[gw], routes=[route(parents=[parent()])]))
    for name, reason in (
        ("a", "HostnameConflict"),
        ("a-again", "HostnameConflict"),
        ("plain", "ProtocolConflict"),
        ("tls", "ProtocolConflict"),
    ):
        assert listener_condition(state, name, "Conflicted") == ("True", reason), name
        assert listener_condition(state, name, "Programmed")[0] == "False"
    assert listener_condition(state, "b", "Conflicted") == ("False", "NoConflicts")
    # Port 80 still serves the listener that does not conflict, and only its hostname.
    assert matched(state, "b.example.com", "/") is not None
    assert matched(state, "a.example.com", "/") is None
    assert [s.name for s in state.listeners] == ["gateway/infra/gw/80"]


def test_observed_generation_is_the_objects_generation_everywhere() -> None:
    state = build(
        inputs(
            classes=[gateway_class(generation=4)],
            gateways=[gateway(generation=7)],
            routes=[route(generation=3)],
        )
    )
    for key, generation in (
        (("GatewayClass", "", CLASS), 4),
        (("Gateway", INFRA, "gw"), 7),
        (("HTTPRoute", INFRA, "route"), 3),
    ):
        status = state.statuses[key]
        conditions = list(status.get("conditions", ()))
        for item in status.get("listeners", ()):
            conditions.extend(item["conditions"])
        for item in status.get("parents", ()):
            conditions.extend(item["conditions"])
        assert conditions and {c["observedGeneration"] for c in conditions} == {generation}


def _written_back(state: GatewayState, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects as the API holds them after the plumbing wrote the desired statuses."""
    result = []
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        result.append({**obj, "status": state.statuses[key]} if key in state.statuses else obj)
    return result


def test_last_transition_time_is_kept_while_a_condition_holds() -> None:
    gc, gw, rt = gateway_class(), gateway(), route()
    first = build(inputs(classes=[gc], gateways=[gw], routes=[rt]))
    gc2, gw2, rt2 = _written_back(first, [gc, gw, rt])
    # Nothing changed: an equal state, every time from the first build.
    again = build(inputs(classes=[gc2], gateways=[gw2], routes=[rt2], now=LATER))
    assert again.statuses == first.statuses
    assert {c["lastTransitionTime"] for c in _every_condition(again)} == {NOW}
    # The address arrives: only the Programmed condition of the Gateway moves.
    moved = build(
        inputs(
            classes=[gc2],
            gateways=[gw2],
            routes=[rt2],
            addresses={(INFRA, "gw"): "10.0.0.1"},
            now=LATER,
        )
    )
    conds = _conditions(moved.statuses[("Gateway", INFRA, "gw")])
    assert conds["Programmed"]["lastTransitionTime"] == LATER
    assert conds["Accepted"]["lastTransitionTime"] == NOW
    assert condition(moved, "route", "Accepted") == ("True", "Accepted")


def test_other_controllers_parent_entries_are_kept_and_ours_replaced() -> None:
    theirs = {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "x"},
        "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
    }
    stale = {
        "parentRef": parent("gone"),
        "controllerName": CONTROLLER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
    }
    rt = route(status={"parents": [theirs, stale]})
    state = build(inputs(gateways=[gateway()], routes=[rt]))
    parents = route_parents(state, "route")
    assert parents[0] == theirs
    assert [p["parentRef"] for p in parents[1:]] == [parent()]
    # A route that no longer names our Gateways gets our entries taken away, theirs kept.
    left = route(parents=[parent("x")], status={"parents": [theirs, stale]})
    state = build(inputs(gateways=[gateway()], routes=[left]))
    assert route_parents(state, "route") == [theirs]


def test_a_parent_ref_is_echoed_as_written() -> None:
    written = {"name": "gw", "namespace": INFRA, "sectionName": "http"}  # no group, no kind
    state = build(inputs(gateways=[gateway()], routes=[route(parents=[written])]))
    assert route_parents(state, "route")[0]["parentRef"] == written


def test_unsupported_filters_drop_their_rule_and_make_the_route_partially_invalid() -> None:
    mirror = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "web", "port": 8080}},
    }
    rules = [rule(path="/ok"), rule(path="/mirror", filters=[mirror])]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)]))
    assert condition(state, "route", "Accepted") == ("True", "Accepted")
    assert condition(state, "route", "PartiallyInvalid") == ("True", "UnsupportedValue")
    assert matched(state, "x", "/mirror") is None
    assert matched(state, "x", "/ok") is not None
    only = build(inputs(gateways=[gateway()], routes=[route(rules=[rules[1]])]))
    assert condition(only, "route", "Accepted") == ("False", "UnsupportedValue")
    assert listener_status(only, "http")["attachedRoutes"] == 0


def test_a_value_the_data_plane_refuses_drops_the_rule_with_the_reason() -> None:
    bad = {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": "Content-Length", "value": "1"}]},
    }
    state = build(inputs(gateways=[gateway()], routes=[route(rules=[rule(filters=[bad])])]))
    assert condition(state, "route", "Accepted") == ("False", "UnsupportedValue")
    message = route_parents(state, "route")[0]["conditions"][0]["message"]
    assert "rules[0]" in message and "Content-Length" in message


def test_a_malformed_route_reports_the_field_on_our_parents() -> None:
    broken = route(rules=[rule(matches=[{"path": {"type": "Exact", "value": "no-slash"}}])])
    state = build(inputs(gateways=[gateway()], routes=[broken]))
    assert condition(state, "route", "Accepted") == ("False", "UnsupportedValue")
    message = route_parents(state, "route")[0]["conditions"][0]["message"]
    assert message.startswith("spec.rules[0].matches[0].path.value:")
    assert any("spec.rules[0].matches[0].path.value" in e for e in state.errors)
    assert state.listeners[0].routes.routes == ()


def test_a_malformed_gateway_is_not_accepted_and_names_the_field() -> None:
    broken = gateway(listeners=[{"name": "http", "port": 0, "protocol": "HTTP"}])
    state = build(inputs(gateways=[broken]))
    conds = _conditions(state.statuses[("Gateway", INFRA, "gw")])
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == (
        "False",
        "ListenersNotValid",
    )
    assert conds["Accepted"]["message"].startswith("spec.listeners[0].port:")
    assert state.listeners == () and not state.gateway_services


def test_static_addresses_are_not_supported() -> None:
    gw = gateway()
    gw["spec"]["addresses"] = [{"type": "IPAddress", "value": "10.1.2.3"}]
    state = build(inputs(gateways=[gw], routes=[route()], addresses={(INFRA, "gw"): "10.0.0.1"}))
    assert gateway_condition(state, "Accepted") == ("False", "UnsupportedAddress")
    assert gateway_condition(state, "Programmed") == ("False", "Invalid")
    assert listener_condition(state, "http", "Programmed") == ("False", "Invalid")
    assert state.listeners == () and not state.gateway_services


def test_https_passthrough_is_not_accepted() -> None:
    https = listener("tls", 443, "HTTPS", certificates=[{"name": "tls"}])
    https["tls"]["mode"] = "Passthrough"
    state = build(inputs(gateways=[gateway(listeners=[https])]))
    assert listener_condition(state, "tls", "Accepted") == ("False", "UnsupportedValue")
    assert state.listeners == ()


def test_a_path_regex_the_data_plane_cannot_compile_drops_its_rule() -> None:
    bad = rule(matches=[{"path": {"type": "RegularExpression", "value": "/(unclosed"}}])
    state = build(inputs(gateways=[gateway()], routes=[route(rules=[rule(path="/ok"), bad])]))
    assert condition(state, "route", "PartiallyInvalid") == ("True", "UnsupportedValue")
    message = route_parents(state, "route")[0]["conditions"][-1]["message"]
    assert "rules[1]" in message and "matches[0]" in message
    assert matched(state, "x", "/ok") is not None
