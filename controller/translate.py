"""Pure translation: a Service, its EndpointSlices and its parsed spec -> an UpstreamSpec and a
Route. No I/O, no clock, no state: the same input always gives an equal output, which is what
lets the sync skip pushing an unchanged snapshot.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from controller.annotations import ServiceSpec
from controller.objects import ServiceInfo, SliceInfo
from proxy.model import Endpoint, UpstreamSpec
from proxy.routing import Route

IP_FAMILIES = ("IPv4", "IPv6")  # slice addressTypes we can dial; FQDN slices are skipped


def upstream_name(service: ServiceInfo) -> str:
    """An upstream is named after its Service: `namespace/name`."""
    return f"{service.namespace}/{service.name}"


def translate(
    service: ServiceInfo, slices: Sequence[SliceInfo], spec: ServiceSpec
) -> tuple[UpstreamSpec, Route]:
    """The whole data-plane view of one enrolled Service."""
    name = upstream_name(service)
    upstream = UpstreamSpec(
        name=name,
        endpoints=endpoints_of(service, slices, port_name=spec.port.name),
        strategy=spec.strategy,
        hash_on=spec.hash_on,
        health=spec.health,
        outlier=spec.outlier,
    )
    return upstream, Route(upstream=name, host=spec.host, path_prefix=spec.path_prefix)


def endpoints_of(
    service: ServiceInfo, slices: Iterable[SliceInfo], *, port_name: str
) -> tuple[Endpoint, ...]:
    """Merge the Service's slices into one de-duplicated, sorted tuple of endpoints.

    - The target port comes from each slice's port named like the Service port (slices of one
      Service may differ, e.g. during a rollout that renames a container port), so a slice
      without that port contributes nothing.
    - Ready endpoints take traffic. Serving but not ready ones (typically terminating) become
      `ready=False`, which the pool uses only when no ready endpoint is healthy. Endpoints
      that are not serving are left out.
    - Only the first address of an endpoint is used: the API calls them fungible, and using
      all would give a pod with several addresses several shares.
    - An address reported twice (an endpoint moving between slices) appears once, ready if
      any report says ready.
    """
    family = _family(service, slices)
    merged: dict[tuple[str, int], bool] = {}
    for slice_ in slices:
        if slice_.address_type != family:
            continue
        port = next(
            (p.port for p in slice_.ports if p.name == port_name and p.protocol.upper() == "TCP"),
            None,
        )
        if port is None or not 0 < port < 65536:
            continue
        for endpoint in slice_.endpoints:
            if not endpoint.addresses or not (endpoint.ready or endpoint.serving):
                continue
            host = _normalize_ip(endpoint.addresses[0])
            if host is None:
                continue
            key = (host, port)
            merged[key] = merged.get(key, False) or endpoint.ready
    ordered = sorted(merged.items(), key=lambda item: (_ip_sort_key(item[0][0]), item[0][1]))
    return tuple(Endpoint(host, port, ready=ready) for (host, port), ready in ordered)


def _family(service: ServiceInfo, slices: Iterable[SliceInfo]) -> str | None:
    """The address family to use. A dual-stack Service has a slice set per family naming the
    same pods: use one family (the Service's primary one when it has slices), not both, so no
    pod is counted twice."""
    present = {s.address_type for s in slices if s.address_type in IP_FAMILIES}
    for family in (*service.ip_families, *IP_FAMILIES):
        if family in present:
            return family
    return None


def _normalize_ip(text: str) -> str | None:
    """The canonical text of an IP address (so `fd00::0001` and `fd00::1` are one endpoint), or
    None for anything that is not an IP address."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        return None


def _ip_sort_key(host: str) -> tuple[int, int]:
    address = ipaddress.ip_address(host)
    return (address.version, int(address))
