"""Route matching as a request sees it: which upstream a Host header and path reach."""

from __future__ import annotations

import pytest

from proxy.routing import Route, Router, RouteTable, host_matches, normalize_host, prefix_matches


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("shop.example.com", "shop.example.com"),
        ("Shop.Example.COM", "shop.example.com"),
        ("  shop.example.com  ", "shop.example.com"),
        ("shop.example.com:8080", "shop.example.com"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        # Only what follows the last colon is a port.
        ("a:b:8080", "a:b"),
        # An IPv6 literal ends at its first "]" (RFC 3986 IP-literal).
        ("[::1]x]", "[::1]"),
        # An unterminated IPv6 literal is kept whole rather than cut anywhere.
        ("[::1", "[::1"),
        ("[::1:8080", "[::1:8080"),
    ],
)
def test_normalize_host(header: str, host: str) -> None:
    assert normalize_host(header) == host


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("shop.example.com", "shop.example.com", True),
        ("shop.example.com", "www.shop.example.com", False),
        ("*.example.com", "shop.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),  # the apex is not a subdomain
        ("*.example.com", ".example.com", False),  # at least one label before the suffix
        ("*.example.com", "badexample.com", False),  # a label boundary, not a plain suffix
        ("*.example.com", "shop.example.org", False),
        ("*.example.com", "a-very-long-name.example.org", False),
    ],
)
def test_host_matches(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/", "/", True),
        ("/", "/anything/at/all", True),
        ("/", "*", True),  # OPTIONS * still reaches the catch-all route
        ("/api", "/api", True),
        ("/api", "/api/", True),
        ("/api", "/api/orders", True),
        ("/api", "/apix", False),
        ("/api", "/ap", False),
        ("/api", "/", False),
        ("/api/", "/api/orders", True),
        ("/api/", "/api/", True),
        ("/api/", "/api", False),
    ],
)
def test_prefix_matches_on_segment_boundaries(prefix: str, path: str, expected: bool) -> None:
    assert prefix_matches(prefix, path) is expected


def upstream_for(table: RouteTable, host: str, path: str = "/") -> str | None:
    route = table.match(host, path)
    return None if route is None else route.upstream


def test_an_empty_table_routes_nothing() -> None:
    assert RouteTable().match("shop.example.com", "/") is None
    assert RouteTable.build([]).match("", "/") is None


def test_a_host_route_does_not_catch_other_hosts() -> None:
    table = RouteTable.build([Route("shop", host="shop.example.com")])
    assert upstream_for(table, "shop.example.com:80") == "shop"
    assert upstream_for(table, "other.example.com") is None


def test_a_catch_all_route_takes_every_host_and_path() -> None:
    table = RouteTable.build([Route("web")])
    assert upstream_for(table, "anything", "/x/y") == "web"
    assert upstream_for(table, "", "*") == "web"


def test_most_specific_route_wins_whatever_the_input_order() -> None:
    routes = [
        Route("any"),
        Route("any-api", path_prefix="/api"),
        Route("wild", host="*.example.com"),
        Route("exact", host="shop.example.com"),
        Route("exact-api", host="shop.example.com", path_prefix="/api"),
    ]
    for ordering in (routes, list(reversed(routes))):
        table = RouteTable.build(ordering)
        assert upstream_for(table, "shop.example.com", "/api/x") == "exact-api"
        assert upstream_for(table, "shop.example.com", "/other") == "exact"
        assert upstream_for(table, "cart.example.com", "/api/x") == "wild"
        assert upstream_for(table, "elsewhere.org", "/api/x") == "any-api"
        assert upstream_for(table, "elsewhere.org", "/") == "any"


def test_single_carries_the_redirect_and_hsts_settings() -> None:
    (route,) = RouteTable.single("web", https_redirect=True, hsts_max_age_seconds=600).routes
    assert route == Route("web", None, "/", https_redirect=True, hsts_max_age_seconds=600)
    (plain,) = RouteTable.single("web").routes
    assert plain.https_redirect is False
    assert plain.hsts_max_age_seconds is None


def test_router_replace_reports_whether_anything_changed() -> None:
    router = Router()
    assert router.table == RouteTable()
    table = RouteTable.build([Route("web")])
    assert router.replace(table) is True
    assert router.table is table
    assert router.replace(RouteTable.build([Route("web")])) is False
    assert router.table is table
