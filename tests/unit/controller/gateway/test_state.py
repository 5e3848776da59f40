"""`build` as a whole: idempotence (equal inputs, equal states), the per-Gateway Services,
the backends, and malformed objects reported with the field while everything else goes on."""

from __future__ import annotations

import pytest

from controller.gateway.fields import GatewayObjectError
from controller.gateway.httproute import HTTPRoute
from controller.gateway.memo import GatewayMemo
from controller.gateway.objects import Gateway, ReferenceGrant
from controller.gateway.state import build, service_name
from controller.gateway.translate import upstream_name
from tests.unit.controller.gateway.builders import (
    INFRA,
    backend,
    certificate,
    gateway,
    grant,
    inputs,
    listener,
    parent,
    route,
    rule,
    svc,
)


def _world() -> dict[str, object]:
    return {
        "gateways": [
            gateway("one", listeners=[listener("http"), listener("alt", 8080)]),
            gateway(
                "two",
                "apps",
                listeners=[
                    listener("https", 443, "HTTPS", from_="All", certificates=[{"name": "tls"}])
                ],
                created="2026-03-01T00:00:00Z",
            ),
        ],
        "routes": [
            route(
                "a",
                parents=[parent("one"), parent("two", namespace="apps")],
                hostnames=["a.example.com"],
            ),
            route(
                "b",
                rules=[rule(path="/b", backends=[backend("web", namespace="backends")])],
                parents=[parent("one", section="alt")],
            ),
        ],
        "grants": [grant()],
        "services": [svc("web"), svc("web", "backends")],
        "tls_secrets": {("apps", "tls"): certificate()},
        "addresses": {(INFRA, "one"): "10.0.0.1"},
    }


def test_building_twice_gives_equal_states() -> None:
    first = build(inputs(**_world()))  # type: ignore[arg-type]
    second = build(inputs(**_world()))  # type: ignore[arg-type]
    assert first == second
    assert first.listeners and first.statuses


def test_every_gateway_gets_a_service_with_one_port_per_listener_port() -> None:
    state = build(inputs(**_world()))  # type: ignore[arg-type]
    one = state.gateway_services[(INFRA, "one")]
    assert one.name == service_name(INFRA, "one") and one.name.startswith("kf-gw-")
    assert len(one.name) == len("kf-gw-") + 8
    assert [(p.name, p.port) for p in one.ports] == [("gw-80", 80), ("gw-8080", 8080)]
    by_name = {s.name: s for s in state.listeners}
    for p in one.ports:
        assert by_name[f"gateway/{INFRA}/one/{p.port}"].port == p.target_port
    assert [p.port for p in state.gateway_services[("apps", "two")].ports] == [443]


def test_backends_are_the_service_ports_the_routes_use() -> None:
    state = build(inputs(**_world()))  # type: ignore[arg-type]
    assert state.backends == frozenset({(INFRA, "web", 8080), ("backends", "web", 8080)})
    assert upstream_name(("backends", "web", 8080)) == "backends/web:8080"


def test_a_gateway_leaving_frees_its_service_and_keeps_the_others_ports() -> None:
    world = _world()
    before = build(inputs(**world))  # type: ignore[arg-type]
    world["gateways"] = world["gateways"][:1]  # type: ignore[index]
    after = build(inputs(**world))  # type: ignore[arg-type]
    assert set(after.gateway_services) == {(INFRA, "one")}
    assert after.gateway_services[(INFRA, "one")] == before.gateway_services[(INFRA, "one")]


def test_a_broken_object_does_not_stop_the_others() -> None:
    broken_grant = {"metadata": {"name": "bad", "namespace": "backends"}, "spec": {"from": 3}}
    broken_route = route("broken", rules=[{"backendRefs": [{"port": 80}]}])
    state = build(
        inputs(
            gateways=[gateway()],
            routes=[route(), broken_route],
            grants=[broken_grant],
        )
    )
    assert any(e.startswith("ReferenceGrant backends/bad: spec.from:") for e in state.errors)
    assert any(
        e.startswith("HTTPRoute infra/broken: spec.rules[0].backendRefs[0].name:")
        for e in state.errors
    )
    assert state.listeners[0].routes.routes  # the good route is served


