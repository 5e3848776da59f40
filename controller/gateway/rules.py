"""An HTTPRoute rule in the data plane's terms: its matches and filters as proxy.routing values.

The data plane's constructors check what they are given and raise ValueError naming the
field (a header name that frames the message, a prefix rewrite on an Exact match, a
hop-by-hop name in a ResponseHeaderModifier); `compile_rule` runs them once, with a
probe route per match, so that graph.py can turn a rule the data plane would refuse into a
status condition (the rule is dropped: PartiallyInvalid / UnsupportedValue) instead of
failing the whole translation later.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.gateway.httproute import HeaderModifier, RouteFilter, RouteRule
from proxy.routing import (
    Filter,
    HeaderMatch,
    PathKind,
    PathModifier,
    QueryMatch,
    RequestHeaderModifier,
    RequestRedirect,
    ResponseHeaderModifier,
    Route,
    URLRewrite,
    WeightedBackend,
)


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    path_kind: PathKind
    path: str
    method: str | None
    headers: tuple[HeaderMatch, ...]
    query: tuple[QueryMatch, ...]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    matches: tuple[CompiledMatch, ...]
    filters: tuple[Filter, ...]
    redirects: bool  # answers a redirect itself: its backendRefs are never used


def compile_rule(rule: RouteRule) -> CompiledRule:
    """ValueError (with the rule's field) when the data plane cannot serve the rule."""
    filters = tuple(_filter(f, f"filters[{i}]") for i, f in enumerate(rule.filters))
    matches = []
    for i, match in enumerate(rule.matches):
        where = f"matches[{i}]"
        try:
            compiled = CompiledMatch(
                path_kind=match.path.kind,
                path=match.path.value,
                method=match.method,
                headers=tuple(HeaderMatch(h.name, h.value, h.kind) for h in match.headers),
                query=tuple(QueryMatch(q.name, q.value, q.kind) for q in match.query),
            )
            if filters or compiled.method is not None or compiled.path_kind == "regex":
                # A probe: the checks of a method, a path regex, and of filters with the
                # match (a prefix modifier on an Exact match, ...) live in Route's
                # constructor. A plain match has nothing more to check.
                probe = (WeightedBackend(None),)
                make_route(compiled, filters, host=None, backends=probe, order=())
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        matches.append(compiled)
    redirects = any(isinstance(f, RequestRedirect) for f in filters)
    return CompiledRule(tuple(matches), filters, redirects)


def make_route(
    match: CompiledMatch,
    filters: tuple[Filter, ...],
    *,
    host: str | None,
    backends: tuple[WeightedBackend, ...],
    order: tuple[str | int, ...],
) -> Route:
    path = match.path
    if match.path_kind == "prefix" and len(path) > 1:
        # Gateway API ignores a PathPrefix's trailing slash ("/abc/" matches "/abc" and
        # "/abc/x", never "/abcd"); the data plane's prefixes have none.
        path = path.rstrip("/") or "/"
    return Route(
        host=host,
        path_prefix=path,
        path_kind=match.path_kind,
        method=match.method,
        headers=match.headers,
        query=match.query,
        backends=backends,
        filters=filters,
        order=order,
    )


def _filter(item: RouteFilter, where: str) -> Filter:
    try:
        if item.request_headers is not None:
            return RequestHeaderModifier(*_pairs(item.request_headers))
        if item.response_headers is not None:
            return ResponseHeaderModifier(*_pairs(item.response_headers))
        if item.redirect is not None:
            red = item.redirect
            if red.scheme not in (None, "http", "https"):
                raise ValueError(f"redirect scheme {red.scheme!r}: must be http or https")
            return RequestRedirect(
                scheme=red.scheme,  # type: ignore[arg-type]
                hostname=red.hostname,
                port=red.port,
                path=None if red.path is None else PathModifier(red.path.kind, red.path.value),
                status_code=red.status_code,
            )
        if item.rewrite is not None:
            rew = item.rewrite
            return URLRewrite(
                hostname=rew.hostname,
                path=None if rew.path is None else PathModifier(rew.path.kind, rew.path.value),
            )
    except ValueError as error:
        raise ValueError(f"{where} ({item.type}): {error}") from None
    raise ValueError(f"{where}: filter {item.type} is not supported")


def _pairs(
    modifier: HeaderModifier,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
    return modifier.set, modifier.add, modifier.remove
