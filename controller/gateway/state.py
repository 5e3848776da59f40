"""The Gateway API's whole desired state, from the cache alone: `build(GatewayInputs)`.

Pure and deterministic: no I/O, no clock (the caller passes `now`, used only as the
lastTransitionTime of a condition that changed), so two builds of equal inputs are equal and
the sync pushes or writes nothing when nothing changed. The steps:

  parse (objects.py; a malformed object gets a status naming the field where we can tell it
  is ours, and an entry in `errors`) -> our GatewayClasses (controllerName) -> our Gateways
  (their class is ours and accepted) -> graph (graph.py) -> internal ports (ports.py) ->
  listener specs and backends (translate.py) -> statuses (status.py) -> the per-Gateway
  Services to own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controller.gateway import graph as graph_module
from controller.gateway import ports as ports_module
from controller.gateway import status as status_module
from controller.gateway.fields import GatewayObjectError
from controller.gateway.graph import SUPPORTED_PROTOCOLS, SecretVerdict, ServicePortKey, Verdict
from controller.gateway.httproute import HTTPRoute, parse_parent_refs
from controller.gateway.memo import GatewayMemo
from controller.gateway.objects import (
    GATEWAY_GROUP,
    Gateway,
    GatewayClass,
    Key,
    ReferenceGrant,
)
from controller.gateway.ports import PortRange
from controller.gateway.translate import translate
from controller.objects import ServiceInfo
from proxy.listeners import ListenerSpec

Raw = Mapping[str, Any]
StatusKey = tuple[str, str, str]  # (kind, namespace, name); namespace "" for a GatewayClass
GATEWAY_NAMESPACE_LABEL = "gateway.kubeferry.io/namespace"
GATEWAY_NAME_LABEL = "gateway.kubeferry.io/name"


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class GatewayInputs:
    """What `build` reads, all from the cache (and the data plane's bound ports).

    `tls_secrets`: every Secret a Gateway names that the cache holds, as a certificate that
    passed controller/certificates.py's checks or the reason it failed (absent: not found).
    `addresses`: the ClusterIP of each Gateway's own Service, once it has one.
    `bundle_version`: the CRDs' `gateway.networking.k8s.io/bundle-version` when known (the
    GatewayClass then gets a SupportedVersion condition)."""

    controller_name: str
    gateway_classes: Mapping[str, Raw] = field(default_factory=_frozen)
    gateways: Mapping[Key, Raw] = field(default_factory=_frozen)
    http_routes: Mapping[Key, Raw] = field(default_factory=_frozen)
    reference_grants: Mapping[Key, Raw] = field(default_factory=_frozen)
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=_frozen)
    services: Mapping[Key, ServiceInfo] = field(default_factory=_frozen)
    tls_secrets: Mapping[Key, SecretVerdict] = field(default_factory=_frozen)
    addresses: Mapping[Key, str] = field(default_factory=_frozen)
    bound_ports: frozenset[int] = frozenset()
    port_range: PortRange = field(default_factory=PortRange)
    now: str = "1970-01-01T00:00:00Z"
    bundle_version: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayServicePort:
    name: str  # gw-<listener port>
    port: int  # the listener's port
    target_port: int  # the internal port the data plane listens on


@dataclass(frozen=True, slots=True)
class GatewayService:
    """The Service to own for one Gateway, in the controller's namespace (type ClusterIP,
    selector: the kubeferry pods; labels GATEWAY_NAMESPACE_LABEL / GATEWAY_NAME_LABEL)."""

    name: str
    gateway: Key
    ports: tuple[GatewayServicePort, ...]


@dataclass(frozen=True, slots=True)
class GatewayState:
    """Everything the Gateway side of the sync pushes and writes."""

    statuses: Mapping[StatusKey, Mapping[str, Any]] = field(default_factory=_frozen)
    listeners: tuple[ListenerSpec, ...] = ()
    backends: frozenset[ServicePortKey] = frozenset()
    gateway_services: Mapping[Key, GatewayService] = field(default_factory=_frozen)
    secrets: frozenset[Key] = frozenset()  # the TLS Secrets our Gateways may name: watch them
    errors: tuple[str, ...] = ()  # malformed objects, "Kind ns/name: field: problem"


def service_name(namespace: str, name: str) -> str:
    """`kf-gw-<first 8 hex of sha256("ns/name")>`, as the design names a Gateway's Service."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()
    return f"kf-gw-{digest[:8]}"


