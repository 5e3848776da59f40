"""Route conflicts: when two Services claim the same host and path prefix, the older one wins.

"Older" is the earlier creationTimestamp, then namespace/name for ties, so every replica of
the controller picks the same winner whatever order the cache lists Services in. The loser is
left out of the data plane and gets a Warning naming the winner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.annotations import Problem
from controller.objects import ANNOTATION_PREFIX, ServiceInfo
from proxy.routing import Route


@dataclass(frozen=True, slots=True)
class Claim:
    """A Service asking for a route."""

    service: ServiceInfo
    route: Route


@dataclass(frozen=True, slots=True)
class Resolution:
    winners: tuple[Claim, ...]
    # (losing Service, the problem to report on it)
    losers: tuple[tuple[ServiceInfo, Problem], ...]


def age_key(service: ServiceInfo) -> tuple[str, str, str]:
    """Sorts oldest first. RFC 3339 timestamps in UTC ("...Z", as the API writes them) sort
    as text; a missing one sorts last, since such an object cannot prove it is older."""
    return (service.created or "\uffff", service.namespace, service.name)


def resolve(claims: Iterable[Claim]) -> Resolution:
    by_route: dict[tuple[str | None, str], list[Claim]] = {}
    for claim in claims:
        by_route.setdefault((claim.route.host, claim.route.path_prefix), []).append(claim)
    winners: list[Claim] = []
    losers: list[tuple[ServiceInfo, Problem]] = []
    for (host, prefix), group in sorted(by_route.items(), key=lambda item: _route_sort(item[0])):
        group.sort(key=lambda c: age_key(c.service))
        winner, *rest = group
        winners.append(winner)
        for claim in rest:
            shown = f"host {host!r}, path prefix {prefix!r}" if host else f"path prefix {prefix!r}"
            reason = (
                f"route ({shown}) is already claimed by the older Service "
                f"{winner.service.namespace}/{winner.service.name}; this Service is not routed"
            )
            annotation = ANNOTATION_PREFIX + ("host" if host else "path-prefix")
            value = host if host else prefix
            losers.append(
                (claim.service, Problem(annotation, value, reason, True, "RouteConflict"))
            )
    return Resolution(tuple(winners), tuple(losers))


def _route_sort(key: tuple[str | None, str]) -> tuple[str, str]:
    return (key[0] or "", key[1])
