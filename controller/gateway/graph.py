"""The attachment graph: which listeners are valid, which routes attach where, and which
references resolve. Pure: parsed objects in, frozen verdicts out; status.py turns the
verdicts into conditions and translate.py the attachments into routes.

Rules (Gateway API v1.6, standard channel), in the order they are applied:

Listeners (per Gateway)
  - protocol HTTP or HTTPS, else Accepted=False UnsupportedProtocol, no supportedKinds, no
    routes; HTTPS needs `tls.mode: Terminate` (else Accepted=False UnsupportedValue).
  - allowedRoutes.kinds: only HTTPRoute (gateway.networking.k8s.io) is supported; any other
    kind is left out of supportedKinds and gives ResolvedRefs=False InvalidRouteKinds.
  - certificateRefs: core Secrets only (else InvalidCertificateRef); in another namespace
    only with a ReferenceGrant from this Gateway's namespace (else RefNotPermitted); the
    Secret must exist and hold a valid certificate (else InvalidCertificateRef).
  - conflicts, among supported listeners of one port: two protocols -> every listener of the
    port is Conflicted=True ProtocolConflict; two listeners with one hostname (or both
    without) -> both Conflicted=True HostnameConflict. Conflicted listeners are not served.
Routes (per parentRef of kind Gateway naming one of our Gateways; others are not ours)
  - sectionName/port narrow the listeners; none left -> Accepted=False NoMatchingParent;
  - listeners that take routes (supported protocol, allowedRoutes namespaces Same/All/
    Selector and kinds) -> none left: Accepted=False NotAllowedByListeners;
  - hostname intersection (hostnames.py) -> none left: NoMatchingListenerHostname.
  A listener whose certificate is broken still counts the routes that attach to it
  (attachedRoutes), as the suite checks.
Backends (per backendRef): core Service only (else InvalidKind), another namespace only with
  a ReferenceGrant from HTTPRoutes of the route's namespace (else RefNotPermitted), the
  Service and its port must exist (else BackendNotFound). An invalid backend keeps its share
  of the rule's weight and that share answers 500, as the spec requires.
Rules with a filter we do not implement (RequestMirror, ExtensionRef, CORS, ...), filters
  on a backendRef, or values the data plane refuses (rules.py) are dropped: the route reports
  PartiallyInvalid=True UnsupportedValue, or Accepted=False UnsupportedValue when no rule is
  left.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from controller.gateway import hostnames
from controller.gateway.httproute import (
    SUPPORTED_FILTERS,
    BackendRef,
    HTTPRoute,
    ParentRef,
    RouteRule,
)
from controller.gateway.objects import (
    GATEWAY_GROUP,
    HTTP_ROUTE_KIND,
    Gateway,
    Key,
    Listener,
    ReferenceGrant,
    RouteGroupKind,
)
from controller.gateway.references import GrantIndex, listener_certificates, resolve_backend
from controller.gateway.references import SecretVerdict as SecretVerdict
from controller.gateway.references import ServicePortKey as ServicePortKey
from controller.gateway.references import Verdict as Verdict
from controller.gateway.references import certificate_refs as certificate_refs
from controller.gateway.rules import CompiledRule, compile_rule
from controller.objects import ServiceInfo
from proxy.tls.certificate import Certificate

SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")


@dataclass(frozen=True, slots=True)
class ListenerNode:
    listener: Listener
    supported_kinds: tuple[RouteGroupKind, ...]
    accepted: Verdict
    resolved_refs: Verdict
    conflicted: Verdict
    certificate: Certificate | None = None
    # Certificates resolved (or none needed): the listener can be served.
    certificates_ok: bool = True

    @property
    def takes_routes(self) -> bool:
        return self.accepted.status and HTTP_ROUTE_KIND in self.supported_kinds

    @property
    def servable(self) -> bool:
        return self.accepted.status and not self.conflicted.status and self.certificates_ok


@dataclass(frozen=True, slots=True)
class GatewayNode:
    gateway: Gateway
    listeners: tuple[ListenerNode, ...]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A route on one listener, serving `hostnames` there (`()`: every host)."""

    listener: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParentNode:
    ref: ParentRef
    gateway: Key
    accepted: Verdict
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class BackendNode:
    ref: BackendRef
    service: ServicePortKey | None  # None: invalid, see `problem`
    problem: Verdict | None = None


