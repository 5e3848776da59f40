"""The Gateway API conformance suite's matching cases (v1.6.3: HTTPRouteQueryParamMatching,
HTTPRouteMatchingAcrossRoutes, HTTPRoutePathMatchOrder, HTTPRouteHeaderMatching), with their
routes written the way the controller builds them: one Route per rule match, a match without
a path being PathPrefix "/", the tie-break order (creationTimestamp, namespace/name, rule,
match). Expected backends are the suite's."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.routing import HeaderMatch, PathKind, QueryMatch, Route, RouteTable

Match = dict[str, object]


def rules(
    name: str,
    created: str,
    spec: Sequence[tuple[Sequence[Match], str]],
    hosts: Sequence[str | None] = (None,),
) -> list[Route]:
    out = []
    for rule_index, (matches, backend) in enumerate(spec):
        for match_index, match in enumerate(matches):
            kind, path = match.get("path", ("prefix", "/"))  # type: ignore[misc]
            for host in hosts:
                out.append(
                    Route(
                        backend,
                        host=host,
                        path_kind=kind,
                        path_prefix=path,
                        headers=tuple(
                            HeaderMatch(n, v)
                            for n, v in match.get("headers", {}).items()  # type: ignore[attr-defined]
                        ),
                        query=tuple(
                            QueryMatch(n, v)
                            for n, v in match.get("query", {}).items()  # type: ignore[attr-defined]
                        ),
                        order=(
                            created,
                            f"gateway-conformance-infra/{name}",
                            rule_index,
                            match_index,
                        ),
                    )
                )
    return out


def pick(table: RouteTable, target: str, host: str = "gw", **fields: str) -> str | None:
    path, _, query = target.partition("?")
    headers = CIMultiDictProxy(CIMultiDict(fields))
    route = table.match(host, path, headers=headers, query=query)
    return None if route is None else route.upstream


QUERY_PARAM_MATCHING = rules(
    "query-param-matching",
    "2026-01-01T00:00:00Z",
    [
        ([{"query": {"animal": "whale"}}], "v1"),
        ([{"query": {"animal": "dolphin"}}], "v2"),
        ([{"query": {"animal": "dolphin", "color": "blue"}}, {"query": {"ANIMAL": "Whale"}}], "v3"),
        ([{"path": ("prefix", "/path1"), "query": {"animal": "whale"}}], "v1"),
        ([{"headers": {"version": "one"}, "query": {"animal": "whale"}}], "v2"),
        (
            [
                {
                    "path": ("prefix", "/path2"),
                    "headers": {"version": "two"},
                    "query": {"animal": "whale"},
                }
            ],
            "v3",
        ),
        (
            [
                {"path": ("prefix", "/path3"), "query": {"animal": "shark"}},
                {
                    "path": ("prefix", "/path4"),
                    "headers": {"version": "three"},
                    "query": {"animal": "kraken"},
                },
            ],
            "v1",
        ),
        ([{"path": ("prefix", "/path5")}], "v1"),
        ([{"query": {"animal": "hydra"}}], "v2"),
        ([{"headers": {"version": "four"}}], "v3"),
    ],
)


@pytest.mark.parametrize(
    ("target", "headers", "expected"),
    [
        ("/?animal=whale", {}, "v1"),
        ("/?animal=dolphin", {}, "v2"),
        ("/?animal=dolphin&color=blue", {}, "v3"),
        ("/?ANIMAL=Whale", {}, "v3"),
        ("/?animal=whale&otherparam=irrelevant", {}, "v1"),
        ("/?animal=dolphin&color=yellow", {}, "v2"),
        ("/?color=blue", {}, None),
        ("/?animal=dog", {}, None),
        ("/?animal=whaledolphin", {}, None),
        ("/", {}, None),
        ("/path1?animal=whale", {}, "v1"),
        ("/?animal=whale", {"version": "one"}, "v2"),
        ("/path2?animal=whale", {"version": "two"}, "v3"),
        ("/path3?animal=shark", {}, "v1"),
        ("/path4?animal=kraken", {"version": "three"}, "v1"),
        ("/?animal=shark", {}, None),
        ("/path4?animal=kraken", {}, None),
        ("/path5?animal=hydra", {}, "v1"),
        ("/?animal=hydra", {"version": "four"}, "v3"),
    ],
)
def test_query_param_matching(target: str, headers: dict[str, str], expected: str | None) -> None:
    assert pick(RouteTable.build(QUERY_PARAM_MATCHING), target, **headers) == expected


ACROSS_ROUTES = rules(
    "matching-part1",
    "2026-01-01T00:00:00Z",
    [([{"path": ("prefix", "/")}, {"headers": {"version": "one"}}], "v1")],
    hosts=("example.com", "example.net"),
) + rules(
    "matching-part2",
    "2026-01-01T00:00:01Z",
    [([{"path": ("prefix", "/v2")}, {"headers": {"version": "two"}}], "v2")],
    hosts=("example.com",),
)


@pytest.mark.parametrize(
    ("host", "path", "headers", "expected"),
    [
        ("example.com", "/", {}, "v1"),
        ("example.com", "/example", {}, "v1"),
        ("example.net", "/example", {}, "v1"),
        ("example.com", "/example", {"Version": "one"}, "v1"),
        ("example.com", "/v2", {}, "v2"),
        ("example.net", "/v2", {}, "v1"),
        ("example.com", "/v2/example", {}, "v2"),
        ("example.com", "/", {"Version": "two"}, "v2"),
    ],
)
def test_matching_across_routes(
    host: str, path: str, headers: dict[str, str], expected: str
) -> None:
    for routes in (ACROSS_ROUTES, list(reversed(ACROSS_ROUTES))):
        assert pick(RouteTable.build(routes), path, host=host, **headers) == expected


def _path(kind: PathKind, value: str) -> Match:
    return {"path": (kind, value)}


PATH_MATCH_ORDER = rules(
    "path-matching-order",
    "2026-01-01T00:00:00Z",
    [
        ([_path("exact", "/match")], "v1"),
        ([_path("exact", "/match/exact")], "v2"),
        ([_path("exact", "/match/exact/one")], "v3"),
        ([_path("prefix", "/match/")], "v3"),
        ([_path("prefix", "/match/prefix/")], "v1"),
        ([_path("prefix", "/match/prefix/one")], "v2"),
    ],
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/match/exact/one", "v3"),
        ("/match/exact", "v2"),
        ("/match", "v1"),
        ("/match/prefix/one/any", "v2"),
        ("/match/prefix/any", "v1"),
        ("/match/any", "v3"),
    ],
)
def test_path_match_order(path: str, expected: str) -> None:
    assert pick(RouteTable.build(PATH_MATCH_ORDER), path) == expected


HEADER_MATCHING = rules(
    "header-matching",
    "2026-01-01T00:00:00Z",
    [
        ([{"headers": {"version": "one"}}], "v1"),
        ([{"headers": {"version": "two"}}], "v2"),
        ([{"headers": {"version": "two", "color": "orange"}}], "v1"),
        ([{"headers": {"color": "blue"}}, {"headers": {"color": "green"}}], "v1"),
        ([{"headers": {"color": "red"}}, {"headers": {"color": "yellow"}}], "v2"),
    ],
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Version": "one"}, "v1"),
        ({"Version": "two"}, "v2"),
        ({"Version": "two", "Color": "orange"}, "v1"),
        # One header each way: the earlier rule.
        ({"Version": "two", "Color": "blue"}, "v2"),
        ({"Color": "orange"}, None),
        ({"Some-Other-Header": "one"}, None),
        ({"Color": "blue"}, "v1"),
        ({"Color": "green"}, "v1"),
        ({"Color": "red"}, "v2"),
        ({"Color": "yellow"}, "v2"),
        ({"Color": "purple"}, None),
    ],
)
def test_header_matching(headers: dict[str, str], expected: str | None) -> None:
    assert pick(RouteTable.build(HEADER_MATCHING), "/", **headers) == expected
