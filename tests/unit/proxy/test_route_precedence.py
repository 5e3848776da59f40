"""Route precedence and matching: the Gateway API's HTTPRouteRule order, the annotated mode's
old order, hosts and wildcards, method, header and query matches, regex paths."""

from __future__ import annotations

import itertools
import random

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.routing import HeaderMatch, QueryMatch, Route, RouteTable


def headers(**fields: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in fields.items()}))


def pick(table: RouteTable, host: str, path: str, **kw: object) -> str | None:
    route = table.match(host, path, **kw)  # type: ignore[arg-type]
    return None if route is None else route.upstream


def every_order(routes: list[Route]) -> list[RouteTable]:
    """The table built from several input orders (all, for a few routes): precedence must not
    depend on it."""
    if len(routes) <= 5:
        orders = list(itertools.permutations(routes))
    else:
        rng = random.Random(7)
        orders = [tuple(rng.sample(routes, len(routes))) for _ in range(30)]
    return [RouteTable.build(list(order)) for order in orders]


def test_exact_path_beats_any_prefix_and_longer_prefix_beats_shorter() -> None:
    routes = [
        Route("root"),
        Route("prefix-long", path_prefix="/foo/bar"),
        Route("prefix", path_prefix="/foo"),
        Route("exact", path_prefix="/foo", path_kind="exact"),
        Route("regex", path_prefix="/foo.*", path_kind="regex"),
    ]
    for table in every_order(routes):
        assert pick(table, "h", "/foo") == "exact"
        assert pick(table, "h", "/foo/bar/baz") == "prefix-long"
        assert pick(table, "h", "/foo/x") == "prefix"
        assert pick(table, "h", "/other") == "root"


def test_regex_comes_after_every_prefix_but_the_root_still_loses_to_nothing_else() -> None:
    routes = [Route("root"), Route("regex", path_prefix=r"/v\d+/.*", path_kind="regex")]
    for table in every_order(routes):
        # "/" is a prefix: it is more specific than any regex by the data plane's rule.
        assert pick(table, "h", "/v1/x") == "root"
    only = RouteTable.build([Route("regex", path_prefix=r"/v\d+/.*", path_kind="regex")])
    assert pick(only, "h", "/v12/x") == "regex"
    assert pick(only, "h", "/v12") is None  # the whole path must match
    assert pick(only, "h", "/x/v1/y") is None


def test_method_then_header_count_then_query_count() -> None:
    routes = [
        Route("plain", path_prefix="/p"),
        Route("method", path_prefix="/p", method="POST"),
        Route("one-header", path_prefix="/p", headers=(HeaderMatch("version", "one"),)),
        Route(
            "two-headers",
            path_prefix="/p",
            headers=(HeaderMatch("version", "one"), HeaderMatch("color", "blue")),
        ),
        Route("query", path_prefix="/p", query=(QueryMatch("animal", "whale"),)),
    ]
    for table in every_order(routes):
        assert pick(table, "h", "/p") == "plain"
        # A method match outranks any number of header matches.
        assert pick(table, "h", "/p", method="POST", headers=headers(version="one")) == "method"
        assert pick(table, "h", "/p", headers=headers(version="one", color="blue")) == (
            "two-headers"
        )
        assert pick(table, "h", "/p", headers=headers(version="one", color="red")) == ("one-header")
        assert pick(table, "h", "/p", headers=headers(version="one"), query="animal=whale") == (
            "one-header"
        )
        assert pick(table, "h", "/p", query="animal=whale") == "query"


def test_a_longer_prefix_outranks_a_method_or_header_match() -> None:
    routes = [
        Route("method", path_prefix="/a", method="GET"),
        Route("longer", path_prefix="/a/b"),
    ]
    for table in every_order(routes):
        assert pick(table, "h", "/a/b", method="GET") == "longer"
        assert pick(table, "h", "/a/c", method="GET") == "method"