def build(inputs: GatewayInputs, *, memo: GatewayMemo | None = None) -> GatewayState:
    """The whole desired state. `memo` (kept by the caller between builds) only saves work:
    the result equals a build without one."""
    memo = memo if memo is not None else GatewayMemo()
    memo.begin()
    state = _build(inputs, memo)
    memo.end()
    return state


def _build(inputs: GatewayInputs, memo: GatewayMemo) -> GatewayState:
    errors: list[str] = []
    statuses: dict[StatusKey, Mapping[str, Any]] = {}
    ours = inputs.controller_name
    now = inputs.now

    # GatewayClasses: ours by controllerName; an accepted one makes its Gateways ours.
    accepted_classes: set[str] = set()
    for name, raw in sorted(inputs.gateway_classes.items()):
        if _field(raw, "spec", "controllerName") != ours:
            continue
        try:
            gateway_class = memo.parse("GatewayClass", name, raw, GatewayClass.parse)
        except GatewayObjectError as error:
            errors.append(f"GatewayClass {name}: {error}")
            continue
        status = status_module.gateway_class_status(
            gateway_class, raw, now=now, bundle_version=inputs.bundle_version
        )
        statuses[("GatewayClass", "", name)] = status
        if not gateway_class.has_parameters:
            accepted_classes.add(name)

    gateways: dict[Key, Gateway] = {}
    raw_gateways: dict[Key, Raw] = {}
    for key, raw in sorted(inputs.gateways.items()):
        if _field(raw, "spec", "gatewayClassName") not in accepted_classes:
            continue
        try:
            gateways[key] = memo.parse("Gateway", key, raw, Gateway.parse)
            raw_gateways[key] = raw
        except GatewayObjectError as error:
            errors.append(f"Gateway {key[0]}/{key[1]}: {error}")
            statuses[("Gateway", *key)] = _invalid_gateway_status(raw, error, now)

    routes: dict[Key, HTTPRoute] = {}
    for key, raw in sorted(inputs.http_routes.items()):
        try:
            routes[key] = memo.parse("HTTPRoute", key, raw, HTTPRoute.parse)
        except GatewayObjectError as error:
            invalid = _invalid_route_status(key, raw, error, gateways, ours, now)
            if invalid is not None:
                errors.append(f"HTTPRoute {key[0]}/{key[1]}: {error}")
                statuses[("HTTPRoute", *key)] = invalid

    grants: list[ReferenceGrant] = []
    for key, raw in sorted(inputs.reference_grants.items()):
        try:
            grants.append(memo.parse("ReferenceGrant", key, raw, ReferenceGrant.parse))
        except GatewayObjectError as error:
            # Ignored: a grant only ever permits, so without it less is allowed, never more.
            errors.append(f"ReferenceGrant {key[0]}/{key[1]}: {error}")

    world = graph_module.World(
        gateways=gateways,
        routes=routes,
        grants=grants,
        namespaces=inputs.namespaces,
        services=inputs.services,
        tls_secrets=inputs.tls_secrets,
        compile=memo.compile,
    )
    graph = graph_module.build_graph(world)

    assigned = ports_module.assign(
        (
            ports_module.GatewayPorts(
                gw.meta.namespace,
                gw.meta.name,
                gw.meta.created,
                tuple(ln.port for ln in gw.listeners if ln.protocol in SUPPORTED_PROTOCOLS),
            )
            for gw in gateways.values()
            if not gw.has_addresses
        ),
        inputs.port_range,
    )
    listeners, backends = translate(graph, assigned, memo=memo)

    services: dict[Key, GatewayService] = {}
    secrets: set[Key] = set()
    internal_by_gateway: dict[Key, dict[int, int]] = {}
    for (namespace, name, port), value in assigned.items():
        internal_by_gateway.setdefault((namespace, name), {})[port] = value
    for key, node in graph.gateways.items():
        internal = internal_by_gateway.get(key, {})
        statuses[("Gateway", *key)] = status_module.gateway_status(
            node,
            raw_gateways[key],
            attached=graph.attached,
            internal_ports=internal,
            bound_ports=inputs.bound_ports,
            address=inputs.addresses.get(key),
            now=now,
        )
        if internal:
            services[key] = GatewayService(
                service_name(*key),
                key,
                tuple(
                    GatewayServicePort(f"gw-{port}", port, internal[port])
                    for port in sorted(internal)
                ),
            )
        secrets.update(graph_module.certificate_refs(node.gateway, grants))

    for key, raw in sorted(inputs.http_routes.items()):
        if key not in routes:
            continue
        route_node = graph.routes.get(key)
        if route_node is None and not status_module.has_our_parents(raw, ours):
            continue
        statuses[("HTTPRoute", *key)] = status_module.route_status(
            route_node, raw, controller_name=ours, now=now
        )

    return GatewayState(
        statuses=MappingProxyType(statuses),
        listeners=listeners,
        backends=backends,
        gateway_services=MappingProxyType(services),
        secrets=frozenset(secrets),
        errors=tuple(errors),
    )


