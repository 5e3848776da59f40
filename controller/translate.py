"""Pure translation: a Service, its EndpointSlices and its parsed spec -> an UpstreamSpec and a
Route. No I/O, no clock, no state: the same input always gives an equal output, which is what
lets the sync skip pushing an unchanged snapshot.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from controller.annotations import ServiceSpec
from controller.objects import ServiceInfo, SliceInfo
from proxy.model import Endpoint, UpstreamSpec
from proxy.routing import Route

IP_FAMILIES = ("IPv4", "IPv6")  # slice addressTypes we can dial; FQDN slices are skipped

SortKey = tuple[int, int, int]  # (IP version, address as int, port): numeric order
SliceEntries = tuple[tuple[SortKey, Endpoint], ...]
PerSlice = Callable[[SliceInfo, str], SliceEntries]


def upstream_name(service: ServiceInfo) -> str:
    """An upstream is named after its Service: `namespace/name`."""
    return f"{service.namespace}/{service.name}"


def translate(
    service: ServiceInfo,
    slices: Sequence[SliceInfo],
    spec: ServiceSpec,
    *,
    per_slice: PerSlice | None = None,
) -> tuple[UpstreamSpec, Route]:
    """The whole data-plane view of one enrolled Service."""
    name = upstream_name(service)
    upstream = UpstreamSpec(
        name=name,
        endpoints=endpoints_of(service, slices, port_name=spec.port.name, per_slice=per_slice),
        strategy=spec.strategy,
        hash_on=spec.hash_on,
        health=spec.health,
        outlier=spec.outlier,
    )
    route = Route(
        upstream=name,
        host=spec.host,
        path_prefix=spec.path_prefix,
        https_redirect=spec.https_redirect,
        hsts_max_age_seconds=spec.hsts_max_age_seconds,
    )
    return upstream, route


def endpoints_of(
    service: ServiceInfo,
    slices: Iterable[SliceInfo],
    *,
    port_name: str,
    per_slice: PerSlice | None = None,
) -> tuple[Endpoint, ...]:
    """Merge the Service's slices into one de-duplicated tuple of endpoints, in address order.

    - Only slices of one address family count (see `_family`); FQDN slices never do.
    - An address reported twice (an endpoint moving between slices) appears once, ready if
      any report says ready.

    `per_slice` defaults to `slice_endpoints`; the sync passes a memoized one so that a change
    to one slice of a large Service does not re-translate the others.
    """
    translate_slice = per_slice or slice_endpoints
    slices = tuple(slices)
    family = _family(service, slices)
    merged: dict[str, tuple[SortKey, Endpoint]] = {}
    for slice_ in slices:
        if slice_.address_type != family:
            continue
        for sort_key, endpoint in translate_slice(slice_, port_name):
            seen = merged.get(endpoint.key)
            if seen is None or (endpoint.ready and not seen[1].ready):
                merged[endpoint.key] = (sort_key, endpoint)
    return tuple(endpoint for _, endpoint in sorted(merged.values(), key=lambda item: item[0]))


def slice_endpoints(slice_: SliceInfo, port_name: str) -> SliceEntries:
    """One slice's endpoints on the port named `port_name`, each with its sort key.

    - The target port comes from the slice's port named like the Service port (slices of one
      Service may differ, e.g. during a rollout that renames a container port), so a slice
      without that port contributes nothing.
    - Ready endpoints take traffic. Serving but not ready ones (typically terminating) become
      `ready=False`, which the pool uses only when no ready endpoint is healthy. Endpoints
      that are not serving are left out.
    - Only the first address of an endpoint is used: the API calls them fungible, and using
      all would give a pod with several addresses several shares.
    """
    if slice_.address_type not in IP_FAMILIES:
        return ()
    port = next(
        (p.port for p in slice_.ports if p.name == port_name and p.protocol.upper() == "TCP"),
        None,
    )
    if port is None or not 0 < port < 65536:
        return ()
    entries: list[tuple[SortKey, Endpoint]] = []
    for endpoint in slice_.endpoints:
        if not endpoint.addresses or not (endpoint.ready or endpoint.serving):
            continue
        parsed = parse_address(endpoint.addresses[0].strip())
        if parsed is None:
            continue  # not an IP address: nothing we can dial
        version, number, text = parsed
        entries.append(((version, number, port), Endpoint(text, port, ready=endpoint.ready)))
    return tuple(entries)


def parse_address(text: str) -> tuple[int, int, str] | None:
    """(IP version, address as int, canonical text) of an IP address, or None if `text` is
    not one. The text is canonical (`compressed`), so `fd00::0001` and `fd00::1` are one
    endpoint.

    Exactly `ipaddress.ip_address`'s verdicts, with a fast path for the dotted quads a cluster
    is made of: a first sync of 100,000 endpoints spent most of its translation time there."""
    octets = text.split(".")
    if len(octets) == 4 and all(
        0 < len(o) <= 3 and o.isascii() and o.isdigit() and (o[0] != "0" or o == "0")
        for o in octets
    ):
        a, b, c, d = (int(o) for o in octets)
        if a <= 255 and b <= 255 and c <= 255 and d <= 255:
            return 4, (a << 24) | (b << 16) | (c << 8) | d, text
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address.version, int(address), address.compressed


def _family(service: ServiceInfo, slices: Iterable[SliceInfo]) -> str | None:
    """The address family to use. A dual-stack Service has a slice set per family naming the
    same pods: use one family (the Service's primary one when it has slices), not both, so no
    pod is counted twice."""
    present = {s.address_type for s in slices if s.address_type in IP_FAMILIES}
    for family in (*service.ip_families, *IP_FAMILIES):
        if family in present:
            return family
    return None