def test_ties_go_by_order_then_input_order() -> None:
    older = Route("older", path_prefix="/t", order=("2020-01-01T00:00:00Z", "ns/b", 0, 0))
    newer = Route("newer", path_prefix="/t", order=("2021-01-01T00:00:00Z", "ns/a", 0, 0))
    same_time_a = Route("a", path_prefix="/u", order=("2020-01-01T00:00:00Z", "ns/a", 1, 0))
    same_time_b = Route("b", path_prefix="/u", order=("2020-01-01T00:00:00Z", "ns/b", 0, 0))
    first_rule = Route("rule0", path_prefix="/v", order=("t", "ns/r", 0, 0))
    second_rule = Route("rule1", path_prefix="/v", order=("t", "ns/r", 1, 0))
    for table in every_order([older, newer, same_time_a, same_time_b, first_rule, second_rule]):
        assert pick(table, "h", "/t") == "older"
        assert pick(table, "h", "/u") == "a"
        assert pick(table, "h", "/v") == "rule0"
    # Without an order key, equal routes keep the order they were given in.
    x, y = Route("x", path_prefix="/w"), Route("y", path_prefix="/w")
    assert pick(RouteTable.build([x, y]), "h", "/w") == "x"
    assert pick(RouteTable.build([y, x]), "h", "/w") == "y"


def test_host_precedence_comes_before_path_and_falls_through() -> None:
    routes = [
        Route("any-exact", path_prefix="/only", path_kind="exact"),
        Route("any"),
        Route("wild", host="*.example.com", path_prefix="/w"),
        Route("wild-long", host="*.shop.example.com", path_prefix="/"),
        Route("exact", host="shop.example.com", path_prefix="/e"),
    ]
    for table in every_order(routes):
        # An exact host's prefix beats a host-less Exact path.
        assert pick(table, "shop.example.com", "/e") == "exact"
        # No route of the exact host matches: the wildcards, then the host-less routes.
        assert pick(table, "shop.example.com", "/w") == "wild"
        assert pick(table, "shop.example.com", "/only") == "any-exact"
        assert pick(table, "shop.example.com", "/zzz") == "any"
        # The longest wildcard suffix first; `*.shop.example.com` does not cover its apex.
        assert pick(table, "a.shop.example.com", "/w") == "wild-long"
        assert pick(table, "a.b.example.com", "/w") == "wild"
        assert pick(table, "example.com", "/w") == "any"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Shop.Example.COM:8080", "exact"),
        ("shop.example.com.", "any"),  # a trailing dot is another name here
        ("x.example.com", "wild"),
        (".example.com", "any"),  # at least one label before the suffix
        ("badexample.com", "any"),
        ("", "any"),
        ("[::1]:80", "any"),
    ],
)
def test_hosts_are_matched_without_case_and_port(header: str, expected: str) -> None:
    table = RouteTable.build(
        [Route("any"), Route("wild", host="*.example.com"), Route("exact", host="SHOP.example.com")]
    )
    assert pick(table, header, "/") == expected


def test_header_matches_ignore_name_case_and_compare_the_first_field() -> None:
    route = Route("r", headers=(HeaderMatch("X-Version", "2"),))
    table = RouteTable.build([route])
    assert pick(table, "h", "/", headers=headers(x_version="2")) == "r"
    assert pick(table, "h", "/", headers=headers(X_VERSION="2")) == "r"
    assert pick(table, "h", "/", headers=headers(x_version="20")) is None
    assert pick(table, "h", "/") is None
    two = CIMultiDict([("X-Version", "1"), ("X-Version", "2")])
    assert pick(table, "h", "/", headers=CIMultiDictProxy(two)) is None


def test_regex_header_and_query_matches_use_the_whole_value() -> None:
    table = RouteTable.build(
        [
            Route("h", path_prefix="/h", headers=(HeaderMatch("v", r"v[0-9]+", kind="regex"),)),
            Route("q", path_prefix="/q", query=(QueryMatch("id", r"[a-f]+", kind="regex"),)),
        ]
    )
    assert pick(table, "x", "/h", headers=headers(v="v12")) == "h"
    assert pick(table, "x", "/h", headers=headers(v="v12x")) is None
    assert pick(table, "x", "/q", query="id=abc") == "q"
    assert pick(table, "x", "/q", query="id=abcz") is None


