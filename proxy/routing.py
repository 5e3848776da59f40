"""Routes: which upstream serves a request, by host, path, method, headers and query.

A `RouteTable` is a frozen snapshot, built whole and swapped by reference in a `Router`. The
annotated-Service mode and the Gateway API (HTTPRoute rules, one `Route` per rule match) both
describe their routes with `Route`; the value types a route is made of live in
proxy.filters and are re-exported here, so callers import everything from proxy.routing.

Route fields (all but `upstream` optional; `Route(upstream, host, path_prefix,
https_redirect=..., hsts_max_age_seconds=...)` is the annotated mode's route):
  host         exact (`shop.example.com`), wildcard (`*.example.com`: one or more labels
               before the suffix, never the suffix itself) or None for any host
  path_kind    "prefix" (on segment boundaries: `/api` matches `/api`, `/api/x`, not `/apix`;
               a prefix ending in "/" needs that "/" in the path), "exact", or "regex" (the
               whole path must match, Python `re` syntax)
  path_prefix  the path value, whatever `path_kind` says (the name is the annotated mode's)
  method       None for any, else the request method exactly (upper case)
  headers      HeaderMatch(name, value, kind="exact"|"regex"), all must match; names are
               case-insensitive, the first field of a name is the one compared
  query        QueryMatch(name, value, kind), all must match; names are case-sensitive, the
               first parameter of a name is the one compared (values percent-decoded)
  upstream / backends
               one upstream name, or weighted backends (proxy.filters.WeightedBackend)
  filters      proxy.filters: RequestHeaderModifier, ResponseHeaderModifier,
               RequestRedirect, URLRewrite
  order        the controller's tie-break key (e.g. creationTimestamp, namespace/name, rule
               index, match index); ascending, compared only between otherwise equal routes

Precedence (what `match` returns when several routes match), the Gateway API's HTTPRouteRule
order:
  1. host: exact > wildcard, the longest wildcard suffix first > any host. A request falls
     through to less specific hosts when no route of its own host matches it, unless the
     table isolates that host (`isolated_hosts`, below).
  2. path: Exact > PathPrefix, the longest first > regex
  3. a method match > none
  4. more header matches > fewer
  5. more query matches > fewer
  6. `order` ascending, then the order the routes were given in.
The annotated mode's routes (prefixes, no headers) keep their old order: exact host >
wildcard > any host, then the longest prefix.

Isolation (Gateway API listener isolation: a request is served only by the routes of the most
specific listener its host matches): `RouteTable(routes, isolated_hosts=...)` names hosts,
exact or `*.suffix`, whose group ends the search. A request whose host reaches such a group
(its exact host, or the longest isolated wildcard suffix it has) gets that group's match or
none (404), never a less specific host's routes, even when the group has no routes at all.
The controller puts every listener hostname of a port there; the annotated mode puts none and
keeps falling through.

`match` does not scan the table: routes are indexed by exact host, by wildcard suffix
(looked up label by label) and host-less, each list sorted once when the table is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import ClassVar, Literal
from urllib.parse import parse_qsl

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from proxy.filters import (
    Actions,
    Filter,
    PathKind,
    PathModifier,
    RequestHeaderModifier,
    RequestRedirect,
    ResponseHeaderModifier,
    URLRewrite,
    WeightedBackend,
    compile_actions,
)

__all__ = [
    "Filter",
    "HeaderMatch",
    "PathKind",
    "PathModifier",
    "QueryMatch",
    "RequestHeaderModifier",
    "RequestRedirect",
    "ResponseHeaderModifier",
    "Route",
    "RouteTable",
    "Router",
    "URLRewrite",
    "WeightedBackend",
    "host_matches",
    "normalize_host",
    "prefix_matches",
]

MatchKind = Literal["exact", "regex"]
_METHOD_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Z-]+$")
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def _compile(kind: str, value: str, where: str) -> re.Pattern[str] | None:
    if kind == "exact":
        return None
    if kind != "regex":
        raise ValueError(f"{where}: match kind {kind!r} must be 'exact' or 'regex'")
    try:
        return re.compile(value)
    except re.error as error:
        raise ValueError(f"{where}: {value!r} is not a regular expression: {error}") from None


@dataclass(frozen=True, slots=True)
class _ValueMatch:
    """A named request value that must be present with `value` (exact) or match it (regex,
    the whole value)."""

    what: ClassVar[str]  # how errors name it
    name: str
    value: str
    kind: MatchKind = "exact"
    pattern: re.Pattern[str] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        what = self.what
        if not self.name:
            raise ValueError(f"{what}: empty name")
        object.__setattr__(self, "pattern", _compile(self.kind, self.value, what))

    def accepts(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.pattern is None:
            return value == self.value
        return self.pattern.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class HeaderMatch(_ValueMatch):
    """A request header (names case-insensitive)."""

    what = "header match"


@dataclass(frozen=True, slots=True)
class QueryMatch(_ValueMatch):
    """A query parameter (names case-sensitive)."""

    what = "query match"


_PATH_RANK = {"exact": 2, "prefix": 1, "regex": 0}


@dataclass(frozen=True, slots=True)
class Route:
    """One way a request reaches an upstream (see the module docstring for every field).

    `https_redirect`: on a plain-HTTP listener the route answers 308 to the same URL on
    https instead of forwarding. `hsts_max_age_seconds`: on an HTTPS listener its answers
    carry `Strict-Transport-Security: max-age=N`. Both are per route (per host, for the
    controller's annotations); HTTPS listeners forward as usual either way.

    Derived when the route is made (not compared): `actions` (None for a route with no
    filters and one upstream: the common path reads nothing more), `target` (that one
    upstream: `upstream`, or the single backend's), `label` (the route's name
    in metrics), `conditional` (it checks method, headers or query), `rank` (the sort key
    of the module docstring's precedence, most specific first)."""

    upstream: str = ""
    host: str | None = None
    path_prefix: str = "/"
    https_redirect: bool = False
    hsts_max_age_seconds: int | None = None
    path_kind: PathKind = "prefix"
    method: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    backends: tuple[WeightedBackend, ...] = ()
    filters: tuple[Filter, ...] = ()
    order: tuple[str | int, ...] = ()
    actions: Actions | None = field(init=False, compare=False, repr=False)
    target: str = field(init=False, compare=False, repr=False)
    label: str = field(init=False, compare=False, repr=False)
    conditional: bool = field(init=False, compare=False, repr=False)
    pattern: re.Pattern[str] | None = field(init=False, compare=False, repr=False)
    rank: tuple[object, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        kind = self.path_kind
        if kind not in _PATH_RANK:
            raise ValueError(f"path kind {kind!r}: must be prefix, exact or regex")
        method = self.method
        if method is not None and not _METHOD_RE.match(method):
            raise ValueError(f"method {method!r}: not an upper-case HTTP method")
        host = self.host
        if host is not None and (not host or host == "*."):
            raise ValueError(f"host {host!r}: empty")
        path = self.path_prefix
        upstream = self.upstream
        set_ = object.__setattr__
        set_(self, "pattern", _compile("regex", path, "path") if kind == "regex" else None)
        if upstream and not self.filters and not self.backends:
            # The annotated mode's every route: nothing to compile (10,000 Services' routes
            # are made on a controller's first sync).
            set_(self, "actions", None)
            set_(self, "target", upstream)
        else:
            set_(
                self,
                "actions",
                compile_actions(
                    upstream=upstream,
                    backends=self.backends,
                    filters=self.filters,
                    path_kind=kind,
                    path=path,
                ),
            )
            only = self.backends[0].upstream if len(self.backends) == 1 else None
            set_(self, "target", upstream or only or "")
        set_(self, "label", host + path if host else path)
        conditional = bool(method or self.headers or self.query)
        set_(self, "conditional", conditional)
        set_(
            self,
            "rank",
            (
                *host_rank(host),
                -_PATH_RANK[kind],
                -len(path) if kind == "prefix" else 0,
                method is None,
                -len(self.headers),
                -len(self.query),
                self.order,
            ),
        )

    def matches(self, host: str, path: str) -> bool:
        """Host (normalised) and path alone: what the annotated mode's routes check."""
        if self.host is not None and not host_matches(self.host, host):
            return False
        return self.path_matches(path)

    def path_matches(self, path: str) -> bool:
        kind = self.path_kind
        if kind == "prefix":
            return prefix_matches(self.path_prefix, path)
        if kind == "exact":
            return path == self.path_prefix
        assert self.pattern is not None
        return self.pattern.fullmatch(path) is not None


_rank = attrgetter("rank")


def host_rank(host: str | None) -> tuple[int, int]:
    """Sort key of a host pattern, most specific first: an exact host, then wildcards, the
    longest first, then none (any host). The first part of `Route.rank`; the controller ranks
    Gateway listener hostnames by it too."""
    if host is None:
        return (2, 0)
    if host.startswith("*."):
        return (1, -len(host))
    return (0, 0)


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


def _first_query(query: str) -> Mapping[str, str]:
    first: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        first.setdefault(name, value)
    return first


def _first_match(
    routes: tuple[Route, ...],
    path: str,
    method: str,
    headers: MultiMapping[str],
    query: str,
) -> Route | None:
    params: Mapping[str, str] | None = None  # parsed only if a route asks
    for route in routes:
        if not route.path_matches(path):
            continue
        if not route.conditional:
            return route
        if route.method is not None and route.method != method:
            continue
        if not all(m.accepts(headers.get(m.name)) for m in route.headers):
            continue
        if route.query:
            if params is None:
                params = _first_query(query)
            if not all(m.accepts(params.get(m.name)) for m in route.query):
                continue
        return route
    return None


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Routes and their index; compared by `routes` and `isolated_hosts` (see the module
    docstring; stored lower-cased). `routes` lists them by host (exact hosts
    in the order first given, then wildcards, the longest suffix first, then the host-less
    routes), each host's in precedence order: the order `match` tries them in for a host
    that has routes of every kind."""

    routes: tuple[Route, ...] = ()
    isolated_hosts: frozenset[str] = frozenset()
    _exact: Mapping[str, tuple[Route, ...]] = field(init=False, compare=False, repr=False)
    _wild: Mapping[str, tuple[Route, ...]] = field(init=False, compare=False, repr=False)
    _any: tuple[Route, ...] = field(init=False, compare=False, repr=False)
    _isolated_wild: frozenset[str] = field(init=False, compare=False, repr=False)  # suffixes
    # Set when one host-less, unconditional "/" prefix route comes first with no host route
    # at all (the standalone proxy, every sidecar port): it takes every request unparsed.
    # The handler reads it before calling `match` (saves the call: the bench's common path).
    catch_all: Route | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Grouped by host first, then each group sorted: groups are small, so building a
        # table of 10,000 hosts costs little more than one pass (one sort of all routes by
        # their 8-part rank took four times as long).
        exact: dict[str, list[Route]] = {}
        wild: dict[str, list[Route]] = {}
        any_host: list[Route] = []
        for route in self.routes:
            host = route.host
            if host is None:
                any_host.append(route)
            elif host.startswith("*."):
                wild.setdefault(host[2:].lower(), []).append(route)
            else:
                exact.setdefault(host.lower(), []).append(route)
        isolated: set[str] = set()
        for host in self.isolated_hosts:
            lower = host.lower()
            if not lower or lower == "*." or lower == "*" or "*" in lower[1:]:
                raise ValueError(f"isolated host {host!r}: not a host or a *. wildcard")
            if lower.startswith("*."):
                wild.setdefault(lower[2:], [])
            else:
                exact.setdefault(lower, [])
            isolated.add(lower)
        for group in (*exact.values(), *wild.values(), any_host):
            if len(group) > 1:
                group.sort(key=_rank)
        wild = {suffix: wild[suffix] for suffix in sorted(wild, key=len, reverse=True)}
        ordered = tuple(chain(*exact.values(), *wild.values(), any_host))
        first = any_host[0] if any_host else None
        catch_all = (
            first
            if first is not None
            and not exact
            and not wild
            and first.path_kind == "prefix"
            and first.path_prefix == "/"
            and not first.conditional
            else None
        )
        set_ = object.__setattr__
        set_(self, "routes", ordered)
        set_(self, "isolated_hosts", frozenset(isolated))
        set_(self, "_isolated_wild", frozenset(h[2:] for h in isolated if h.startswith("*.")))
        set_(self, "_exact", {host: tuple(rs) for host, rs in exact.items()})
        set_(self, "_wild", {suffix: tuple(rs) for suffix, rs in wild.items()})
        set_(self, "_any", tuple(any_host))
        set_(self, "catch_all", catch_all)

    def __repr__(self) -> str:
        return (
            f"<RouteTable {len(self.routes)} routes: {len(self._exact)} hosts, "
            f"{len(self._wild)} wildcards, {len(self._any)} for any host"
            + (f", {len(self.isolated_hosts)} isolated>" if self.isolated_hosts else ">")
        )

    @classmethod
    def build(
        cls,
        routes: list[Route] | tuple[Route, ...],
        *,
        isolated_hosts: frozenset[str] = frozenset(),
    ) -> RouteTable:
        return cls(tuple(routes), isolated_hosts)

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

    def match(
        self,
        host_header: str,
        path: str,
        *,
        method: str = "GET",
        headers: MultiMapping[str] = _NO_HEADERS,
        query: str = "",
    ) -> Route | None:
        """The route for a request: its Host header, path (without query), method, headers
        and raw query string. A table with a `catch_all` returns it from the host-less
        routes it heads (the handler reads `catch_all` itself and does not call this)."""
        exact = self._exact
        wild = self._wild
        if exact or wild:
            host = normalize_host(host_header)
            if exact:
                routes = exact.get(host)
                if routes is not None:
                    found = _first_match(routes, path, method, headers, query)
                    if found is not None or host in self.isolated_hosts:
                        return found
            if wild:
                # Longest suffix first: the dot after the first label, then the next one.
                dot = host.find(".", 1)
                while dot != -1:
                    suffix = host[dot + 1 :]
                    routes = wild.get(suffix)
                    if routes is not None:
                        found = _first_match(routes, path, method, headers, query)
                        # Only on a miss: a hit costs nothing more.
                        if found is not None or suffix in self._isolated_wild:
                            return found
                    dot = host.find(".", dot + 1)
        if self._any:
            return _first_match(self._any, path, method, headers, query)
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