@dataclass(frozen=True, slots=True)
class RuleNode:
    rule: RouteRule
    backends: tuple[BackendNode, ...]
    compiled: CompiledRule | None  # None: the rule is dropped, see `unsupported`
    unsupported: str | None = None


@dataclass(frozen=True, slots=True)
class RouteNode:
    route: HTTPRoute
    parents: tuple[ParentNode, ...]  # only the parentRefs of our Gateways, deduplicated
    rules: tuple[RuleNode, ...]
    resolved_refs: Verdict
    partially_invalid: Verdict | None = None


@dataclass(frozen=True, slots=True)
class Graph:
    gateways: Mapping[Key, GatewayNode]
    routes: Mapping[Key, RouteNode]
    # (Gateway key, listener name) -> number of routes attached
    attached: Mapping[tuple[Key, str], int]


@dataclass(frozen=True, slots=True)
class World:
    """Everything the graph is computed from, parsed. `gateways` holds our Gateways only."""

    gateways: Mapping[Key, Gateway]
    routes: Mapping[Key, HTTPRoute]
    grants: Sequence[ReferenceGrant]
    namespaces: Mapping[str, Mapping[str, str]]
    services: Mapping[Key, ServiceInfo]
    tls_secrets: Mapping[Key, SecretVerdict]
    # rules.compile_rule, or a memo of it (controller.gateway.memo)
    compile: Callable[[RouteRule], CompiledRule] = compile_rule


def build_graph(world: World) -> Graph:
    grants = GrantIndex(world.grants)
    gateways = {key: _gateway_node(gw, world, grants) for key, gw in sorted(world.gateways.items())}
    routes: dict[Key, RouteNode] = {}
    attached: dict[tuple[Key, str], int] = defaultdict(int)
    for key, route in sorted(world.routes.items()):
        node = _route_node(route, gateways, world, grants)
        if node is None:
            continue
        routes[key] = node
        seen: set[tuple[Key, str]] = set()
        for parent in node.parents:
            for attachment in parent.attachments:
                seen.add((parent.gateway, attachment.listener))
        for item in seen:
            attached[item] += 1
    return Graph(gateways, routes, dict(attached))


# -- listeners -----------------------------------------------------------------------------

_OK_ACCEPTED = Verdict(True, "Accepted")
_OK_RESOLVED = Verdict(True, "ResolvedRefs")
_NO_CONFLICT = Verdict(False, "NoConflicts")


def _gateway_node(gateway: Gateway, world: World, grants: GrantIndex) -> GatewayNode:
    conflicts = _conflicts(gateway.listeners)
    nodes = tuple(
        _listener_node(gateway, listener, conflicts.get(listener.name), world, grants)
        for listener in gateway.listeners
    )
    return GatewayNode(gateway, nodes)


def _conflicts(listeners: Sequence[Listener]) -> dict[str, Verdict]:
    by_port: dict[int, list[Listener]] = defaultdict(list)
    for listener in listeners:
        if listener.protocol in SUPPORTED_PROTOCOLS:
            by_port[listener.port].append(listener)
    result: dict[str, Verdict] = {}
    for port, group in by_port.items():
        protocols = sorted({listener.protocol for listener in group})
        if len(protocols) > 1:
            message = f"port {port} is used by listeners of protocols {', '.join(protocols)}"
            for listener in group:
                result[listener.name] = Verdict(True, "ProtocolConflict", message)
            continue
        by_host: dict[str, list[Listener]] = defaultdict(list)
        for listener in group:
            by_host[listener.hostname or ""].append(listener)
        for host, same in by_host.items():
            if len(same) > 1:
                names = ", ".join(listener.name for listener in same)
                message = f"listeners {names} share port {port} and hostname {host or '(any)'}"
                for listener in same:
                    result[listener.name] = Verdict(True, "HostnameConflict", message)
    return result


