"""The desired state before anything happened, and a memo shared across full rebuilds."""

from __future__ import annotations

from controller.annotations import Defaults
from controller.cache import Cache, Changes
from controller.desired import DesiredState, Selection, build_desired
from controller.memo import Translations
from proxy.routing import RouteTable
from tests.unit.controller.factories import endpoint_json, service, slice_


def test_an_update_with_nothing_changed_yet_is_empty_not_broken() -> None:
    state = DesiredState(Cache(), Selection(), Defaults())
    desired = state.update(Changes())
    assert desired.table == RouteTable()
    assert desired.upstreams == {}
    assert desired.table.match("shop.example.com", "/") is None


def test_full_rebuilds_sharing_a_memo_reuse_its_translations() -> None:
    cache = Cache()
    cache.replace_all("Service", [service()])
    cache.replace_all("EndpointSlice", [slice_(endpoints=[endpoint_json("10.0.0.1")])])
    memo = Translations()
    first = build_desired(cache, Selection(), Defaults(), memo=memo)
    second = build_desired(cache, Selection(), Defaults(), memo=memo)
    assert second.upstreams == first.upstreams
    # The same objects, not just equal ones: nothing was translated twice.
    assert second.upstreams["shop/web"] is first.upstreams["shop/web"]
    state = DesiredState(cache, Selection(), Defaults(), memo=memo)
    assert state.rebuild().upstreams["shop/web"] is first.upstreams["shop/web"]
