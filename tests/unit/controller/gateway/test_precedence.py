"""Route precedence across the rules and routes of one listener, as the Gateway API orders
HTTPRouteRules (host, then Exact > longest PathPrefix, then method, header and query match
counts, then the oldest route and the rule's position), through the model's translation
and the data plane's RouteTable: the scenarios of the conformance tests
HTTPRoutePathMatchOrder, HTTPRouteMatchingAcrossRoutes and HTTPRouteHeaderMatching."""

from __future__ import annotations

from typing import Any

from controller.gateway.state import build
from tests.unit.controller.gateway.builders import (
    INFRA,
    backend,
    gateway,
    inputs,
    route,
    rule,
    svc,
)
from tests.unit.controller.gateway.routing import matched, served_by

V1, V2, V3 = (f"{INFRA}/infra-backend-{v}:8080" for v in ("v1", "v2", "v3"))
SERVICES = [svc("infra-backend-v1"), svc("infra-backend-v2"), svc("infra-backend-v3")]


def _to(version: str) -> list[dict[str, Any]]:
    return [backend(f"infra-backend-{version}")]


def test_exact_beats_prefix_and_longer_prefixes_win() -> None:
    # The rule order is deliberately the reverse of the precedence.
    rules = [
        rule(path="/match", path_type="Exact", backends=_to("v1")),
        rule(path="/match/exact", path_type="Exact", backends=_to("v2")),
        rule(path="/match/exact/one", path_type="Exact", backends=_to("v3")),
        rule(path="/match/", backends=_to("v3")),
        rule(path="/match/prefix/", backends=_to("v1")),
        rule(path="/match/prefix/one", backends=_to("v2")),
    ]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)], services=SERVICES))
    for path, upstream in [
        ("/match/exact/one", V3),
        ("/match/exact", V2),
        ("/match", V1),
        ("/match/prefix/one/any", V2),
        ("/match/prefix/any", V1),
        ("/match/any", V3),
    ]:
        assert served_by(state, "example.com", path) == upstream, path


def test_a_prefix_matches_on_segment_boundaries_only() -> None:
    state = build(
        inputs(
            gateways=[gateway()],
            routes=[route(rules=[rule(path="/v2", backends=_to("v2")), rule(backends=_to("v1"))])],
            services=SERVICES,
        )
    )
    assert served_by(state, "x", "/v2") == V2
    assert served_by(state, "x", "/v2/example") == V2
    assert served_by(state, "x", "/v2example") == V1


def test_across_routes_the_more_specific_host_and_path_win_whatever_the_age() -> None:
    older = route(
        "older",
        hostnames=["example.com"],
        rules=[rule(backends=_to("v1"))],
        created="2026-01-01T00:00:00Z",
    )
    newer = route(
        "newer",
        hostnames=["example.com", "example.net"],
        rules=[rule(path="/v2", backends=_to("v2"))],
        created="2026-02-01T00:00:00Z",
    )
    state = build(inputs(gateways=[gateway()], routes=[older, newer], services=SERVICES))
    assert served_by(state, "example.com", "/") == V1
    assert served_by(state, "example.com", "/v2") == V2
    assert served_by(state, "example.net", "/v2") == V2
    assert served_by(state, "example.net", "/") is None


def test_equal_matches_go_to_the_oldest_route_then_the_first_rule() -> None:
    young = route(
        "a-young", rules=[rule(path="/same", backends=_to("v1"))], created="2026-03-01T00:00:00Z"
    )
    old = route(
        "z-old",
        rules=[rule(path="/same", backends=_to("v2")), rule(path="/same", backends=_to("v3"))],
        created="2026-01-01T00:00:00Z",
    )
    state = build(inputs(gateways=[gateway()], routes=[young, old], services=SERVICES))
    assert served_by(state, "x", "/same") == V2
    # Same creation time: alphabetical namespace/name decides.
    twin_a = route("a", rules=[rule(path="/t", backends=_to("v1"))])
    twin_b = route("b", rules=[rule(path="/t", backends=_to("v2"))])
    state = build(inputs(gateways=[gateway()], routes=[twin_b, twin_a], services=SERVICES))
    assert served_by(state, "x", "/t") == V1


