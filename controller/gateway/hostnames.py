"""Listener hostname x HTTPRoute hostnames, as the Gateway API spec defines the intersection.

A Gateway API wildcard (`*.example.com`) matches one or more labels before the suffix
(`a.example.com`, `a.b.example.com`), never `example.com` itself. A listener without a
hostname accepts every route hostname; a route without hostnames takes the listener's.
When both name hosts, each route hostname that one side's pattern covers contributes the
more specific of the two: route `*.example.com` on listener `foo.example.com` serves
`foo.example.com`; route `foo.example.com` on listener `*.example.com` serves
`foo.example.com`; route `*.foo.example.com` on listener `*.example.com` serves
`*.foo.example.com`.
"""

from __future__ import annotations

from collections.abc import Sequence

ANY_HOST: tuple[str, ...] = ()


def covers(pattern: str, host: str) -> bool:
    """Whether `pattern` (exact or `*.` wildcard) matches `host` (exact or wildcard).

    A wildcard covers a host with at least one more label in front of its suffix, and a
    wildcard whose suffix is at or below its own (`*.example.com` covers `*.a.example.com`
    and `*.example.com`)."""
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".example.com"
    if host.startswith("*."):
        return host[1:].endswith(suffix)
    return host.endswith(suffix) and len(host) > len(suffix)


def intersect(listener: str | None, route: Sequence[str]) -> tuple[str, ...] | None:
    """The hostnames a route serves on a listener: `ANY_HOST` (`()`) for every host, a tuple
    of hostnames, or None when they have none in common (the route does not attach there)."""
    if listener is None:
        return tuple(dict.fromkeys(route))
    if not route:
        return (listener,)
    result: dict[str, None] = {}
    for host in route:
        if covers(listener, host):
            result[host] = None
        elif covers(host, listener):
            result[listener] = None
    return tuple(result) or None
