"""The cache: atomic relists, incremental events, the one-slot change signal, scopes."""

from __future__ import annotations

import asyncio

import pytest

from controller.cache import EVERYTHING, Cache, Changes, ChangeSignal, ObjectRef, WatchScope
from controller.objects import ClusterView
from tests.unit.controller.canned_api import slice_info, svc_info


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def listed(cache: Cache, scope: WatchScope | None = None) -> Cache:
    """Mark both kinds listed (empty) so the cache is synced."""
    cache.replace_all("Service", [], scope=scope)
    cache.replace_all("EndpointSlice", [], scope=scope)
    return cache


def test_cache_is_a_cluster_view() -> None:
    view: ClusterView = Cache()
    assert view.services() == {}
    assert view.slices_for("shop", "web") == ()


def test_replace_all_fills_both_indexes_and_repr_tells() -> None:
    cache = Cache()
    assert repr(cache) == "<Cache 0 services, 0 slices, syncing>"
    cache.replace_all("Service", [svc_info("shop", "web"), svc_info("shop", "api")])
    assert not cache.synced  # slices not listed yet
    cache.replace_all(
        "EndpointSlice",
        [
            slice_info("shop", "web-b", "web", "10.244.0.2"),
            slice_info("shop", "web-a", "web", "10.244.0.1"),
            slice_info("shop", "api-a", "api", "10.244.0.3"),
            slice_info("other", "web-a", "web", "10.244.1.1"),
        ],
    )
    assert cache.synced
    assert repr(cache) == "<Cache 2 services, 4 slices, synced>"
    assert set(cache.services()) == {("shop", "web"), ("shop", "api")}
    assert [s.name for s in cache.slices_for("shop", "web")] == ["web-a", "web-b"]
    assert [s.name for s in cache.slices_for("other", "web")] == ["web-a"]


async def test_wait_synced_returns_after_every_stream_listed() -> None:
    cache = Cache()
    waiter = asyncio.ensure_future(cache.wait_synced())
    cache.replace_all("Service", [])
    await asyncio.sleep(0)
    assert not waiter.done()
    cache.replace_all("EndpointSlice", [])
    await asyncio.wait_for(waiter, 1)


def test_relist_replaces_atomically_and_drops_what_vanished() -> None:
    cache = listed(Cache())
    cache.replace_all("Service", [svc_info("shop", "web"), svc_info("shop", "old")])
    cache.replace_all(
        "EndpointSlice",
        [slice_info("shop", "web-a", "web", "10.244.0.1"), slice_info("shop", "old-a", "old")],
    )
    # Deleted while the watch was down: the relist simply lacks them.
    cache.replace_all("Service", [svc_info("shop", "web", rv="7")])
    cache.replace_all("EndpointSlice", [slice_info("shop", "web-a", "web", "10.244.0.9")])
    assert set(cache.services()) == {("shop", "web")}
    assert cache.services()[("shop", "web")].resource_version == "7"
    assert cache.slices_for("shop", "old") == ()
    assert cache.slices_for("shop", "web")[0].endpoints[0].addresses == ("10.244.0.9",)


def test_an_identical_relist_is_not_a_change() -> None:
    cache = listed(Cache())
    assert cache.replace_all("Service", [svc_info("shop", "web")])
    generation = cache.generation
    cache.changed = ChangeSignal()
    assert not cache.replace_all("Service", [svc_info("shop", "web")])
    assert cache.generation == generation
    assert not cache.changed.is_set()


def test_upsert_and_delete_are_incremental() -> None:
    cache = listed(Cache())
    assert cache.upsert("Service", svc_info("shop", "web"))
    assert not cache.upsert("Service", svc_info("shop", "web"))  # same object: no change
    assert cache.upsert("EndpointSlice", slice_info("shop", "web-a", "web", "10.244.0.1"))
    assert cache.upsert("EndpointSlice", slice_info("shop", "web-b", "web", "10.244.0.2"))
    assert repr(cache) == "<Cache 1 services, 2 slices, synced>"
    assert cache.delete("EndpointSlice", slice_info("shop", "web-a", "web"))
    assert not cache.delete("EndpointSlice", slice_info("shop", "web-a", "web"))
    assert [s.name for s in cache.slices_for("shop", "web")] == ["web-b"]
    assert cache.delete("Service", svc_info("shop", "web"))
    assert cache.services() == {}


def test_a_slice_relabelled_to_another_service_moves() -> None:
    cache = listed(Cache())
    cache.upsert("EndpointSlice", slice_info("shop", "s1", "web", "10.244.0.1"))
    cache.upsert("EndpointSlice", slice_info("shop", "s1", "api", "10.244.0.1", rv="2"))
    assert cache.slices_for("shop", "web") == ()
    assert [s.name for s in cache.slices_for("shop", "api")] == ["s1"]


def test_a_slice_without_the_service_label_belongs_to_nothing() -> None:
    cache = listed(Cache())
    cache.upsert("EndpointSlice", slice_info("shop", "orphan", "", "10.244.0.1"))
    assert cache.slices_for("shop", "") == ()
    assert repr(cache) == "<Cache 0 services, 0 slices, synced>"


