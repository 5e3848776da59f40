"""The cache's Gateway API streams: raw objects merged over scopes, listed apart from the
annotated mode's `synced`, changes flagged for the Gateway sync and never noted as Changes."""

from __future__ import annotations

from typing import Any

from controller.cache import Cache, Changes, ObjectRef, WatchScope
from controller.gateway_streams import GatewayStreams, RawObject

STREAMS = GatewayStreams("kubeferry", "gateway.kubeferry.io/namespace")


def raw(kind: str, namespace: str, name: str, rv: str = "1") -> RawObject:
    body: dict[str, Any] = {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"gatewayClassName": "kubeferry"},
    }
    return RawObject.from_api(kind, body)


def list_gateway_streams(cache: Cache) -> None:
    for kind, scope in cache.watched():
        if kind not in ("Service", "EndpointSlice"):
            cache.replace_all(kind, [], scope=scope)


def test_gateway_streams_are_per_scope_or_cluster_wide() -> None:
    cache = Cache([WatchScope("a"), WatchScope("b")], gateway=STREAMS)
    streams = {(kind, str(scope)) for kind, scope in cache.watched()}
    assert streams == {
        ("Service", "a/*"),
        ("Service", "b/*"),
        ("EndpointSlice", "a/*"),
        ("EndpointSlice", "b/*"),
        ("Gateway", "a/*"),
        ("Gateway", "b/*"),
        ("HTTPRoute", "a/*"),
        ("HTTPRoute", "b/*"),
        ("ReferenceGrant", "a/*"),
        ("ReferenceGrant", "b/*"),
        ("GatewayClass", "*/*"),
        ("Namespace", "*/*"),
        ("GatewayService", "kubeferry/*"),
    }
    assert {kind for kind, _ in Cache().watched()} == {"Service", "EndpointSlice"}


def test_raw_objects_drop_managed_fields_and_compare_by_resource_version() -> None:
    gateway = raw("Gateway", "a", "web")
    assert "managedFields" not in gateway.metadata
    assert gateway.body["spec"] == {"gatewayClassName": "kubeferry"}
    assert gateway == raw("Gateway", "a", "web")
    assert gateway != raw("Gateway", "a", "web", rv="2")
    assert "spec" not in repr(gateway)


def test_gateway_lists_do_not_hold_back_synced_and_note_no_changes() -> None:
    cache = Cache([WatchScope("a"), WatchScope("b")], gateway=STREAMS)
    for scope in cache.scopes:
        cache.replace_all("Service", [], scope=scope)
        cache.replace_all("EndpointSlice", [], scope=scope)
    assert cache.synced and not cache.gateway_listed
    assert "GatewayClass */*" in cache.gateway_missing()
    cache.take_changes()
    cache.take_gateway_changed()

    cache.replace_all("Gateway", [raw("Gateway", "a", "web")], scope=WatchScope("a"))
    assert not cache.take_changes()  # the annotated state never reads Gateways
    assert cache.take_gateway_changed() and not cache.take_gateway_changed()
    assert cache.changed.is_set()
    list_gateway_streams(cache)
    assert cache.gateway_listed and cache.gateway_missing() == []
    assert cache.take_gateway_changed().everything  # a first list is news, even an empty one


def test_gateway_objects_merge_scopes_copy_on_write() -> None:
    cache = Cache([WatchScope("a"), WatchScope("b")], gateway=STREAMS)
    list_gateway_streams(cache)
    cache.replace_all("Gateway", [raw("Gateway", "a", "one")], scope=WatchScope("a"))
    held = cache.gateway_objects("Gateway")
    cache.take_gateway_changed()

    assert cache.upsert("Gateway", raw("Gateway", "b", "two"), scope=WatchScope("b"))
    assert not cache.upsert("Gateway", raw("Gateway", "b", "two"), scope=WatchScope("b"))
    assert cache.take_gateway_changed() == Changes(frozenset({ObjectRef("Gateway", "b", "two")}))
    assert sorted(cache.gateway_objects("Gateway")) == [("a", "one"), ("b", "two")]
    assert sorted(held) == [("a", "one")]  # what the sync held did not change under it

    # An object outside its stream's scope is ignored.
    assert not cache.upsert("Gateway", raw("Gateway", "c", "x"), scope=WatchScope("a"))
    assert cache.delete("Gateway", raw("Gateway", "a", "one"), scope=WatchScope("a"))
    assert sorted(cache.gateway_objects("Gateway")) == [("b", "two")]
    assert not cache.delete("Gateway", raw("Gateway", "a", "one"), scope=WatchScope("a"))

    # Cluster-scoped kinds have namespace "".
    cache.upsert("GatewayClass", raw("GatewayClass", "", "kubeferry"), scope=WatchScope())
    assert list(cache.gateway_objects("GatewayClass")) == [("", "kubeferry")]
    assert cache.gateway_objects("HTTPRoute") == {}


def test_without_gateway_streams_nothing_is_gateway_listed() -> None:
    cache = Cache()
    assert not cache.gateway_listed
    assert cache.gateway_objects("Gateway") == {}