def _listener_node(
    gateway: Gateway,
    listener: Listener,
    conflict: Verdict | None,
    world: World,
    grants: GrantIndex,
) -> ListenerNode:
    if listener.protocol not in SUPPORTED_PROTOCOLS:
        return ListenerNode(
            listener,
            (),
            Verdict(
                False,
                "UnsupportedProtocol",
                f"protocol {listener.protocol} is not supported (HTTP and HTTPS are)",
            ),
            _OK_RESOLVED,
            _NO_CONFLICT,
            certificates_ok=False,
        )
    accepted = _OK_ACCEPTED
    if (
        listener.protocol == "HTTPS"
        and listener.tls is not None
        and listener.tls.mode != "Terminate"
    ):
        accepted = Verdict(
            False,
            "UnsupportedValue",
            f"tls.mode {listener.tls.mode} is not supported on HTTPS (Terminate is)",
        )
    requested = listener.allowed.kinds
    if requested is None:
        supported: tuple[RouteGroupKind, ...] = (HTTP_ROUTE_KIND,)
        bad_kinds: list[RouteGroupKind] = []
    else:
        supported = tuple(dict.fromkeys(k for k in requested if k == HTTP_ROUTE_KIND))
        bad_kinds = [k for k in requested if k != HTTP_ROUTE_KIND]
    problems: list[Verdict] = []
    if bad_kinds:
        names = ", ".join(f"{k.group}/{k.kind}" for k in bad_kinds)
        problems.append(Verdict(False, "InvalidRouteKinds", f"route kinds not supported: {names}"))
    certificate: Certificate | None = None
    certificates_ok = True
    if listener.protocol == "HTTPS":
        certificate, cert_problems = listener_certificates(
            gateway, listener, world.tls_secrets, grants
        )
        certificates_ok = certificate is not None and not cert_problems
        problems.extend(cert_problems)
    resolved = _OK_RESOLVED
    if problems:
        resolved = Verdict(False, problems[0].reason, "; ".join(p.message for p in problems))
    return ListenerNode(
        listener,
        supported,
        accepted,
        resolved,
        conflict or _NO_CONFLICT,
        certificate,
        certificates_ok,
    )


# -- routes --------------------------------------------------------------------------------


def _route_node(
    route: HTTPRoute,
    gateways: Mapping[Key, GatewayNode],
    world: World,
    grants: GrantIndex,
) -> RouteNode | None:
    """None when no parentRef names one of our Gateways (the route is not ours to report)."""
    rules = tuple(_rule_node(route, rule, world, grants) for rule in route.rules)
    valid_rules = [r for r in rules if r.unsupported is None]
    partially: Verdict | None = None
    all_dropped: Verdict | None = None
    dropped = [f"rules[{i}]: {r.unsupported}" for i, r in enumerate(rules) if r.unsupported]
    if dropped and valid_rules:
        partially = Verdict(True, "UnsupportedValue", "dropped " + "; ".join(dropped))
    elif dropped:
        all_dropped = Verdict(False, "UnsupportedValue", "; ".join(dropped))

    parents: list[ParentNode] = []
    seen: set[tuple[object, ...]] = set()
    for ref in route.parent_refs:
        if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
            continue
        gw_key = (ref.namespace or route.meta.namespace, ref.name)
        node = gateways.get(gw_key)
        if node is None:
            continue
        identity = (gw_key, ref.section_name, ref.port)
        if identity in seen:
            continue
        seen.add(identity)
        parent = _attach(route, ref, gw_key, node, world.namespaces)
        if all_dropped is not None and parent.accepted.status:
            parent = ParentNode(ref, gw_key, all_dropped)
        parents.append(parent)
    if not parents:
        return None

    problems = [b.problem for r in valid_rules for b in r.backends if b.problem is not None]
    resolved = _OK_RESOLVED
    if problems:
        resolved = Verdict(False, problems[0].reason, "; ".join(p.message for p in problems))
    return RouteNode(route, tuple(parents), rules, resolved, partially)


