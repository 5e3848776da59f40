"""The graph in data-plane terms: one `ListenerSpec` per (Gateway, listener port) with the
routes of every rule attached there, and the Service backends those routes use.

Naming (distinct from the annotated mode's `namespace/name` upstreams, which pick their
port from an annotation: a backendRef names the port itself, and a Service can be both):
  upstream   `namespace/name:port`   (a Service name cannot contain ':', so no clash)
  listener   `gateway/namespace/name/port`

Per listener port of a Gateway, only the listeners that can be served take part (accepted,
not conflicted, certificates resolved); a port none of whose listeners can be served gets
no socket. Each attachment of a route contributes, for each hostname it serves there (or
any host), for each rule the data plane accepted, for each match, one `Route` whose `order`
is (route creationTimestamp, namespace/name, rule index, match index): the spec's tie-break
after the data plane's precedence. An HTTPS port serves the certificate of each listener
hostname by SNI, and by default that of the listener without a hostname (else the first).

Listener isolation (GatewayHTTPListenerIsolation): the listeners of one port share one
RouteTable, yet a request must be served only by the routes of the most specific listener
its host matches (exact > longest wildcard > no hostname), and answer 404 when none of them
matches. Two parts, both plain data for the data plane:
  - a route attached to listener L drops each hostname it would serve there that a more
    specific listener of the port covers (route host `abc.foo.example.com` through the
    listener without a hostname, when `abc.foo.example.com` has its own listener): those
    requests belong to that listener;
  - every listener hostname of the port is an `isolated_hosts` entry of the table: a request
    reaching that host's group gets that group's match or 404, never the routes of a less
    specific host (the host-less routes of the listener without a hostname).
What remains in a listener hostname's group is then only that listener's routes, and a
host group below it (a route hostname more specific than its listener) falls through only
to its own listener's group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from controller.gateway.graph import Graph, ListenerNode, RouteNode, RuleNode, ServicePortKey
from controller.gateway.hostnames import covers
from controller.gateway.memo import GatewayMemo
from controller.gateway.objects import Key
from controller.gateway.ports import GatewayPortKey
from proxy.listeners import ListenerSpec, TlsListenerConfig
from proxy.routing import Route, WeightedBackend, host_rank
from proxy.tls.certificate import Certificate
from proxy.tls.store import CertificateSet


def upstream_name(backend: ServicePortKey) -> str:
    namespace, name, port = backend
    return f"{namespace}/{name}:{port}"


def listener_name(gateway: Key, port: int) -> str:
    return f"gateway/{gateway[0]}/{gateway[1]}/{port}"


def translate(
    graph: Graph, internal_ports: Mapping[GatewayPortKey, int], *, memo: GatewayMemo
) -> tuple[tuple[ListenerSpec, ...], frozenset[ServicePortKey]]:
    """The listener specs, sorted by name, and every Service backend their routes use."""
    specs: list[ListenerSpec] = []
    backends: set[ServicePortKey] = set()
    # Each Gateway's routes, oldest first: a route is read only for the Gateways it names.
    by_gateway: dict[Key, list[RouteNode]] = defaultdict(list)
    for route_node in sorted(
        graph.routes.values(),
        key=lambda r: (r.route.meta.created, r.route.meta.namespace, r.route.meta.name),
    ):
        for gw in dict.fromkeys(p.gateway for p in route_node.parents if p.accepted.status):
            by_gateway[gw].append(route_node)
    for gw_key, node in sorted(graph.gateways.items()):
        by_port: dict[int, list[ListenerNode]] = defaultdict(list)
        for ln in node.listeners:
            if ln.servable:
                by_port[ln.listener.port].append(ln)
        for port, listeners in sorted(by_port.items()):
            internal = internal_ports.get((gw_key[0], gw_key[1], port))
            if internal is None:
                continue
            shadows = _more_specific(listeners)
            name = listener_name(gw_key, port)
            routes: dict[Route, None] = {}
            for route in by_gateway.get(gw_key, ()):
                for item in _routes(route, gw_key, shadows, backends, memo, name):
                    routes.setdefault(item, None)
            isolated = frozenset(
                ln.listener.hostname for ln in listeners if ln.listener.hostname is not None
            )
            tls = None
            if listeners[0].listener.protocol == "HTTPS":
                tls = TlsListenerConfig(_certificates(listeners))
            specs.append(
                ListenerSpec(
                    name=name,
                    port=internal,
                    routes=memo.table(name, tuple(routes), isolated_hosts=isolated),
                    tls=tls,
                    public_port=port,
                )
            )
    specs.sort(key=lambda s: s.name)
    return tuple(specs), frozenset(backends)


def _more_specific(listeners: list[ListenerNode]) -> dict[str, tuple[str, ...]]:
    """Per listener name of one port: the other listeners' hostnames more specific than its
    own. A route hostname one of them covers lies inside both listeners (an intersection
    with this one), so it is that more specific listener's, not this one's."""
    return {
        ln.listener.name: tuple(
            other.listener.hostname
            for other in listeners
            if other.listener.hostname is not None
            and host_rank(other.listener.hostname) < host_rank(ln.listener.hostname)
        )
        for ln in listeners
    }


def _routes(
    node: RouteNode,
    gw_key: Key,
    shadows: Mapping[str, tuple[str, ...]],
    backends: set[ServicePortKey],
    memo: GatewayMemo,
    listener: str,
) -> list[Route]:
    hosts: dict[str | None, None] = {}
    for parent in node.parents:
        if parent.gateway != gw_key or not parent.accepted.status:
            continue
        for attachment in parent.attachments:
            shadowing = shadows.get(attachment.listener)
            if shadowing is None:
                continue  # a listener of another port, or one that cannot be served
            for host in attachment.hostnames or (None,):
                if host is not None and any(covers(other, host) for other in shadowing):
                    continue  # isolation: a more specific listener's host
                hosts.setdefault(host, None)
    if not hosts:
        return []
    used = [
        (rule_index, rule)
        for rule_index, rule in enumerate(node.rules)
        if rule.compiled is not None
    ]
    for _, rule in used:
        if rule.compiled is not None and not rule.compiled.redirects:
            backends.update(
                b.service for b in rule.backends if b.service is not None and b.ref.weight > 0
            )
    # What the routes depend on besides the parse: hostnames here, resolved backends.
    signature = (tuple(hosts), tuple(tuple(b.service for b in rule.backends) for _, rule in used))
    meta = node.route.meta
    return memo.routes_of(
        (meta.namespace, meta.name, listener),
        node.route,
        signature,
        lambda: _make_routes(node, used, tuple(hosts), memo),
    )


def _make_routes(
    node: RouteNode,
    used: list[tuple[int, RuleNode]],
    hosts: tuple[str | None, ...],
    memo: GatewayMemo,
) -> list[Route]:
    meta = node.route.meta
    result: list[Route] = []
    for rule_index, rule in used:
        compiled = rule.compiled
        assert compiled is not None  # `used` holds compiled rules only
        weighted: tuple[WeightedBackend, ...] = ()
        if not compiled.redirects:
            weighted = tuple(
                WeightedBackend(
                    None if b.service is None else upstream_name(b.service), b.ref.weight
                )
                for b in rule.backends
            )
        for match_index, match in enumerate(compiled.matches):
            order = (meta.created, f"{meta.namespace}/{meta.name}", rule_index, match_index)
            for host in hosts:
                result.append(
                    memo.route(match, compiled.filters, host=host, backends=weighted, order=order)
                )
    return result


def _certificates(listeners: list[ListenerNode]) -> CertificateSet:
    by_name: dict[str, Certificate] = {}
    default: Certificate | None = None
    for ln in listeners:
        certificate = ln.certificate
        if certificate is None:
            continue  # cannot happen: `servable` needs a certificate
        if ln.listener.hostname is None:
            # Two listeners without a hostname on one port conflict, so there is one at most.
            default = certificate
        else:
            by_name.setdefault(ln.listener.hostname, certificate)
    if default is None:
        default = next(ln.certificate for ln in listeners if ln.certificate is not None)
    return CertificateSet.build(default, by_name)