def test_views_already_handed_out_never_change() -> None:
    cache = listed(Cache())
    cache.upsert("Service", svc_info("shop", "web"))
    cache.upsert("EndpointSlice", slice_info("shop", "web-a", "web", "10.244.0.1"))
    services = cache.services()
    slices = cache.slices_for("shop", "web")
    cache.upsert("Service", svc_info("shop", "api"))
    cache.delete("Service", svc_info("shop", "web"))
    cache.upsert("EndpointSlice", slice_info("shop", "web-b", "web", "10.244.0.2"))
    assert set(services) == {("shop", "web")}
    assert [s.name for s in slices] == ["web-a"]
    with pytest.raises(TypeError):
        services[("shop", "x")] = svc_info("shop", "x")  # type: ignore[index]


async def test_changes_coalesce_into_one_wake_up_stamped_with_the_first() -> None:
    clock = FakeClock()
    cache = Cache(clock=clock)
    cache.replace_all("Service", [svc_info("shop", "web")])
    clock.now = 105.0
    cache.replace_all("EndpointSlice", [slice_info("shop", "web-a", "web", "10.244.0.1")])
    cache.upsert("Service", svc_info("shop", "api"))
    since = await asyncio.wait_for(cache.changed.wait(), 1)
    assert since == 100.0  # the first change of the burst
    assert not cache.changed.is_set()
    waiter = asyncio.ensure_future(cache.changed.wait())
    await asyncio.sleep(0)
    assert not waiter.done()  # nothing new since: no second wake-up
    clock.now = 110.0
    cache.delete("Service", svc_info("shop", "api"))
    assert await asyncio.wait_for(waiter, 1) == 110.0


def test_overlapping_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Cache([WatchScope(), WatchScope("shop")])
    with pytest.raises(ValueError, match="overlap"):
        Cache([WatchScope("shop"), WatchScope("shop", "web")])
    with pytest.raises(ValueError, match="overlap"):
        Cache([WatchScope(None, "web"), WatchScope("shop", "web")])
    Cache([WatchScope("shop", "web"), WatchScope("shop", "api"), WatchScope("other")])


def test_a_scope_keeps_only_its_own_objects() -> None:
    sidecar = WatchScope("shop", "web")
    cache = Cache([sidecar])
    cache.replace_all("Service", [svc_info("shop", "web"), svc_info("shop", "api")])
    cache.replace_all(
        "EndpointSlice",
        [
            slice_info("shop", "web-a", "web", "10.244.0.1"),
            slice_info("shop", "api-a", "api", "10.244.0.2"),
        ],
    )
    assert not cache.upsert("Service", svc_info("other", "web"))
    assert repr(cache) == "<Cache 1 services, 1 slices, synced>"


def test_relisting_one_scope_leaves_the_others_alone() -> None:
    web, api = WatchScope("shop", "web"), WatchScope("shop", "api")
    cache = Cache([web, api])
    with pytest.raises(ValueError, match="several scopes"):
        cache.replace_all("Service", [])
    cache.replace_all("Service", [svc_info("shop", "web")], scope=web)
    cache.replace_all("Service", [svc_info("shop", "api")], scope=api)
    cache.replace_all("EndpointSlice", [], scope=web)
    assert not cache.synced
    cache.replace_all("EndpointSlice", [slice_info("shop", "api-a", "api")], scope=api)
    assert cache.synced
    cache.replace_all("Service", [], scope=web)
    assert set(cache.services()) == {("shop", "api")}
    assert len(cache.slices_for("shop", "api")) == 1


def refs(*keys: tuple[str, str]) -> frozenset[ObjectRef]:
    return frozenset(ObjectRef("Service", ns, name) for ns, name in keys)


def test_changes_name_the_services_touched_and_everything_after_a_relist() -> None:
    cache = listed(Cache())
    assert cache.take_changes() == EVERYTHING  # the first time: nothing was looked at yet
    assert cache.take_changes() == Changes()  # taken: forgotten
    cache.upsert("Service", svc_info("shop", "web"))
    cache.upsert("EndpointSlice", slice_info("shop", "api-a", "api", "10.244.0.3"))
    assert cache.take_changes() == Changes(refs(("shop", "web"), ("shop", "api")))
    # A slice relabelled from api to web touches both; a slice with no label touches none.
    cache.upsert("EndpointSlice", slice_info("shop", "api-a", "web", "10.244.0.3"))
    cache.upsert("EndpointSlice", slice_info("shop", "stray", "", "10.244.0.9"))
    assert cache.take_changes() == Changes(refs(("shop", "web"), ("shop", "api")))
    cache.delete("EndpointSlice", slice_info("shop", "api-a", "web", "10.244.0.3"))
    cache.delete("Service", svc_info("shop", "web"))
    assert cache.take_changes() == Changes(refs(("shop", "web")))
    # What changed nothing notes nothing.
    cache.upsert("EndpointSlice", slice_info("shop", "stray", "", "10.244.0.9"))
    cache.delete("Service", svc_info("shop", "gone"))
    assert not cache.take_changes()
    cache.replace_all("Service", [svc_info("shop", "api")])
    assert cache.take_changes() == EVERYTHING
    cache.replace_all("Service", [svc_info("shop", "api")])  # identical: no change
    assert not cache.take_changes()