def _attach(
    route: HTTPRoute,
    ref: ParentRef,
    gw_key: Key,
    node: GatewayNode,
    namespaces: Mapping[str, Mapping[str, str]],
) -> ParentNode:
    candidates = [
        ln
        for ln in node.listeners
        if (ref.section_name is None or ln.listener.name == ref.section_name)
        and (ref.port is None or ln.listener.port == ref.port)
    ]
    if not candidates:
        what = []
        if ref.section_name is not None:
            what.append(f"sectionName {ref.section_name}")
        if ref.port is not None:
            what.append(f"port {ref.port}")
        return ParentNode(
            ref,
            gw_key,
            Verdict(
                False,
                "NoMatchingParent",
                f"Gateway {gw_key[0]}/{gw_key[1]} has no listener with {' and '.join(what)}",
            ),
        )
    allowed = [
        ln
        for ln in candidates
        if ln.takes_routes
        and _allows(ln.listener, node.gateway.meta.namespace, route.meta.namespace, namespaces)
    ]
    if not allowed:
        return ParentNode(
            ref,
            gw_key,
            Verdict(
                False,
                "NotAllowedByListeners",
                f"no listener of Gateway {gw_key[0]}/{gw_key[1]} takes HTTPRoutes from "
                f"namespace {route.meta.namespace} (allowedRoutes namespaces and kinds, "
                "protocol HTTP or HTTPS)",
            ),
        )
    attachments = []
    for ln in allowed:
        hosts = hostnames.intersect(ln.listener.hostname, route.hostnames)
        if hosts is not None:
            attachments.append(Attachment(ln.listener.name, hosts))
    if not attachments:
        return ParentNode(
            ref,
            gw_key,
            Verdict(
                False,
                "NoMatchingListenerHostname",
                "no listener hostname matches the route's hostnames",
            ),
        )
    return ParentNode(ref, gw_key, Verdict(True, "Accepted"), tuple(attachments))


def _allows(
    listener: Listener,
    gateway_namespace: str,
    route_namespace: str,
    namespaces: Mapping[str, Mapping[str, str]],
) -> bool:
    allowed = listener.allowed
    if allowed.from_ == "All":
        return True
    if allowed.from_ == "Same":
        return route_namespace == gateway_namespace
    labels = namespaces.get(route_namespace)
    if labels is None:
        return False  # the namespace is not (yet) in the cache: its labels are unknown
    return allowed.selector is not None and allowed.selector.matches(labels)


def _rule_node(route: HTTPRoute, rule: RouteRule, world: World, grants: GrantIndex) -> RuleNode:
    unsupported = _unsupported(rule)
    compiled: CompiledRule | None = None
    if unsupported is None:
        try:
            compiled = world.compile(rule)
        except ValueError as error:
            unsupported = str(error)
    backends = tuple(
        BackendNode(ref, *resolve_backend(route.meta.namespace, ref, world.services, grants))
        for ref in rule.backend_refs
    )
    return RuleNode(rule, backends, compiled, unsupported)


def _unsupported(rule: RouteRule) -> str | None:
    kinds = [f.type for f in rule.filters]
    unknown = sorted({k for k in kinds if k not in SUPPORTED_FILTERS})
    if unknown:
        return f"filter {', '.join(unknown)} is not supported"
    if "RequestRedirect" in kinds and "URLRewrite" in kinds:
        return "RequestRedirect and URLRewrite cannot be combined"
    if any(ref.has_filters for ref in rule.backend_refs):
        return "filters on backendRefs are not supported"
    return None