def test_more_header_matches_win_and_headers_compare_case_insensitively() -> None:
    rules = [
        rule(headers=[("version", "one")], backends=_to("v1")),
        rule(headers=[("version", "two")], backends=_to("v2")),
        rule(headers=[("version", "two"), ("color", "orange")], backends=_to("v1")),
        rule(headers=[("color", "blue")], backends=_to("v1")),
        rule(headers=[("color", "green")], backends=_to("v1")),
        rule(headers=[("color", "red")], backends=_to("v2")),
        rule(headers=[("color", "yellow")], backends=_to("v2")),
    ]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)], services=SERVICES))
    for headers, upstream in [
        ({"Version": "one"}, V1),
        ({"Version": "two"}, V2),
        ({"Version": "two", "Color": "orange"}, V1),
        ({"Version": "one", "Color": "blue"}, V1),
        ({"Color": "red"}, V2),
        ({"Color": "yellow", "Version": "two"}, V2),
        ({"version": "two", "color": "orange"}, V1),
        ({"Version": "three"}, None),
        ({}, None),
    ]:
        found = matched(state, "x", "/", headers=headers)
        got = None if found is None else found.backends[0].upstream
        assert got == upstream, headers


def test_method_and_query_matches_rank_above_plain_ones() -> None:
    rules = [
        rule(matches=[{"path": {"type": "PathPrefix", "value": "/"}}], backends=_to("v1")),
        rule(matches=[{"method": "POST"}], backends=_to("v2")),
        rule(matches=[{"queryParams": [{"name": "animal", "value": "whale"}]}], backends=_to("v3")),
    ]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)], services=SERVICES))
    assert served_by(state, "x", "/", method="POST") == V2
    assert served_by(state, "x", "/", query="animal=whale") == V3
    assert served_by(state, "x", "/", query="animal=dolphin") == V1


def test_weighted_backends_keep_their_weights_and_invalid_ones_their_share() -> None:
    rules = [
        rule(
            backends=[
                backend("infra-backend-v1", weight=70),
                backend("infra-backend-v2", weight=30),
                backend("missing", weight=10),
                backend("infra-backend-v3", weight=0),
            ]
        )
    ]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)], services=SERVICES))
    found = matched(state, "x", "/")
    assert found is not None
    assert [(b.upstream, b.weight) for b in found.backends] == [
        (V1, 70),
        (V2, 30),
        (None, 10),
        (V3, 0),
    ]
    # A zero-weight backend is not health-checked for nothing.
    assert state.backends == frozenset(
        {(INFRA, "infra-backend-v1", 8080), (INFRA, "infra-backend-v2", 8080)}
    )


def test_a_rule_without_backends_has_none_and_answers_500_in_the_data_plane() -> None:
    rules = [
        {"matches": [{"path": {"type": "Exact", "value": "/omitted-no-forward"}}]},
        rule(path="/empty-no-forward", path_type="Exact", backends=[]),
        rule(backends=_to("v1")),
    ]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)], services=SERVICES))
    for path in ("/omitted-no-forward", "/empty-no-forward"):
        found = matched(state, "x", path)
        assert found is not None and found.backends == () and found.filters == ()
    assert served_by(state, "x", "/forward") == V1


def test_a_prefix_trailing_slash_is_ignored() -> None:
    # Gateway API: PathPrefix "/abc/" matches "/abc" and "/abc/x", not "/abcd".
    rules = [rule(path="/abc/", backends=_to("v2")), rule(backends=_to("v1"))]
    state = build(inputs(gateways=[gateway()], routes=[route(rules=rules)], services=SERVICES))
    for path, upstream in [("/abc", V2), ("/abc/", V2), ("/abc/x", V2), ("/abcd", V1)]:
        assert served_by(state, "example.com", path) == upstream, path
