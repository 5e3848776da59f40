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


RouteKey = tuple[str | None, str]  # (host, path prefix): what two claims must not share


def route_key(route: Route) -> RouteKey:
    return (route.host, route.path_prefix)


def resolve(claims: Iterable[Claim]) -> Resolution:
    by_route: dict[RouteKey, list[Claim]] = {}
    for claim in claims:
        by_route.setdefault(route_key(claim.route), []).append(claim)
    winners: list[Claim] = []
    losers: list[tuple[ServiceInfo, Problem]] = []
    for key in sorted(by_route, key=route_sort):
        winner, lost = resolve_group(key, by_route[key])
        winners.append(winner)
        losers.extend(lost)
    return Resolution(tuple(winners), tuple(losers))


def resolve_group(
    key: RouteKey, claims: Iterable[Claim]
) -> tuple[Claim, tuple[tuple[ServiceInfo, Problem], ...]]:
    """The winner among (at least one) claims of one route, and a problem for each loser,
    oldest loser first. Depends on nothing but these claims, so a sync that changed one
    route's claims re-resolves that route alone."""
    group = list(claims)
    if len(group) == 1:  # the usual case: no conflict, nothing to sort
        return group[0], ()
    host, prefix = key
    winner, *rest = sorted(group, key=lambda c: age_key(c.service))
    losers: list[tuple[ServiceInfo, Problem]] = []
    for claim in rest:
        shown = f"host {host!r}, path prefix {prefix!r}" if host else f"path prefix {prefix!r}"
        reason = (
            f"route ({shown}) is already claimed by the older Service "
            f"{winner.service.namespace}/{winner.service.name}; this Service is not routed"
        )
        annotation = ANNOTATION_PREFIX + ("host" if host else "path-prefix")
        value = host if host else prefix
        losers.append((claim.service, Problem(annotation, value, reason, True, "RouteConflict")))
    return winner, tuple(losers)


def route_sort(key: RouteKey) -> tuple[str, str]:
    return (key[0] or "", key[1])