def test_query_names_are_case_sensitive_values_decoded_first_one_counts() -> None:
    table = RouteTable.build([Route("q", query=(QueryMatch("animal", "blue whale"),))])
    assert pick(table, "h", "/", query="animal=blue%20whale") == "q"
    assert pick(table, "h", "/", query="animal=blue+whale&x=1") == "q"
    assert pick(table, "h", "/", query="ANIMAL=blue+whale") is None
    assert pick(table, "h", "/", query="animal=dolphin&animal=blue+whale") is None
    assert pick(table, "h", "/", query="") is None


def test_method_must_be_equal() -> None:
    table = RouteTable.build([Route("post", method="POST")])
    assert pick(table, "h", "/", method="POST") == "post"
    assert pick(table, "h", "/", method="GET") is None
    assert pick(table, "h", "/") is None  # match() without a method means GET


def test_exact_path_is_the_whole_path() -> None:
    table = RouteTable.build([Route("e", path_prefix="/exact", path_kind="exact")])
    assert pick(table, "h", "/exact") == "e"
    assert pick(table, "h", "/exact/") is None
    assert pick(table, "h", "/exact/x") is None


def test_the_catch_all_fast_path_does_not_hide_conditional_routes() -> None:
    # A conditional host-less "/" route cannot take the shortcut: the request must match it.
    table = RouteTable.build([Route("post", method="POST")])
    assert pick(table, "h", "/", method="GET") is None
    # A host route next to the catch-all is still reachable.
    table = RouteTable.build([Route("any"), Route("shop", host="shop.test")])
    assert pick(table, "shop.test", "/") == "shop"
    assert pick(table, "other.test", "/") == "any"


def test_routes_are_kept_in_precedence_order_and_tables_compare_by_routes() -> None:
    a = Route("a", host="a.test")
    b = Route("b", path_prefix="/b")
    c = Route("c")
    assert RouteTable.build([c, b, a]).routes == (a, b, c)
    assert RouteTable.build([c, b, a]) == RouteTable.build([a, c, b])
    # Derived fields are not compared: an equal route is equal.
    assert Route("a", headers=(HeaderMatch("x", "y.*", "regex"),)) == Route(
        "a", headers=(HeaderMatch("x", "y.*", "regex"),)
    )


def test_a_large_host_table_still_matches_by_the_index() -> None:
    routes = [Route(f"u{i}", host=f"h{i}.example.com") for i in range(10_000)]
    routes.append(Route("wild", host="*.example.com", path_prefix="/w"))
    routes.append(Route("fallback"))
    table = RouteTable.build(routes)
    assert pick(table, "h9999.example.com", "/") == "u9999"
    assert pick(table, "h0.example.com:80", "/x") == "u0"
    assert pick(table, "nobody.example.com", "/w/1") == "wild"
    assert pick(table, "nobody.example.com", "/") == "fallback"
    assert repr(table) == ("<RouteTable 10002 routes: 10000 hosts, 1 wildcards, 1 for any host>")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path_kind": "glob"}, "path kind"),
        ({"path_kind": "regex", "path_prefix": "/("}, "not a regular expression"),
        ({"method": "get"}, "method"),
        ({"host": ""}, "host"),
    ],
)
def test_bad_routes_are_refused_with_the_field_named(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Route("u", **kwargs)  # type: ignore[arg-type]


def test_bad_matches_are_refused() -> None:
    with pytest.raises(ValueError, match="match kind 'prefix'"):
        HeaderMatch("x", "y", kind="prefix")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a regular expression"):
        QueryMatch("q", "[", kind="regex")
    with pytest.raises(ValueError, match="empty name"):
        HeaderMatch("", "v")
