"""Work saved between builds: `build(inputs, memo=GatewayMemo())` gives exactly what
`build(inputs)` gives, faster when little changed.

The sync rebuilds the whole Gateway state on every change, so at a few thousand HTTPRoutes
the cost is in doing again what did not change: parsing each object, compiling each rule
into data-plane values, constructing each `Route` (its constructor compiles its actions)
and sorting each listener's RouteTable. The memo keeps those by their inputs:

  parsed    (kind, key) -> (the raw dict, its parse): reused while the cache hands over the
            same dict object (an unchanged object keeps its body), else parsed again
  compiled  RouteRule (by identity) -> CompiledRule or the reason it is refused
  lists     (HTTPRoute, listener) -> the Routes it contributes, while its hostnames there
            and its resolved backends are equal
  routes    the arguments of `make_route` -> the Route (an edited route keeps the Routes of
            the rules it did not change)
  tables    listener name -> its RouteTable, reused while given equal routes

Entries not used by a build are dropped at its end (`begin`/`end`), so the memo holds what
the current state is made of and no more. Mutable state, changed only by the build's plain
calls; nothing here is shared between threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from controller.gateway.fields import GatewayObjectError
from controller.gateway.httproute import RouteRule
from controller.gateway.rules import CompiledMatch, CompiledRule, compile_rule, make_route
from proxy.routing import Filter, Route, RouteTable, WeightedBackend

T = TypeVar("T")
_RouteArgs = tuple[
    CompiledMatch, tuple[Filter, ...], str | None, tuple[WeightedBackend, ...], tuple[Any, ...]
]


class GatewayMemo:
    def __init__(self) -> None:
        self._parsed: dict[tuple[str, Any], tuple[Mapping[str, Any], Any]] = {}
        self._compiled: dict[int, tuple[RouteRule, CompiledRule | str]] = {}
        self._routes: dict[_RouteArgs, Route] = {}
        self._tables: dict[str, tuple[tuple[Route, ...], RouteTable]] = {}
        self._next_parsed: dict[tuple[str, Any], tuple[Mapping[str, Any], Any]] = {}
        self._next_compiled: dict[int, tuple[RouteRule, CompiledRule | str]] = {}
        self._lists: dict[tuple[Any, ...], tuple[object, Any, list[Route]]] = {}
        self._next_lists: dict[tuple[Any, ...], tuple[object, Any, list[Route]]] = {}
        self._next_routes: dict[_RouteArgs, Route] = {}
        self._next_tables: dict[str, tuple[tuple[Route, ...], RouteTable]] = {}

    def __repr__(self) -> str:
        return (
            f"<GatewayMemo {len(self._parsed)} objects, {len(self._compiled)} rules, "
            f"{len(self._routes)} routes, {len(self._tables)} tables>"
        )

    def begin(self) -> None:
        self._next_parsed, self._next_compiled = {}, {}
        self._next_routes, self._next_tables, self._next_lists = {}, {}, {}

    def end(self) -> None:
        self._parsed, self._compiled = self._next_parsed, self._next_compiled
        self._routes, self._tables, self._lists = (
            self._next_routes,
            self._next_tables,
            self._next_lists,
        )

    def parse(
        self, kind: str, key: Any, raw: Mapping[str, Any], parser: Callable[[Mapping[str, Any]], T]
    ) -> T:
        """`parser(raw)`, or its result for the same dict last time; a GatewayObjectError
        is remembered and raised again."""
        slot = (kind, key)
        seen = self._parsed.get(slot)
        if seen is not None and seen[0] is raw:
            result = seen[1]
        else:
            try:
                result = parser(raw)
            except GatewayObjectError as error:
                result = error
        self._next_parsed[slot] = (raw, result)
        if isinstance(result, GatewayObjectError):
            raise result
        return result  # type: ignore[no-any-return]

    def compile(self, rule: RouteRule) -> CompiledRule:
        """`compile_rule(rule)`, remembered (a refusal too: ValueError with its reason).
        Looked up by identity: an unchanged route's parse (see `parse`) is the same object,
        and holding it keeps its id from being reused."""
        seen = self._compiled.get(id(rule))
        if seen is not None and seen[0] is rule:
            result = seen[1]
        else:
            try:
                result = compile_rule(rule)
            except ValueError as error:
                result = str(error)
        self._next_compiled[id(rule)] = (rule, result)
        if isinstance(result, str):
            raise ValueError(result)
        return result

    def route(
        self,
        match: CompiledMatch,
        filters: tuple[Filter, ...],
        *,
        host: str | None,
        backends: tuple[WeightedBackend, ...],
        order: tuple[Any, ...],
    ) -> Route:
        args = (match, filters, host, backends, order)
        found = self._routes.get(args)
        if found is None:
            found = make_route(match, filters, host=host, backends=backends, order=order)
        self._next_routes[args] = found
        return found

    def routes_of(
        self,
        slot: tuple[Any, ...],
        source: object,
        signature: Any,
        make: Callable[[], list[Route]],
    ) -> list[Route]:
        """The routes one HTTPRoute contributes to one listener: last build's while the parse
        is the same object (`source`) and what else they depend on (`signature`: hostnames,
        resolved backends) is equal, else `make()`."""
        seen = self._lists.get(slot)
        if seen is not None and seen[0] is source and seen[1] == signature:
            routes = seen[2]
        else:
            routes = make()
        self._next_lists[slot] = (source, signature, routes)
        return routes

    def table(
        self,
        name: str,
        routes: tuple[Route, ...],
        *,
        isolated_hosts: frozenset[str] = frozenset(),
    ) -> RouteTable:
        """The listener's RouteTable: last build's while it is given equal routes in the same
        order and the same isolated hosts (the data plane then sees the same object and swaps
        nothing)."""
        found = self._tables.get(name)
        table = (
            found[1]
            if found is not None
            and found[0] == routes
            and found[1].isolated_hosts == isolated_hosts
            else RouteTable.build(routes, isolated_hosts=isolated_hosts)
        )
        self._next_tables[name] = (routes, table)
        return table
