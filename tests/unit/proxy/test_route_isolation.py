"""RouteTable.isolated_hosts: a request whose host reaches an isolated host's group is
served by that group or not at all (Gateway API listener isolation); without isolated hosts
the table falls through to less specific hosts as before (the annotated mode). Pure."""

from __future__ import annotations

import pytest

from proxy.routing import Route, RouteTable

LISTENERS = frozenset({"*.example.com", "*.foo.example.com", "abc.foo.example.com"})


def _table(isolated: frozenset[str]) -> RouteTable:
    # One route per listener of the GatewayHTTPListenerIsolation test: the listener without a
    # hostname, *.example.com, *.foo.example.com, abc.foo.example.com.
    return RouteTable.build(
        [
            Route("empty", None, "/empty-hostname"),
            Route("wild", "*.example.com", "/wildcard-example-com"),
            Route("wild-foo", "*.foo.example.com", "/wildcard-foo-example-com"),
            Route("abc", "abc.foo.example.com", "/abc-foo-example-com"),
        ],
        isolated_hosts=isolated,
    )


PATHS = (
    "/empty-hostname",
    "/wildcard-example-com",
    "/wildcard-foo-example-com",
    "/abc-foo-example-com",
)


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("bar.com", "/empty-hostname"),
        ("bar.example.com", "/wildcard-example-com"),
        ("bar.foo.example.com", "/wildcard-foo-example-com"),
        ("a.b.foo.example.com", "/wildcard-foo-example-com"),
        ("ABC.foo.example.com:80", "/abc-foo-example-com"),
    ],
)
def test_only_the_most_specific_listener_host_serves(host: str, served: str) -> None:
    table = _table(LISTENERS)
    for path in PATHS:
        route = table.match(host, path)
        if path == served:
            assert route is not None and route.path_prefix == served, (host, path)
        else:
            assert route is None, (host, path, route)


def test_without_isolation_requests_fall_through_as_before() -> None:
    table = _table(frozenset())
    route = table.match("abc.foo.example.com", "/empty-hostname")
    assert route is not None and route.upstream == "empty"
    route = table.match("abc.foo.example.com", "/wildcard-example-com")
    assert route is not None and route.upstream == "wild"


def test_an_isolated_host_without_routes_answers_nothing() -> None:
    table = RouteTable.build(
        [Route("any", None, "/")], isolated_hosts=frozenset({"quiet.example.com", "*.q.io"})
    )
    assert table.catch_all is None  # an isolated host must not be taken by the catch-all
    assert table.match("quiet.example.com", "/") is None
    assert table.match("x.q.io", "/") is None
    route = table.match("loud.example.com", "/")
    assert route is not None and route.upstream == "any"
    # The wildcard covers labels before its suffix, never the suffix itself.
    assert table.match("q.io", "/") is not None


def test_a_more_specific_route_host_below_an_isolated_wildcard_falls_through_to_it() -> None:
    # A route hostname more specific than its listener's (foo.example.com on *.example.com)
    # is not isolated itself: a miss there goes on to the listener's own group, and stops.
    table = RouteTable.build(
        [
            Route("exact", "foo.example.com", "/only"),
            Route("wild", "*.example.com", "/"),
            Route("any", None, "/"),
        ],
        isolated_hosts=frozenset({"*.example.com"}),
    )
    assert table.match("foo.example.com", "/only").upstream == "exact"  # type: ignore[union-attr]
    assert table.match("foo.example.com", "/x").upstream == "wild"  # type: ignore[union-attr]
    assert table.match("other.org", "/x").upstream == "any"  # type: ignore[union-attr]


def test_tables_compare_by_isolated_hosts_too_stored_lower_case() -> None:
    routes = [Route("a", "a.example.com", "/")]
    assert RouteTable.build(routes) != RouteTable.build(routes, isolated_hosts=LISTENERS)
    upper = RouteTable.build(routes, isolated_hosts=frozenset({"*.Example.COM"}))
    assert upper == RouteTable.build(routes, isolated_hosts=frozenset({"*.example.com"}))
    assert "1 isolated" in repr(upper)


@pytest.mark.parametrize("bad", ["", "*.", "*", "a.*.com"])
def test_bad_isolated_hosts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="isolated host"):
        RouteTable.build([], isolated_hosts=frozenset({bad}))
