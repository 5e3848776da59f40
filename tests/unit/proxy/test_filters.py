"""The pure parts of route actions: path replacement, redirect Locations, header modification,
weighted choice (seeded), what each filter refuses, and which routes need actions at all."""

from __future__ import annotations

import collections
import random

import pytest
from multidict import CIMultiDict

from proxy.filters import (
    Actions,
    BackendChoice,
    PathModifier,
    RequestHeaderModifier,
    RequestRedirect,
    ResponseHeaderModifier,
    URLRewrite,
    WeightedBackend,
    modified_headers,
    new_path,
    redirect_location,
)
from proxy.headers import ResponseEdit
from proxy.routing import Route


@pytest.mark.parametrize(
    ("modifier", "path", "prefix", "expected"),
    [
        (PathModifier("prefix", "/one"), "/prefix/one/two", "/prefix/one", "/one/two"),
        (PathModifier("prefix", "/"), "/strip/three", "/strip", "/three"),
        (PathModifier("prefix", "/"), "/strip", "/strip", "/"),
        (PathModifier("prefix", "/new/"), "/old/x", "/old", "/new/x"),
        (PathModifier("prefix", "/new"), "/old/x", "/old/", "/new/x"),
        (PathModifier("prefix", "/new"), "/anything", "/", "/new/anything"),
        (PathModifier("full", "/one"), "/full/one/two", "/full", "/one"),
        (PathModifier("full", "/one"), "/x", None, "/one"),
    ],
)
def test_new_path(modifier: PathModifier, path: str, prefix: str | None, expected: str) -> None:
    assert new_path(modifier, path, prefix) == expected


def location(
    redirect: RequestRedirect, *, scheme: str = "http", port: int | None = 80
) -> str | None:
    return redirect_location(
        redirect,
        scheme=scheme,
        host="shop.test",
        path="/a/b",
        query="q=1",
        matched_prefix="/a",
        listener_port=port,
    )


@pytest.mark.parametrize(
    ("redirect", "scheme", "port", "expected"),
    [
        (RequestRedirect(), "http", 80, "http://shop.test/a/b?q=1"),
        (RequestRedirect(), "https", 443, "https://shop.test/a/b?q=1"),
        (RequestRedirect(), "https", 8443, "https://shop.test:8443/a/b?q=1"),
        (RequestRedirect(), "http", None, "http://shop.test/a/b?q=1"),
        (RequestRedirect(scheme="https"), "http", 8080, "https://shop.test/a/b?q=1"),
        (RequestRedirect(scheme="http"), "https", 8443, "http://shop.test/a/b?q=1"),
        (RequestRedirect(port=8080), "http", 80, "http://shop.test:8080/a/b?q=1"),
        (RequestRedirect(port=443, scheme="https"), "http", 80, "https://shop.test/a/b?q=1"),
        (RequestRedirect(hostname="Example.ORG"), "http", 80, "http://example.org/a/b?q=1"),
        (
            RequestRedirect(path=PathModifier("prefix", "/z")),
            "http",
            80,
            "http://shop.test/z/b?q=1",
        ),
    ],
)
def test_redirect_location(
    redirect: RequestRedirect, scheme: str, port: int | None, expected: str
) -> None:
    assert location(redirect, scheme=scheme, port=port) == expected


def test_redirect_location_refuses_a_host_it_cannot_echo_unless_replaced() -> None:
    kwargs = {"scheme": "http", "path": "/", "query": "", "matched_prefix": None}
    assert redirect_location(RequestRedirect(), host="a b", listener_port=80, **kwargs) is None  # type: ignore[arg-type]
    assert (
        redirect_location(
            RequestRedirect(hostname="ok.test"), host="a b", listener_port=80, **kwargs
        )  # type: ignore[arg-type]
        == "http://ok.test/"
    )
    assert (
        redirect_location(RequestRedirect(), host="[::1]", listener_port=8080, **kwargs)  # type: ignore[arg-type]
        == "http://[::1]:8080/"
    )


def test_modified_headers_set_add_remove_in_that_order_without_case() -> None:
    headers = CIMultiDict([("X-Set", "a"), ("x-set", "b"), ("X-Add", "1"), ("X-Drop", "z")])
    modifier = RequestHeaderModifier(
        set=(("x-SET", "new"),), add=(("X-Add", "2"), ("X-Drop", "again")), remove=("x-drop",)
    )
    out = modified_headers(headers, modifier, host="internal.test")
    assert out.getall("X-Set") == ["new"]
    assert out.getall("X-Add") == ["1", "2"]
    assert "X-Drop" not in out  # removed after being added
    assert out["Host"] == "internal.test"
    assert headers.getall("x-set") == ["a", "b"]  # the input is not changed


