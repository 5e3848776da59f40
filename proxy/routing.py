"""Routes: which upstream serves a request, by host and path prefix.

A RouteTable is a frozen snapshot, built whole and swapped by reference in a `Router`.
Host-specific routes win over host-less ones, exact hosts over wildcards, then the longest
path prefix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    """`host` is exact (`shop.example.com`), a wildcard (`*.example.com`) or None for any host.

    `https_redirect`: on a plain-HTTP listener the route answers 308 to the same URL on
    https instead of forwarding. `hsts_max_age_seconds`: on an HTTPS listener its answers
    carry `Strict-Transport-Security: max-age=N`. Both are per route (per host, for the
    controller's annotations); HTTPS listeners forward as usual either way."""

    upstream: str
    host: str | None = None
    path_prefix: str = "/"
    https_redirect: bool = False
    hsts_max_age_seconds: int | None = None

    def matches(self, host: str, path: str) -> bool:
        if self.host is not None and not host_matches(self.host, host):
            return False
        return prefix_matches(self.path_prefix, path)

    @property
    def rank(self) -> tuple[int, int]:
        """Sort key, most specific first: exact host > wildcard host > any host; longer prefix."""
        if self.host is None:
            host_rank = 0
        elif self.host.startswith("*."):
            host_rank = 1
        else:
            host_rank = 2
        return (host_rank, len(self.path_prefix))


def host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com": one or more labels before it
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def prefix_matches(prefix: str, path: str) -> bool:
    """Prefix on path-segment boundaries: `/api` matches `/api` and `/api/x`, not `/apix`."""
    if prefix == "/" or path == prefix:
        return True
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or path[len(prefix)] == "/"


def normalize_host(header: str) -> str:
    """Host header without port, lower-cased; IPv6 literals keep their brackets."""
    host = header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Routes in match order (most specific first)."""

    routes: tuple[Route, ...] = ()

    @classmethod
    def build(cls, routes: list[Route] | tuple[Route, ...]) -> RouteTable:
        return cls(tuple(sorted(routes, key=lambda r: r.rank, reverse=True)))

    @classmethod
    def single(
        cls,
        upstream: str,
        *,
        https_redirect: bool = False,
        hsts_max_age_seconds: int | None = None,
    ) -> RouteTable:
        """Every request to one upstream: the standalone proxy and each sidecar port."""
        return cls((Route(upstream, None, "/", https_redirect, hsts_max_age_seconds),))

    def match(self, host_header: str, path: str) -> Route | None:
        first = self.routes[0] if self.routes else None
        if first is not None and first.host is None and first.path_prefix == "/":
            return first  # nothing more specific exists (sorted): skip host parsing
        host = normalize_host(host_header)
        for route in self.routes:
            if route.matches(host, path):
                return route
        return None


class Router:
    """Holds the current RouteTable; `replace()` swaps it in one assignment."""

    __slots__ = ("table",)

    def __init__(self, table: RouteTable | None = None) -> None:
        self.table = table or RouteTable()

    def replace(self, table: RouteTable) -> bool:
        """Install `table`; return False (and change nothing) if it equals the current one."""
        if table == self.table:
            return False
        self.table = table
        return True
