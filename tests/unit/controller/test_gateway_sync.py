"""The Gateway side of the sync over a real Cache (no API, no sockets): nothing before every
Gateway API stream has listed, then listeners, upstreams from EndpointSlices, status writes
only where the objects differ, and the per-Gateway Service; the diffs of the owned Services
and of statuses on their own."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller import gateway_sync
from controller.annotations import Defaults
from controller.app import GatewayOptions
from controller.cache import Cache, Changes, ObjectRef, WatchScope
from controller.gateway import services as owned
from controller.gateway.state import GatewayService, GatewayServicePort, service_name
from controller.gateway.status_writer import status_patch
from controller.gateway_streams import GatewayStreams, RawObject
from controller.gateway_sync import GatewayDesired, GatewaySync
from controller.objects import SliceInfo
from tests.unit.controller.gateway import builders as b

NAMESPACE = "kubeferry"
OPTIONS = GatewayOptions(
    controller_name=b.CONTROLLER,
    service_namespace=NAMESPACE,
    service_selector=(("app", "kubeferry"),),
)


def raw(kind: str, body: dict[str, Any], rv: str = "1") -> RawObject:
    body = copy.deepcopy(body)
    body["metadata"]["resourceVersion"] = rv
    return RawObject.from_api(kind, body)


def web_slice(*addresses: str) -> SliceInfo:
    return SliceInfo.from_api(
        {
            "metadata": {
                "namespace": b.INFRA,
                "name": "web-1",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        }
    )


def listed_cache() -> Cache:
    cache = Cache(gateway=GatewayStreams(NAMESPACE, "gateway.kubeferry.io/namespace"))
    for kind, scope in cache.watched():
        cache.replace_all(kind, [], scope=scope)
    return cache


def fill(cache: Cache) -> None:
    scope = WatchScope()
    cache.replace_all("GatewayClass", [raw("GatewayClass", b.gateway_class())], scope=scope)
    cache.replace_all("Gateway", [raw("Gateway", b.gateway())], scope=scope)
    cache.replace_all("HTTPRoute", [raw("HTTPRoute", b.route(hostnames=["web.test"]))], scope=scope)
    cache.replace_all(
        "Namespace",
        [raw("Namespace", {"metadata": {"name": b.INFRA, "labels": {"team": "edge"}}})],
        scope=scope,
    )
    cache.replace_all("Service", [b.svc()], scope=scope)
    cache.replace_all("EndpointSlice", [web_slice("10.244.0.7")], scope=scope)


def reported(sync: GatewaySync) -> GatewayDesired:
    """What a started replica wants once the data plane has reported its listeners bound:
    the first build (statuses held), the report, and the sync the report wakes."""
    first = sync.sync()
    assert first is not None and first.statuses == ()
    assert sync.listeners_applied(first.listeners, frozenset(s.port for s in first.listeners))
    desired = sync.sync(Changes())
    assert desired is not None
    return desired


def test_nothing_is_built_before_every_gateway_stream_has_listed() -> None:
    cache = Cache(gateway=GatewayStreams(NAMESPACE, "gateway.kubeferry.io/namespace"))
    cache.replace_all("Service", [])
    cache.replace_all("EndpointSlice", [])
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    assert sync.sync() is None
    assert sync.pending is None


def test_a_gateway_and_route_give_listener_upstream_service_and_statuses() -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    desired = reported(sync)

    [listener] = desired.listeners
    assert listener.name == "gateway/infra/gw/80"
    assert 20000 <= listener.port <= 29999
    [upstream] = desired.upstreams.values()
    assert upstream.name == "infra/web:8080"
    assert [(e.host, e.port) for e in upstream.endpoints] == [("10.244.0.7", 3000)]

    [create] = desired.services
    assert (create.action, create.name) == ("create", service_name(b.INFRA, "gw"))
    assert create.body is not None
    assert create.body["metadata"]["namespace"] == NAMESPACE
    assert create.body["metadata"]["annotations"] == {"gateway.kubeferry.io/gateway": "infra/gw"}
    assert create.body["spec"]["selector"] == {"app": "kubeferry"}
    assert create.body["spec"]["ports"] == [
        {"name": "gw-80", "protocol": "TCP", "port": 80, "targetPort": listener.port}
    ]
    written = {(w.kind, w.namespace, w.name) for w in desired.statuses}
    assert written == {
        ("GatewayClass", "", b.CLASS),
        ("Gateway", b.INFRA, "gw"),
        ("HTTPRoute", b.INFRA, "route"),
    }
    assert all(w.resource_version == "1" for w in desired.statuses)
    assert sync.pending == 4

    # Nothing changed: the same desired state, not even rebuilt.
    assert sync.sync(Changes()) is desired


def test_statuses_already_shown_are_not_written_again() -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    desired = sync.sync()
    assert desired is not None
    # The API server applies every patch (the watch brings the objects back, newer).
    for write in desired.statuses:
        kind = write.kind
        obj = cache.gateway_objects(kind).get((write.namespace, write.name))  # type: ignore[arg-type]
        assert obj is not None
        body = copy.deepcopy(dict(obj.body))
        body["status"] = {**(body.get("status") or {}), **write.patch}
        cache.upsert(kind, raw(kind, body, rv="2"), scope=WatchScope())  # type: ignore[arg-type]
    later = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.LATER)
    again = later.sync()
    assert again is not None and again.statuses == ()


def test_endpoint_changes_redo_only_the_upstreams_of_the_backends_they_touch() -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None
    # Nothing of the Gateway's: the same desired state.
    assert sync.sync(Changes(frozenset({ObjectRef("Service", "elsewhere", "web")}))) is first
    assert sync.sync(Changes()) is first

    cache.take_changes()
    cache.upsert("EndpointSlice", web_slice("10.244.0.8"), scope=WatchScope())
    moved = sync.sync(cache.take_changes())
    assert moved is not None and moved is not first
    assert [e.host for e in moved.upstreams["infra/web:8080"].endpoints] == ["10.244.0.8"]
    # Only the upstreams were redone: the listeners are the very same objects.
    assert moved.listeners is first.listeners
    assert moved.statuses is first.statuses

    # A whole rebuild keeps an equal upstream as the same object (the data plane's).
    again = sync.sync(None)
    assert again is not None and again is not moved
    assert again.upstreams["infra/web:8080"] is moved.upstreams["infra/web:8080"]


def test_a_backend_service_appearing_rebuilds_the_statuses() -> None:
    cache = listed_cache()
    fill(cache)
    cache.replace_all("Service", [], scope=WatchScope())
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None and first.upstreams == {}
    cache.take_changes()
    cache.upsert("Service", b.svc(), scope=WatchScope())
    found = sync.sync(cache.take_changes())
    assert found is not None and list(found.upstreams) == ["infra/web:8080"]
    assert found.listeners is not first.listeners  # a whole build: the route resolved


def test_bound_ports_rebuild_the_statuses() -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None
    sync.bound_ports = frozenset({first.listeners[0].port})
    assert sync.sync() is not first


def gateway_service(*ports: tuple[int, int]) -> GatewayService:
    return GatewayService(
        service_name(b.INFRA, "gw"),
        (b.INFRA, "gw"),
        tuple(GatewayServicePort(f"gw-{p}", p, t) for p, t in ports),
    )


def existing(service: GatewayService, **spec: Any) -> dict[tuple[str, str], RawObject]:
    body = owned.manifest(service, NAMESPACE, (("app", "kubeferry"),))
    body["metadata"]["uid"] = "uid-1"
    body["spec"].update(spec)
    return {(NAMESPACE, service.name): raw("Service", body)}


def test_owned_service_changes() -> None:
    wanted = gateway_service((80, 20001))
    selector = (("app", "kubeferry"),)
    same = existing(wanted, clusterIP="10.0.0.9")
    assert owned.changes([wanted], same, namespace=NAMESPACE, selector=selector) == ()
    assert owned.addresses(same.values()) == {(b.INFRA, "gw"): "10.0.0.9"}

    [patch] = owned.changes(
        [gateway_service((80, 20001), (443, 20002))],
        existing(wanted, selector={"app": "kubeferry", "old": "x"}),
        namespace=NAMESPACE,
        selector=selector,
    )
    assert patch.action == "patch" and patch.body is not None
    assert patch.body["spec"]["selector"] == {"old": None, "app": "kubeferry"}
    assert [p["port"] for p in patch.body["spec"]["ports"]] == [80, 443]

    [delete] = owned.changes([], same, namespace=NAMESPACE, selector=selector)
    assert (delete.action, delete.name, delete.uid) == ("delete", wanted.name, "uid-1")
    # A Gateway with no port to serve gets no Service (a ClusterIP Service needs one).
    assert owned.changes([gateway_service()], {}, namespace=NAMESPACE, selector=selector) == ()


def test_status_patch_is_the_top_level_difference() -> None:
    desired = {"conditions": [{"type": "Accepted"}], "listeners": []}
    assert status_patch(desired, desired) is None
    assert status_patch(desired, None) == desired
    assert status_patch(desired, {"conditions": [{"type": "Accepted"}], "addresses": [1]}) == {
        "listeners": [],
        "addresses": None,
    }


def test_a_failing_gateway_build_keeps_the_last_state_and_rebuilds_next_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the model")

    monkeypatch.setattr(gateway_sync, "build", broken)
    assert sync.sync(None) is first  # logged, the last state kept, no exception
    assert [r for r in caplog.records if getattr(r, "event", "") == "gateway_sync_failed"]
    monkeypatch.undo()
    again = sync.sync(Changes())  # nothing changed, but the last one failed: whole again
    assert again is not None and again is not first


def apply_writes(cache: Cache, writes: Any, rv: str) -> None:
    """What the API server and the watch do with status writes: the objects come back with
    the patch applied and a new resourceVersion."""
    for write in writes:
        obj = cache.gateway_objects(write.kind).get((write.namespace, write.name))
        assert obj is not None
        body = copy.deepcopy(dict(obj.body))
        body["status"] = {**(body.get("status") or {}), **write.patch}
        cache.upsert(write.kind, raw(write.kind, body, rv=rv), scope=WatchScope())


def test_our_own_status_writes_coming_back_do_not_rebuild() -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = reported(sync)
    assert first.statuses
    apply_writes(cache, first.statuses, rv="2")
    echoed = sync.sync(Changes())
    assert echoed is not None and echoed.statuses == () and sync.pending == 1  # the Service
    assert echoed.listeners is first.listeners  # no build ran

    # Someone else changes a status: a whole build (it may hold other controllers' parents).
    route = cache.gateway_objects("HTTPRoute")[(b.INFRA, "route")]
    body = copy.deepcopy(dict(route.body))
    body["status"]["parents"].append({"controllerName": "example.com/other", "parentRef": {}})
    cache.upsert("HTTPRoute", raw("HTTPRoute", body, rv="3"), scope=WatchScope())
    rebuilt = sync.sync(Changes())
    assert rebuilt is not None and rebuilt.listeners is not first.listeners

    # A spec change: a whole build.
    body["spec"]["hostnames"] = ["other.test"]
    body["metadata"]["generation"] = 2
    cache.upsert("HTTPRoute", raw("HTTPRoute", body, rv="4"), scope=WatchScope())
    again = sync.sync(Changes())
    assert again is not None and again is not rebuilt
    assert [w.name for w in again.statuses] == ["route"]  # observedGeneration 2


def test_no_status_is_written_before_the_data_plane_reports_its_listeners() -> None:
    # A replica starting next to one that serves: until its own sockets are bound it would
    # say Programmed False, and the other replica would put it back.
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None and first.listeners and first.services
    assert first.statuses == () and sync.pending is None  # not settled: statuses held
    # Another replica's statuses come back through the watch meanwhile: still nothing.
    gateway = cache.gateway_objects("Gateway")[(b.INFRA, "gw")]
    body = copy.deepcopy(dict(gateway.body))
    body["status"] = {"conditions": [{"type": "Programmed", "status": "True"}]}
    cache.upsert("Gateway", raw("Gateway", body, rv="2"), scope=WatchScope())
    held = sync.sync(Changes())
    assert held is not None and held.statuses == ()

    assert sync.listeners_applied(first.listeners, frozenset({first.listeners[0].port}))
    desired = sync.sync(Changes())
    assert desired is not None and sync.pending == len(desired.statuses) + len(desired.services)
    [gateway_write] = [w for w in desired.statuses if w.kind == "Gateway"]
    [listener] = gateway_write.patch["listeners"]
    conditions = {c["type"]: c["status"] for c in listener["conditions"]}
    assert conditions["Programmed"] == "True"  # its socket is bound: never a False first


def test_a_report_of_no_sockets_lifts_the_hold_too() -> None:
    # Nothing to serve (a GatewayClass, no Gateway yet): the data plane reports no port
    # bound, which is the port set the first build assumed; the statuses still come.
    cache = listed_cache()
    cache.replace_all("GatewayClass", [raw("GatewayClass", b.gateway_class())], scope=WatchScope())
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None and first.listeners == () and first.statuses == ()
    assert sync.listeners_applied(first.listeners, frozenset())
    desired = sync.sync(Changes())
    assert desired is not None
    assert [(w.kind, w.name) for w in desired.statuses] == [("GatewayClass", b.CLASS)]
    assert sync.pending == 1


def test_an_upstream_the_new_routes_drop_stays_until_the_data_plane_has_them() -> None:
    cache = listed_cache()
    fill(cache)
    cache.upsert("Service", b.svc("api"), scope=WatchScope())
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None and list(first.upstreams) == ["infra/web:8080"]
    assert sync.listeners_applied(first.listeners, frozenset({first.listeners[0].port}))

    # The route moves to another backend: the new upstream comes at once, the old one stays
    # while the data plane's routes (the old listeners) still use it.
    route = cache.gateway_objects("HTTPRoute")[(b.INFRA, "route")]
    body = copy.deepcopy(dict(route.body))
    body["spec"]["rules"] = [b.rule(backends=[b.backend("api", 8080)])]
    cache.upsert("HTTPRoute", raw("HTTPRoute", body, rv="2"), scope=WatchScope())
    moved = sync.sync(Changes())
    assert moved is not None
    assert set(moved.upstreams) == {"infra/web:8080", "infra/api:8080"}
    assert moved.upstreams["infra/web:8080"] is first.upstreams["infra/web:8080"]

    # The writer applied the new listeners: the old upstream goes with the next sync.
    assert sync.listeners_applied(moved.listeners, sync.bound_ports)
    done = sync.sync(Changes())
    assert done is not None and list(done.upstreams) == ["infra/api:8080"]
    assert not sync.listeners_applied(moved.listeners, sync.bound_ports)  # nothing new


def test_another_controllers_status_writes_do_not_rebuild() -> None:
    cache = listed_cache()
    fill(cache)
    theirs = b.route("theirs", parents=[b.parent("their-gw")], hostnames=["x.test"])
    cache.upsert("HTTPRoute", raw("HTTPRoute", theirs), scope=WatchScope())
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = reported(sync)

    other = {"controllerName": "example.com/other", "parentRef": {"name": "their-gw"}}
    theirs["status"] = {"parents": [other]}
    cache.upsert("HTTPRoute", raw("HTTPRoute", theirs, rv="2"), scope=WatchScope())
    assert sync.sync(Changes()).listeners is first.listeners  # type: ignore[union-attr]

    # A status naming us on a route that is not ours any more: a build, to clear it.
    ours = {"controllerName": b.CONTROLLER, "parentRef": {"name": "gw"}}
    theirs["status"] = {"parents": [other, ours]}
    cache.upsert("HTTPRoute", raw("HTTPRoute", theirs, rv="3"), scope=WatchScope())
    cleared = sync.sync(Changes())
    assert cleared is not None and cleared.listeners is not first.listeners
    assert "theirs" in [w.name for w in cleared.statuses]


def test_a_namespace_change_rebuilds_only_when_its_labels_change() -> None:
    cache = listed_cache()
    fill(cache)
    sync = GatewaySync(cache, OPTIONS, Defaults(), now=lambda: b.NOW)
    first = sync.sync()
    assert first is not None
    namespace = {"metadata": {"name": b.INFRA, "labels": {"team": "edge"}}}
    terminating = {**namespace, "status": {"phase": "Terminating"}}
    cache.upsert("Namespace", raw("Namespace", terminating, rv="2"), scope=WatchScope())
    same = sync.sync(Changes())
    assert same is not None and same.listeners is first.listeners  # no build ran
    relabelled = {"metadata": {"name": b.INFRA, "labels": {"team": "core"}}}
    cache.upsert("Namespace", raw("Namespace", relabelled, rv="3"), scope=WatchScope())
    again = sync.sync(Changes())
    assert again is not None and again.listeners is not first.listeners
