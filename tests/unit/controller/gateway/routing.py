"""Reading a built GatewayState the way a request and the conformance suite do: which
upstream a request reaches, and a route's or listener's condition."""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from controller.gateway.state import GatewayState
from proxy.routing import Route
from tests.unit.controller.gateway.builders import INFRA


def spec_for(
    state: GatewayState, gateway: str = "gw", port: int = 80, namespace: str = INFRA
) -> Any:
    name = f"gateway/{namespace}/{gateway}/{port}"
    for spec in state.listeners:
        if spec.name == name:
            return spec
    raise AssertionError(f"no listener {name} in {[s.name for s in state.listeners]}")


def matched(
    state: GatewayState,
    host: str,
    path: str,
    *,
    gateway: str = "gw",
    port: int = 80,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Route | None:
    spec = spec_for(state, gateway, port)
    found: Route | None = spec.routes.match(
        host,
        path,
        method=method,
        headers=CIMultiDictProxy(CIMultiDict(headers or {})),
        query=query,
    )
    return found


def served_by(state: GatewayState, host: str, path: str, **kwargs: Any) -> str | None:
    """The single upstream the request reaches (None: no route), for one-backend routes."""
    found = matched(state, host, path, **kwargs)
    if found is None:
        return None
    assert len(found.backends) == 1, found
    return found.backends[0].upstream


def route_parents(state: GatewayState, name: str, namespace: str = INFRA) -> list[dict[str, Any]]:
    return list(state.statuses[("HTTPRoute", namespace, name)]["parents"])


def condition(
    state: GatewayState, name: str, type_: str, *, namespace: str = INFRA, index: int = 0
) -> tuple[str, str]:
    """(status, reason) of a condition of the route's `index`-th parent entry."""
    parent = route_parents(state, name, namespace)[index]
    for item in parent["conditions"]:
        if item["type"] == type_:
            return item["status"], item["reason"]
    raise AssertionError(f"no {type_} in {parent}")


def listener_status(
    state: GatewayState, listener: str, *, gateway: str = "gw", namespace: str = INFRA
) -> dict[str, Any]:
    for item in state.statuses[("Gateway", namespace, gateway)]["listeners"]:
        if item["name"] == listener:
            return dict(item)
    raise AssertionError(f"no listener {listener}")


def listener_condition(
    state: GatewayState, listener: str, type_: str, *, gateway: str = "gw"
) -> tuple[str, str]:
    for item in listener_status(state, listener, gateway=gateway)["conditions"]:
        if item["type"] == type_:
            return item["status"], item["reason"]
    raise AssertionError(f"no {type_}")


def gateway_condition(state: GatewayState, type_: str, *, gateway: str = "gw") -> tuple[str, str]:
    for item in state.statuses[("Gateway", INFRA, gateway)]["conditions"]:
        if item["type"] == type_:
            return item["status"], item["reason"]
    raise AssertionError(f"no {type_}")
