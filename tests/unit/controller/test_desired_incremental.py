"""The incremental desired state equals a full rebuild, whatever the sequence of changes.

A seeded random walk over a small cluster in the real Cache (Services opting in and out,
route conflicts won and lost, broken annotations, slices added, changed, moved between
Services and deleted, relists), checked after every batch against `build_desired` on a fresh
state: the same upstreams, route table, problems (in the same order) and missing Services.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from controller.annotations import Defaults
from controller.cache import Cache, Changes, ObjectRef
from controller.desired import Desired, DesiredState, Selection, build_desired
from controller.objects import ServiceInfo, SliceInfo
from tests.unit.controller.factories import endpoint_json, service, slice_

NAMESPACES = ("shop", "pay")
NAMES = tuple(f"svc{i}" for i in range(8))
SLICE_NAMES = tuple(f"slice{i}" for i in range(10))
HOSTS = (None, "a.example", "b.example", "*.example")
PREFIXES = (None, "/", "/api", "/api/v2")
CREATED = ("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "")


def random_service(rng: random.Random) -> ServiceInfo:
    annotations: dict[str, str] = {}
    if (host := rng.choice(HOSTS)) is not None:
        annotations["host"] = host
    if (prefix := rng.choice(PREFIXES)) is not None:
        annotations["path-prefix"] = prefix
    roll = rng.random()
    if roll < 0.1:
        annotations["strategy"] = "fastest"  # invalid: a problem, still enrolled
    elif roll < 0.15:
        annotations["host"] = "bad host"  # blocking: not enrolled
    elif roll < 0.2:
        annotations["unknown"] = "x"
    extra: dict[str, Any] = {}
    if rng.random() < 0.1:
        extra["ports"] = ({"name": "grpc", "port": 81},)  # no port named like the slices'
    return service(
        rng.choice(NAMES),
        rng.choice(NAMESPACES),
        enabled=rng.random() < 0.85,
        annotations=annotations,
        created=rng.choice(CREATED),
        **extra,
    )


def random_slice(rng: random.Random) -> SliceInfo:
    count = rng.randrange(0, 4)
    endpoints = [
        endpoint_json(f"10.0.{rng.randrange(3)}.{rng.randrange(1, 6)}", ready=rng.random() < 0.8)
        for _ in range(count)
    ]
    return slice_(
        rng.choice(NAMES),
        rng.choice(NAMESPACES),
        name=rng.choice(SLICE_NAMES),
        address_type="IPv4" if rng.random() < 0.9 else "IPv6",
        endpoints=endpoints,
    )


def change(cache: Cache, rng: random.Random, known: dict[tuple[str, str, str], Any]) -> None:
    """One random event, as the watch would deliver it."""
    roll = rng.random()
    if roll < 0.3:
        svc = random_service(rng)
        cache.upsert("Service", svc)
        known["Service", *svc.key] = svc
    elif roll < 0.45:
        svc_key = rng.choice([k for k in known if k[0] == "Service"] or [("Service", "shop", "x")])
        if (gone := known.pop(svc_key, None)) is not None:
            cache.delete("Service", gone)
    elif roll < 0.8:
        sl = random_slice(rng)
        cache.upsert("EndpointSlice", sl)
        known["EndpointSlice", *sl.key] = sl
    elif roll < 0.95:
        sl_key = rng.choice([k for k in known if k[0] == "EndpointSlice"] or [("", "", "")])
        if (gone := known.pop(sl_key, None)) is not None:
            cache.delete("EndpointSlice", gone)
    else:
        # A relist: fresh but mostly equal objects, a few changed, a few gone.
        for kind in ("Service", "EndpointSlice"):
            keep = [(k, v) for k, v in known.items() if k[0] == kind and rng.random() < 0.9]
            for k in [k for k in known if k[0] == kind]:
                del known[k]
            fresh = []
            for _, v in keep:
                v = (
                    v
                    if rng.random() < 0.9
                    else (random_service if kind == "Service" else random_slice)(rng)
                )
                known[kind, *v.key] = v
                fresh.append(v)
            cache.replace_all(kind, fresh)  # type: ignore[arg-type]


def assert_same(incremental: Desired, full: Desired) -> None:
    assert dict(incremental.upstreams) == dict(full.upstreams)
    assert incremental.table == full.table
    assert incremental.problems == full.problems
    assert incremental.missing == full.missing


SELECTIONS = {
    "ingress": Selection(),
    "sidecar": Selection(
        "sidecar", frozenset({("shop", "svc0"), ("pay", "svc1"), ("shop", "svc2")})
    ),
}


@pytest.mark.parametrize("mode", sorted(SELECTIONS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_equals_full_rebuild_over_a_random_walk(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    selection = SELECTIONS[mode]
    cache = Cache()
    cache.replace_all("Service", [])
    cache.replace_all("EndpointSlice", [])
    state = DesiredState(cache, selection, Defaults())
    assert_same(state.update(cache.take_changes()), build_desired(cache, selection, Defaults()))
    known: dict[tuple[str, str, str], Any] = {}
    conflicts = 0
    for _ in range(1500):
        for _ in range(rng.choice((1, 1, 1, 2, 5))):
            change(cache, rng, known)
        got = state.update(cache.take_changes())
        want = build_desired(cache, selection, Defaults())
        assert_same(got, want)
        conflicts += any(p.event_reason == "RouteConflict" for _, p in want.problems)
        # The memo holds only what the current state uses.
        assert set(state.memo.services) <= set(cache.services())
    if mode == "ingress":
        assert conflicts > 100  # the walk did exercise route conflicts


def test_a_kind_without_a_mapping_rebuilds_everything() -> None:
    cache = Cache()
    cache.replace_all("Service", [service()])
    cache.replace_all("EndpointSlice", [slice_(endpoints=[endpoint_json("10.0.0.1")])])
    state = DesiredState(cache, Selection(), Defaults())
    first = state.update(cache.take_changes())
    # Changed behind the change notes' back: only a full rebuild can see it.
    cache.upsert("Service", service("api", annotations={"path-prefix": "/api"}))
    cache.take_changes()
    assert state.update(Changes()).upstreams == first.upstreams
    rebuilt = state.update(Changes(frozenset({ObjectRef("HTTPRoute", "shop", "web")})))
    assert set(rebuilt.upstreams) == {"shop/web", "shop/api"}


def test_an_endpoint_change_keeps_the_route_table_object() -> None:
    cache = Cache()
    cache.replace_all("Service", [service(), service("api", annotations={"path-prefix": "/a"})])
    cache.replace_all("EndpointSlice", [slice_(endpoints=[endpoint_json("10.0.0.1")])])
    state = DesiredState(cache, Selection(), Defaults())
    before = state.update(cache.take_changes())
    cache.upsert("EndpointSlice", slice_(endpoints=[endpoint_json("10.0.0.2")]))
    after = state.update(cache.take_changes())
    assert after.table is before.table  # nothing for the router to compare or swap
    assert after.upstreams["shop/api"] is before.upstreams["shop/api"]
    assert after.upstreams["shop/web"] != before.upstreams["shop/web"]


def test_the_route_winner_leaving_hands_the_route_over() -> None:
    old = service("old", created="2024-01-01T00:00:00Z")
    new = service("new", created="2024-02-01T00:00:00Z")
    cache = Cache()
    cache.replace_all("Service", [old, new])
    cache.replace_all("EndpointSlice", [])
    state = DesiredState(cache, Selection(), Defaults())
    first = state.update(cache.take_changes())
    assert set(first.upstreams) == {"shop/old"}
    assert [(s.name, p.event_reason) for s, p in first.problems] == [("new", "RouteConflict")]
    cache.delete("Service", old)
    second = state.update(cache.take_changes())
    assert set(second.upstreams) == {"shop/new"}
    assert second.problems == ()
    assert [r.upstream for r in second.table.routes] == ["shop/new"]


def test_a_relist_of_equal_objects_reuses_every_translation() -> None:
    cache = Cache()
    cache.replace_all("Service", [service()])
    cache.replace_all("EndpointSlice", [slice_(endpoints=[endpoint_json("10.0.0.1")])])
    state = DesiredState(cache, Selection(), Defaults())
    first = state.update(cache.take_changes())
    entry, slice_entry = (
        state.memo.services["shop", "web"],
        state.memo.slices["shop", "web-ipv4", "http"],
    )
    # Fresh copies, as a relist after a 410 hands back: equal, not the same objects.
    cache.upsert("Service", service(annotations={"strategy": "least-request"}))
    cache.replace_all("Service", [service()])
    cache.replace_all("EndpointSlice", [slice_(endpoints=[endpoint_json("10.0.0.1")])])
    assert cache.take_changes().everything
    again = state.update(Changes(everything=True))
    assert state.memo.services["shop", "web"] is entry
    assert state.memo.slices["shop", "web-ipv4", "http"] is slice_entry
    assert again.upstreams["shop/web"] is first.upstreams["shop/web"]