def wanted_secrets(inputs: GatewayInputs) -> frozenset[Key]:
    """The TLS Secrets our Gateways' HTTPS listeners name and may read (ReferenceGrants
    considered), from the same inputs as `build` but without `tls_secrets`: what to watch
    and validate before building, so a first build does not see them all as missing."""
    ours = inputs.controller_name
    classes = {
        name
        for name, raw in inputs.gateway_classes.items()
        if _field(raw, "spec", "controllerName") == ours
        and _field(raw, "spec", "parametersRef") is None
    }
    grants = []
    for raw in inputs.reference_grants.values():
        try:
            grants.append(ReferenceGrant.parse(raw))
        except GatewayObjectError:
            continue
    result: set[Key] = set()
    for raw in inputs.gateways.values():
        if _field(raw, "spec", "gatewayClassName") not in classes:
            continue
        try:
            result.update(graph_module.certificate_refs(Gateway.parse(raw), grants))
        except GatewayObjectError:
            continue
    return frozenset(result)


def _field(raw: Raw, *path: str) -> Any:
    value: Any = raw
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def _generation(raw: Raw) -> int:
    generation = _field(raw, "metadata", "generation")
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0


def _invalid_gateway_status(raw: Raw, error: GatewayObjectError, now: str) -> dict[str, Any]:
    existing = _field(raw, "status", "conditions")
    previous = status_module.previous_conditions(existing)
    reason = "ListenersNotValid" if error.path.startswith("spec.listeners") else "Invalid"
    message = str(error)
    items = (
        ("Accepted", Verdict(False, reason, message)),
        ("Programmed", Verdict(False, "Invalid", message)),
    )
    return {
        "addresses": [],
        "conditions": [
            status_module.condition(t, v, generation=_generation(raw), previous=previous, now=now)
            for t, v in items
        ],
        "listeners": [],
    }


def _invalid_route_status(
    key: Key,
    raw: Raw,
    error: GatewayObjectError,
    gateways: Mapping[Key, Gateway],
    controller_name: str,
    now: str,
) -> dict[str, Any] | None:
    """Accepted=False UnsupportedValue on each parentRef of ours, when the parentRefs can be
    read; None when none is ours (or they cannot be read: then whose it is is unknown)."""
    try:
        refs = parse_parent_refs(raw)
    except GatewayObjectError:
        return None
    verdict = Verdict(False, "UnsupportedValue", str(error))
    parents = [
        (ref.raw, verdict)
        for ref in refs
        if ref.group == GATEWAY_GROUP
        and ref.kind == "Gateway"
        and (ref.namespace or key[0], ref.name) in gateways
    ]
    if not parents and not status_module.has_our_parents(raw, controller_name):
        return None
    return status_module.invalid_route_status(
        raw, parents, generation=_generation(raw), controller_name=controller_name, now=now
    )
