from controller.routes import Claim, resolve
from proxy.routing import Route, RouteTable
from tests.unit.controller.factories import service


def claim(
    name: str, created: str, host: str | None = None, prefix: str = "/", namespace: str = "shop"
) -> Claim:
    svc = service(name, namespace, created=created)
    return Claim(svc, Route(f"{namespace}/{name}", host, prefix))


def test_no_conflict_keeps_all() -> None:
    claims = [claim("a", "2024-01-01T00:00:00Z"), claim("b", "2024-01-01T00:00:00Z", "x.io")]
    resolution = resolve(claims)
    assert set(resolution.winners) == set(claims)
    assert resolution.losers == ()


def test_older_wins_whatever_the_order() -> None:
    old = claim("young-name", "2023-01-01T00:00:00Z", "x.io", "/api")
    new = claim("a-name", "2024-01-01T00:00:00Z", "x.io", "/api")
    for order in ([old, new], [new, old]):
        resolution = resolve(order)
        assert resolution.winners == (old,)
        ((loser, problem),) = resolution.losers
        assert loser == new.service
        assert problem.event_reason == "RouteConflict"
        assert "shop/young-name" in problem.message
        assert problem.blocking


def test_tie_broken_by_namespace_then_name() -> None:
    same = "2024-01-01T00:00:00Z"
    a = claim("web", same, namespace="b")
    b = claim("web", same, namespace="a")
    c = claim("api", same, namespace="a")
    assert resolve([a, b, c]).winners == (c,)


def test_table_order_host_specific_then_longest_prefix() -> None:
    routes = [
        Route("any", None, "/"),
        Route("any-api", None, "/api"),
        Route("wild", "*.example.com", "/"),
        Route("exact", "shop.example.com", "/"),
        Route("exact-api", "shop.example.com", "/api/v1"),
    ]
    table = RouteTable.build(routes)

    def upstream(host: str, path: str) -> str | None:
        route = table.match(host, path)
        return route.upstream if route else None

    assert upstream("shop.example.com", "/api/v1/x") == "exact-api"
    assert upstream("shop.example.com", "/api") == "exact"
    assert upstream("a.example.com", "/api") == "wild"
    assert upstream("other.io", "/api/x") == "any-api"
    assert upstream("other.io", "/") == "any"
