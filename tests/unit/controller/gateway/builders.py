"""Raw Gateway API objects as the API server returns them (camelCase dicts), and inputs for
`controller.gateway.state.build`, for the model's unit tests."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from controller.gateway.state import GatewayInputs
from controller.objects import ServiceInfo
from proxy.tls.certificate import Certificate, load_certificate, self_signed
from tests.unit.controller.factories import service_json

CONTROLLER = "kubeferry.io/gateway-controller"
CLASS = "kubeferry"
INFRA = "infra"
NOW = "2026-12-01T12:00:00Z"
LATER = "2026-12-01T13:00:00Z"


def gateway_class(
    name: str = CLASS, *, controller: str = CONTROLLER, generation: int = 1, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name, "generation": generation},
        "spec": {"controllerName": controller, **spec},
    }


def listener(
    name: str = "http",
    port: int = 80,
    protocol: str = "HTTP",
    *,
    hostname: str | None = None,
    from_: str | None = None,
    selector: Mapping[str, Any] | None = None,
    kinds: Sequence[Mapping[str, str]] | None = None,
    certificates: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "port": port, "protocol": protocol}
    if hostname is not None:
        result["hostname"] = hostname
    allowed: dict[str, Any] = {}
    if from_ is not None:
        allowed["namespaces"] = {"from": from_}
        if selector is not None:
            allowed["namespaces"]["selector"] = dict(selector)
    if kinds is not None:
        allowed["kinds"] = [dict(k) for k in kinds]
    if allowed:
        result["allowedRoutes"] = allowed
    if certificates is not None:
        result["tls"] = {"mode": "Terminate", "certificateRefs": [dict(c) for c in certificates]}
    return result


def gateway(
    name: str = "gw",
    namespace: str = INFRA,
    *,
    listeners: Sequence[Mapping[str, Any]] = (),
    class_name: str = CLASS,
    created: str = "2026-01-01T00:00:00Z",
    generation: int = 1,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": generation,
            "creationTimestamp": created,
        },
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [dict(item) for item in (listeners or (listener(),))],
        },
    }
    if status is not None:
        result["status"] = dict(status)
    return result


def parent(
    name: str = "gw",
    *,
    namespace: str | None = None,
    section: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    # As the API server stores it: the CRD defaults group and kind.
    result: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}
    if namespace is not None:
        result["namespace"] = namespace
    if section is not None:
        result["sectionName"] = section
    if port is not None:
        result["port"] = port
    return result


def backend(name: str = "web", port: int | None = 8080, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, **extra}
    if port is not None:
        result["port"] = port
    return result


def rule(
    *,
    path: str | None = None,
    path_type: str = "PathPrefix",
    headers: Sequence[tuple[str, str]] = (),
    backends: Sequence[Mapping[str, Any]] | None = None,
    filters: Sequence[Mapping[str, Any]] = (),
    matches: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if matches is not None:
        result["matches"] = [dict(m) for m in matches]
    elif path is not None or headers:
        match: dict[str, Any] = {}
        if path is not None:
            match["path"] = {"type": path_type, "value": path}
        if headers:
            match["headers"] = [{"name": n, "value": v} for n, v in headers]
        result["matches"] = [match]
    result["backendRefs"] = [dict(b) for b in (backends if backends is not None else (backend(),))]
    if filters:
        result["filters"] = [dict(f) for f in filters]
    return result


def route(
    name: str = "route",
    namespace: str = INFRA,
    *,
    parents: Sequence[Mapping[str, Any]] | None = None,
    hostnames: Sequence[str] = (),
    rules: Sequence[Mapping[str, Any]] | None = None,
    created: str = "2026-01-02T00:00:00Z",
    generation: int = 1,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [dict(p) for p in (parents if parents is not None else (parent(),))],
        "rules": [dict(r) for r in (rules if rules is not None else (rule(),))],
    }
    if hostnames:
        spec["hostnames"] = list(hostnames)
    result: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": generation,
            "creationTimestamp": created,
        },
        "spec": spec,
    }
    if status is not None:
        result["status"] = dict(status)
    return result


def grant(
    name: str = "grant",
    namespace: str = "backends",
    *,
    from_kind: str = "HTTPRoute",
    from_namespace: str = INFRA,
    to_kind: str = "Service",
    to_name: str | None = None,
) -> dict[str, Any]:
    to: dict[str, Any] = {"group": "", "kind": to_kind}
    if to_name is not None:
        to["name"] = to_name
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "from": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": from_kind,
                    "namespace": from_namespace,
                }
            ],
            "to": [to],
        },
    }


def svc(name: str = "web", namespace: str = INFRA, port: int = 8080) -> ServiceInfo:
    return ServiceInfo.from_api(
        service_json(name, namespace, ports=({"name": "http", "port": port, "targetPort": 3000},))
    )


_CERTIFICATES: dict[str, Certificate] = {}


def certificate(name: str = "example.com") -> Certificate:
    """A valid certificate for `name` (made once per name: key generation is slow)."""
    if name not in _CERTIFICATES:
        now = datetime.datetime.now(datetime.UTC)
        chain, key = self_signed((name,), now=now)
        _CERTIFICATES[name] = load_certificate(chain, key, source=name, now=now)
    return _CERTIFICATES[name]


def keyed(*objects: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}


def inputs(
    *,
    gateways: Sequence[Mapping[str, Any]] = (),
    routes: Sequence[Mapping[str, Any]] = (),
    grants: Sequence[Mapping[str, Any]] = (),
    classes: Sequence[Mapping[str, Any]] | None = None,
    services: Sequence[ServiceInfo] | None = None,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    now: str = NOW,
    **kwargs: Any,
) -> GatewayInputs:
    classes = classes if classes is not None else (gateway_class(),)
    services = services if services is not None else (svc(),)
    if namespaces is None:
        names = {INFRA, "backends", "apps"}
        namespaces = {n: {"kubernetes.io/metadata.name": n} for n in names}
    return GatewayInputs(
        controller_name=CONTROLLER,
        gateway_classes={c["metadata"]["name"]: c for c in classes},
        gateways=keyed(*gateways),
        http_routes=keyed(*routes),
        reference_grants=keyed(*grants),
        namespaces=namespaces,
        services={s.key: s for s in services},
        now=now,
        **kwargs,
    )