@pytest.mark.parametrize(
    ("parse", "raw", "field"),
    [
        (Gateway.parse, {"metadata": {"name": "g", "namespace": "n"}}, "spec"),
        (
            Gateway.parse,
            {
                "metadata": {"name": "g", "namespace": "n"},
                "spec": {
                    "gatewayClassName": "c",
                    "listeners": [
                        {"name": "a", "port": 80, "protocol": "HTTP", "hostname": "Not A Host"}
                    ],
                },
            },
            "spec.listeners[0].hostname",
        ),
        (
            Gateway.parse,
            {
                "metadata": {"name": "g", "namespace": "n"},
                "spec": {
                    "gatewayClassName": "c",
                    "listeners": [
                        {"name": "a", "port": 80, "protocol": "HTTP"},
                        {"name": "a", "port": 81, "protocol": "HTTP"},
                    ],
                },
            },
            "spec.listeners[1].name",
        ),
        (
            Gateway.parse,
            {
                "metadata": {"name": "g", "namespace": "n"},
                "spec": {
                    "gatewayClassName": "c",
                    "listeners": [
                        {
                            "name": "a",
                            "port": 80,
                            "protocol": "HTTP",
                            "allowedRoutes": {
                                "namespaces": {
                                    "from": "Selector",
                                    "selector": {
                                        "matchExpressions": [{"key": "k", "operator": "In"}]
                                    },
                                }
                            },
                        }
                    ],
                },
            },
            "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values",
        ),
        (
            HTTPRoute.parse,
            {
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {"rules": [{"matches": [{"headers": [{"name": "x", "value": 1}]}]}]},
            },
            "spec.rules[0].matches[0].headers[0].value",
        ),
        (
            HTTPRoute.parse,
            {
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {"rules": [{"backendRefs": [{"name": "w", "port": 80, "weight": -1}]}]},
            },
            "spec.rules[0].backendRefs[0].weight",
        ),
        (
            HTTPRoute.parse,
            {
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {"parentRefs": [{"name": "g", "port": "80"}]},
            },
            "spec.parentRefs[0].port",
        ),
        (
            ReferenceGrant.parse,
            {"metadata": {"name": "g", "namespace": "n"}, "spec": {"to": [{"group": ""}]}},
            "spec.to[0].kind",
        ),
    ],
)
def test_a_malformed_object_names_the_field(
    parse: object, raw: dict[str, object], field: str
) -> None:
    with pytest.raises(GatewayObjectError) as caught:
        parse(raw)  # type: ignore[operator]
    assert caught.value.path == field


def test_defaults_are_the_crds() -> None:
    parsed = HTTPRoute.parse(
        {
            "metadata": {"name": "r", "namespace": "n"},
            "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"name": "w"}]}]},
        }
    )
    ref = parsed.parent_refs[0]
    assert (ref.group, ref.kind, ref.namespace, ref.section_name) == (
        "gateway.networking.k8s.io",
        "Gateway",
        None,
        None,
    )
    only = parsed.rules[0]
    assert only.matches[0].path.kind == "prefix" and only.matches[0].path.value == "/"
    assert (only.backend_refs[0].group, only.backend_refs[0].kind, only.backend_refs[0].weight) == (
        "",
        "Service",
        1,
    )
    no_rules = HTTPRoute.parse({"metadata": {"name": "r", "namespace": "n"}, "spec": {}})
    assert len(no_rules.rules) == 1 and no_rules.rules[0].backend_refs == ()


def test_a_memo_saves_work_and_never_changes_the_result() -> None:
    memo = GatewayMemo()
    world = _world()
    first = build(inputs(**world), memo=memo)  # type: ignore[arg-type]
    assert first == build(inputs(**world))  # type: ignore[arg-type]
    again = build(inputs(**world), memo=memo)  # type: ignore[arg-type]
    assert again == first
    # Unchanged listeners keep their RouteTable objects: the data plane swaps nothing.
    assert all(a.routes is b.routes for a, b in zip(again.listeners, first.listeners, strict=True))
    # A changed route is read again; what it no longer needs is dropped from the memo.
    routes = list(world["routes"])  # type: ignore[call-overload]
    routes[1] = route("b", rules=[rule(path="/c")], parents=[parent("one", section="alt")])
    world["routes"] = routes
    changed = build(inputs(**world), memo=memo)  # type: ignore[arg-type]
    assert changed == build(inputs(**world))  # type: ignore[arg-type]
    assert changed != first
    assert repr(memo).startswith("<GatewayMemo 6 objects")  # class, 2 Gateways, 2 routes, grant
    world["routes"] = routes[:1]
    build(inputs(**world), memo=memo)  # type: ignore[arg-type]
    assert repr(memo).startswith("<GatewayMemo 5 objects")


def test_a_memo_remembers_a_broken_object_and_still_reports_it() -> None:
    memo = GatewayMemo()
    broken = [route(rules=[{"backendRefs": [{"port": 80}]}])]
    for _ in range(2):
        state = build(inputs(gateways=[gateway()], routes=broken), memo=memo)
        assert any("spec.rules[0].backendRefs[0].name" in e for e in state.errors)


def test_the_order_the_cache_lists_objects_in_does_not_matter() -> None:
    world = _world()
    expected = build(inputs(**world))  # type: ignore[arg-type]
    for key in ("gateways", "routes", "services"):
        world[key] = list(reversed(world[key]))  # type: ignore[call-overload]
    assert build(inputs(**world)) == expected  # type: ignore[arg-type]