def test_weighted_choice_follows_the_weights_and_skips_zero() -> None:
    choice = BackendChoice.of(
        (WeightedBackend("a", 3), WeightedBackend("zero", 0), WeightedBackend(None, 1))
    )
    rng = random.Random(1)
    seen = collections.Counter(choice.choose(rng) for _ in range(4000))
    assert set(seen) == {"a", None}
    assert 2800 <= seen["a"] <= 3200  # seeded: deterministic, and near 3/4
    assert BackendChoice.of((WeightedBackend("a", 0),)).choose(rng) is None
    assert BackendChoice.of(()).choose(rng) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: WeightedBackend("a", -1), "weight"),
        (lambda: WeightedBackend("", 1), "empty name"),
        (lambda: PathModifier("suffix", "/x"), "kind"),  # type: ignore[arg-type]
        (lambda: PathModifier("full", "x"), "absolute path"),
        (lambda: PathModifier("full", "/x?y"), "absolute path"),
        (lambda: RequestHeaderModifier(set=(("Content-Length", "1"),)), "frames the message"),
        (lambda: RequestHeaderModifier(add=(("Transfer-Encoding", "x"),)), "frames the message"),
        (lambda: RequestHeaderModifier(remove=("bad name",)), "not an HTTP field name"),
        (lambda: RequestHeaderModifier(set=(("X", "a\r\nB: c"),)), "line break"),
        (lambda: RequestHeaderModifier(set=(("X", "1"), ("x", "2"))), "appears twice"),
        (lambda: ResponseHeaderModifier(add=(("Content-Length", "1"),)), "frames the message"),
        (lambda: ResponseHeaderModifier(remove=("Transfer-Encoding",)), "frames the message"),
        (lambda: ResponseHeaderModifier(set=(("Proxy-Authenticate", "x"),)), "hop-by-hop"),
        (lambda: ResponseHeaderModifier(remove=("Trailers",)), "hop-by-hop"),
        (lambda: ResponseHeaderModifier(add=(("X", "1"), ("x", "2"))), "appears twice"),
        (lambda: ResponseHeaderModifier(add=(("X", "a\nb"),)), "line break"),
        (lambda: ResponseHeaderModifier(remove=("bad name",)), "not an HTTP field name"),
        (lambda: RequestRedirect(status_code=200), "status code"),
        (lambda: RequestRedirect(port=0), "port"),
        (lambda: RequestRedirect(scheme="ftp"), "scheme"),  # type: ignore[arg-type]
        (lambda: RequestRedirect(hostname="not a host"), "host name"),
        (lambda: URLRewrite(hostname="under_score"), "host name"),
    ],
)
def test_filters_refuse_bad_input_naming_it(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            dict(upstream="a", backends=(WeightedBackend("b"),)),
            "either one upstream or backends",
        ),
        (
            dict(filters=(RequestRedirect(), URLRewrite())),
            "both redirect and rewrite",
        ),
        (
            dict(filters=(RequestRedirect(), RequestRedirect(port=1))),
            "two RequestRedirect",
        ),
        (
            dict(
                path_kind="exact",
                filters=(URLRewrite(path=PathModifier("prefix", "/x")),),
            ),
            "needs a prefix route",
        ),
    ],
)
def test_routes_refuse_filter_combinations(route: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Route(**route)  # type: ignore[arg-type]


def test_only_routes_that_need_actions_have_them() -> None:
    assert Route("a").actions is None
    assert Route(backends=(WeightedBackend("a", 5),)).actions is None
    assert Route(backends=(WeightedBackend("a", 5),)).target == "a"
    # Two backends, an invalid one, a zero weight, none at all, any filter: actions.
    for route in (
        Route(backends=(WeightedBackend("a"), WeightedBackend("b"))),
        Route(backends=(WeightedBackend(None),)),
        Route(backends=(WeightedBackend("a", 0),)),
        Route(),
        Route("a", filters=(ResponseHeaderModifier(set=(("X", "1"),)),)),
    ):
        assert route.actions is not None, route
    with_filter = Route("a", filters=(RequestHeaderModifier(set=(("X", "1"),)),))
    assert with_filter.actions is not None
    assert with_filter.actions.choice is None  # the one upstream stays `target`
    assert with_filter.actions.changes_request
    assert not Route("a", filters=(RequestRedirect(),)).actions.changes_request  # type: ignore[union-attr]


def test_response_modifier_compiles_to_an_edit_in_set_add_remove_order() -> None:
    modifier = ResponseHeaderModifier(
        set=(("X-Set", "s"), ("X-Both", "gone")),
        add=(("X-Add", "a"), ("x-set", "again")),
        remove=("x-both", "X-Remove"),
    )
    edit = modifier.edit()
    # set drops the upstream's fields of its names, remove drops its names (and what set or
    # add gave them); add keeps the upstream's.
    assert edit.drop == {b"x-set", b"x-both", b"x-remove"}
    assert edit.append == ((b"X-Set", b"s"), (b"X-Add", b"a"), (b"x-set", b"again"))
    raw = [(b"x-SET", b"old"), (b"X-Add", b"old"), (b"X-Remove", b"r"), (b"X-Keep", b"k")]
    assert edit.apply(raw) == [
        (b"X-Add", b"old"),
        (b"X-Keep", b"k"),
        (b"X-Set", b"s"),
        (b"X-Add", b"a"),
        (b"x-set", b"again"),
    ]
    assert raw[0] == (b"x-SET", b"old")  # the upstream's list is not changed in place


def test_a_route_with_a_response_modifier_carries_its_edit() -> None:
    route = Route("a", filters=(ResponseHeaderModifier(add=(("X", "1"),)),))
    assert isinstance(route.actions, Actions)
    assert route.actions.response_edit == ResponseEdit(frozenset(), ((b"X", b"1"),))
    assert not route.actions.changes_request
    plain = Route("a", filters=(RequestHeaderModifier(set=(("X", "1"),)),))
    assert plain.actions is not None and plain.actions.response_edit is None
