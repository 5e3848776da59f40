"""The controller's cache of Services, EndpointSlices and the TLS Secrets enrolled Services name,
fed by the watch, read by the sync.

The watch runs one list+watch stream per (kind, scope). Each stream owns a store of what it last
reported; a relist replaces that store whole, in one plain `def`, so the sync never sees a
half-applied list, and nothing is cleared before the new list has arrived. The merged views the
sync reads are updated in the same call.

Events are only a signal: every effective change sets the one-slot `changed` flag, and the sync
rebuilds its desired state from the cache when it wakes (level-triggered). To rebuild only what
an event can have affected, the cache also notes which objects changed (`take_changes`): a
Service by its own name, a slice by the Service it is labelled with (before and after), since
slices are only ever read through their Service. A relist notes "everything": the sync then
rebuilds from scratch. The note says where to look, never what to do: the sync still reads
the objects themselves from the cache.

Secrets are different: the controller must not hold every Secret of a namespace (their data
would all be in memory), so each Secret a Service names gets its own stream, opened and closed
as the references come and go (`open_secret`, `close_secret`; controller.secret_watch). Those
streams are not part of `synced`, and a Secret's (re)list notes only that Secret, not
"everything": a Secret change redoes the Services that name it.

Gateway API (`GatewayStreams`, with `--gateway-api`; its kinds and types are in
controller.gateway_streams): GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants,
Namespaces (for allowedRoutes selectors) and the Services the controller owns for its
Gateways are kept as `RawObject`s, the API's JSON (less managedFields), because their
parsing belongs to the pure model (controller.gateway). Their streams are not part of `synced`
(the CRDs may be missing: annotated mode must not wait for them) and they note no `Changes`
(the annotated state never reads them): a change is noted apart (`take_gateway_changed`)
and wakes the sync, which brings the Gateway state up to date (controller.gateway_sync).

Mutable state, touched only from the event loop and never across an `await`:
  _stores[(kind, scope)]  key -> object, what each stream last reported
  _services               (ns, name) -> ServiceInfo; replaced by a new dict on every change
                          (copy-on-write), so a Mapping the sync holds never changes under it
  _slices                 (ns, service) -> tuple of SliceInfo sorted by name; tuples replaced
  _secrets                (ns, name) -> SecretInfo, from the Secret streams
  _listed                 streams that completed their first list
  _static                 the Service and EndpointSlice streams, which `synced` waits for
  _touched, _everything   what changed since the last `take_changes()`
  _gateway[kind]          Gateway API objects merged over scopes; dicts replaced on change
  _gateway_streams        the Gateway API streams
  _gateway_touched, _gateway_everything  Gateway API changes since `take_gateway_changed()`
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeAlias

from controller.gateway.objects import Key as Key  # (namespace, name): one alias for all
from controller.gateway_streams import (
    GATEWAY_KINDS,
    SCOPED_GATEWAY_KINDS,
    GatewayKind,
    GatewayStreams,
    RawObject,
)
from controller.objects import SecretInfo, ServiceInfo, SliceInfo

Kind: TypeAlias = Literal["Service", "EndpointSlice", "Secret"] | GatewayKind
# The kinds watched in every scope from the start; Secrets get a stream each, on demand.
KINDS: tuple[Kind, ...] = ("Service", "EndpointSlice")
Object: TypeAlias = ServiceInfo | SliceInfo | SecretInfo | RawObject


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A cached object by kind and name: what a change touched. Kinds other than Service
    (Secrets, Gateway API routes) can be noted the same way; the sync maps each kind to the
    Services it affects, and rebuilds everything for a kind it has no mapping for."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the sync last asked: `everything` (at the start and after a
    relist), else the objects in `touched`."""

    touched: frozenset[ObjectRef] = frozenset()
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.touched)


EVERYTHING = Changes(everything=True)


@dataclass(frozen=True, slots=True)
class WatchScope:
    """What one set of watches covers.

    `WatchScope()` is the whole cluster; `WatchScope("shop")` one namespace;
    `WatchScope("shop", "web")` one Service and its slices (sidecar mode), or, for a Secret
    stream, the one Secret named `web`.
    """

    namespace: str | None = None
    service: str | None = None

    def covers(self, namespace: str, service: str) -> bool:
        """Whether a Service named `service` (or a slice labelled with it) is in this scope."""
        return (self.namespace is None or self.namespace == namespace) and (
            self.service is None or self.service == service
        )

    def overlaps(self, other: WatchScope) -> bool:
        namespaces = self.namespace is None or other.namespace in (None, self.namespace)
        services = self.service is None or other.service in (None, self.service)
        return namespaces and services

    def __str__(self) -> str:
        return f"{self.namespace or '*'}/{self.service or '*'}"


def _service_of(obj: Object) -> str:
    # For a Secret: its own name, which is what its stream's scope names.
    return obj.service if isinstance(obj, SliceInfo) else obj.name


def _gateway_stream_list(
    scopes: Sequence[WatchScope], gateway: GatewayStreams
) -> list[tuple[Kind, WatchScope]]:
    streams: list[tuple[Kind, WatchScope]] = [
        ("GatewayClass", WatchScope()),
        ("Namespace", WatchScope()),
        ("GatewayService", WatchScope(gateway.service_namespace)),
    ]
    streams += [(kind, scope) for kind in SCOPED_GATEWAY_KINDS for scope in scopes]
    return streams


class ChangeSignal:
    """A one-slot "something changed" flag: any number of `notify()` calls before the consumer
    wakes collapse into one wake-up. Never a queue; the consumer rereads the whole state."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._event = asyncio.Event()
        self._clock = clock
        self._since: float | None = None

    def __repr__(self) -> str:
        return f"<ChangeSignal {'set' if self._event.is_set() else 'clear'}>"

    def notify(self) -> None:
        if self._since is None:
            self._since = self._clock()
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> float:
        """Wait for the flag, clear it, and return when (monotonic clock) the first change of
        this burst was noticed, so the consumer can measure change-to-applied delay."""
        await self._event.wait()
        self._event.clear()
        since = self._since if self._since is not None else self._clock()
        self._since = None
        return since


class Cache:
    """Services by (namespace, name) and EndpointSlices by (namespace, service): a ClusterView.

    Scopes must not overlap, so every object belongs to exactly one stream and a relist of one
    stream can never drop what another reported. Objects outside their stream's scope are
    ignored (the API server filters already; this keeps a sidecar to its own Service).
    """

    def __init__(
        self,
        scopes: Sequence[WatchScope] = (WatchScope(),),
        *,
        gateway: GatewayStreams | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not scopes:
            raise ValueError("a cache needs at least one watch scope")
        for i, scope in enumerate(scopes):
            for other in scopes[i + 1 :]:
                if scope.overlaps(other):
                    raise ValueError(f"watch scopes {scope} and {other} overlap")
        self.scopes: tuple[WatchScope, ...] = tuple(scopes)
        self.changed = ChangeSignal(clock)
        # Number of effective changes so far (a test and debug aid).
        self.generation = 0
        self._stores: dict[tuple[Kind, WatchScope], dict[Key, Object]] = {
            (kind, scope): {} for kind in KINDS for scope in self.scopes
        }
        self._services: dict[Key, ServiceInfo] = {}
        self._slices: dict[Key, tuple[SliceInfo, ...]] = {}
        self._secrets: dict[Key, SecretInfo] = {}
        self._listed: set[tuple[Kind, WatchScope]] = set()
        self._static = frozenset(self._stores)
        self._synced_event = asyncio.Event()
        self._touched: set[ObjectRef] = set()
        self._everything = True
        self.gateway = gateway
        self._gateway_streams: frozenset[tuple[Kind, WatchScope]] = frozenset()
        self._gateway: dict[str, Mapping[Key, RawObject]] = {}
        self._gateway_touched: set[ObjectRef] = set()
        self._gateway_everything = False
        if gateway is not None:
            self._gateway_streams = frozenset(_gateway_stream_list(self.scopes, gateway))
            for stream in self._gateway_streams:
                self._stores[stream] = {}
            self._gateway = {kind: MappingProxyType({}) for kind in GATEWAY_KINDS}

    def __repr__(self) -> str:
        slices = sum(len(s) for s in self._slices.values())
        state = "synced" if self.synced else "syncing"
        return f"<Cache {len(self._services)} services, {slices} slices, {state}>"

    # -- ClusterView ---------------------------------------------------------------------------

    def services(self) -> Mapping[Key, ServiceInfo]:
        return MappingProxyType(self._services)

    def slices_for(self, namespace: str, service: str) -> Sequence[SliceInfo]:
        return self._slices.get((namespace, service), ())

    def secret(self, namespace: str, name: str) -> SecretInfo | None:
        return self._secrets.get((namespace, name))

    def secret_listed(self, namespace: str, name: str) -> bool:
        return ("Secret", WatchScope(namespace, name)) in self._listed

    def secret_streams(self) -> frozenset[Key]:
        """The Secrets that have a stream open."""
        return frozenset(
            (scope.namespace or "", scope.service or "")
            for kind, scope in self._stores
            if kind == "Secret"
        )

    def watched(self) -> list[tuple[Kind, WatchScope]]:
        """The streams the watch runs from the start (Secrets come and go on demand)."""
        return sorted(
            (stream for stream in self._stores if stream[0] != "Secret"),
            key=lambda s: (s[0], str(s[1])),
        )

    # -- Gateway API view ------------------------------------------------------------------------

    def gateway_objects(self, kind: GatewayKind) -> Mapping[Key, RawObject]:
        """Every cached object of a Gateway API kind (or Namespace, or owned Service) by
        (namespace, name); a Mapping that never changes under the caller."""
        return self._gateway.get(kind) or MappingProxyType({})

    @property
    def gateway_listed(self) -> bool:
        """True once every Gateway API stream has listed once (False without them): before
        that, an absent object may only be unlisted, so nothing may be deleted for it."""
        return bool(self._gateway_streams) and self._listed >= self._gateway_streams

    def gateway_missing(self) -> list[str]:
        """The Gateway API streams not listed yet, as "Kind scope" (for logs)."""
        return sorted(f"{k} {s}" for k, s in self._gateway_streams - self._listed)

    def take_gateway_changed(self) -> Changes:
        """Which Gateway API objects changed since the last call (everything after a
        (re)list), then forget it. False when nothing did."""
        changes = (
            EVERYTHING if self._gateway_everything else Changes(frozenset(self._gateway_touched))
        )
        self._gateway_touched = set()
        self._gateway_everything = False
        return changes

    @property
    def synced(self) -> bool:
        """True once every stream (kind x scope) has completed its first list."""
        return self._synced_event.is_set()

    async def wait_synced(self) -> None:
        await self._synced_event.wait()

    def take_changes(self) -> Changes:
        """What changed since the last call (everything, the first time), and forget it."""
        changes = EVERYTHING if self._everything else Changes(frozenset(self._touched))
        self._touched = set()
        self._everything = False
        return changes

    # -- writes from the watch -----------------------------------------------------------------

    def replace_all(
        self, kind: Kind, objects: Iterable[Object], *, scope: WatchScope | None = None
    ) -> bool:
        """A (re)list result: becomes the whole truth for the stream, atomically. Objects the
        stream reported before and the list lacks are gone. Returns whether anything changed."""
        stream = self._stream(kind, scope)
        old = self._stores[stream]
        new: dict[Key, Object] = {}
        for obj in objects:
            if stream[1].covers(obj.namespace, _service_of(obj)):
                new[obj.key] = obj
        self._stores[stream] = new
        changed = new != old
        first = stream not in self._listed
        self._listed.add(stream)
        if kind == "Secret":
            # Its first list says whether it exists: a change even if nothing was found.
            self._secret_store(old, new)
            if changed or first:
                self._touch_secret(stream[1])
                self._notify()
            return changed
        if stream in self._gateway_streams:
            if changed:
                self._merge_gateway(kind)
            if changed or first:
                self._gateway_everything = True
                self._notify()
            return changed
        if changed:
            if kind == "Service":
                self._services = self._merge_services()
            else:
                self._reindex_slices(old.values(), new.values())
        if self._listed >= self._static:
            self._synced_event.set()
        if changed:
            self._everything = True
            self._notify()
        return changed

    def upsert(self, kind: Kind, obj: Object, *, scope: WatchScope | None = None) -> bool:
        """An ADDED or MODIFIED event. Returns whether anything changed."""
        stream = self._stream(kind, scope)
        if not stream[1].covers(obj.namespace, _service_of(obj)):
            return False
        store = self._stores[stream]
        old = store.get(obj.key)
        if old == obj:
            return False
        store[obj.key] = obj
        if isinstance(obj, RawObject):
            self._gateway_touched.add(ObjectRef(kind, *obj.key))
            self._merge_gateway(kind)
            self._notify()
            return True
        if isinstance(obj, SecretInfo):
            self._secrets[obj.key] = obj
        elif isinstance(obj, ServiceInfo):
            services = dict(self._services)
            services[obj.key] = obj
            self._services = services
        else:
            assert old is None or isinstance(old, SliceInfo)
            self._reindex_slices((old,) if old else (), (obj,))
        self._touch(old, obj)
        self._notify()
        return True

    def delete(self, kind: Kind, obj: Object, *, scope: WatchScope | None = None) -> bool:
        """A DELETED event (only the key of `obj` matters). Returns whether anything changed."""
        stream = self._stream(kind, scope)
        old = self._stores[stream].pop(obj.key, None)
        if old is None:
            return False
        if isinstance(old, RawObject):
            self._gateway_touched.add(ObjectRef(kind, *old.key))
            self._merge_gateway(kind)
            self._notify()
            return True
        if isinstance(old, SecretInfo):
            self._secrets.pop(old.key, None)
        elif isinstance(old, ServiceInfo):
            services = dict(self._services)
            services.pop(old.key, None)
            self._services = services
        else:
            self._reindex_slices((old,), ())
        self._touch(old)
        self._notify()
        return True

    # -- Secret streams, opened and closed as Services name Secrets ------------------------------

    def open_secret(self, namespace: str, name: str) -> WatchScope:
        """Make room for a stream of one Secret; returns its scope. Until it lists, the Secret
        is neither there nor missing (`secret_listed` is False)."""
        scope = WatchScope(namespace, name)
        self._stores.setdefault(("Secret", scope), {})
        return scope

    def close_secret(self, namespace: str, name: str) -> bool:
        """No Service names the Secret any more: forget it and its stream. Returns whether
        anything was held."""
        stream: tuple[Kind, WatchScope] = ("Secret", WatchScope(namespace, name))
        store = self._stores.pop(stream, None)
        self._listed.discard(stream)
        if store is None:
            return False
        self._secret_store(store, {})
        self._touch_secret(stream[1])
        self._notify()
        return True

    # -- internals -----------------------------------------------------------------------------

    def _secret_store(self, old: Mapping[Key, Object], new: Mapping[Key, Object]) -> None:
        for key in old:
            self._secrets.pop(key, None)
        for key, obj in new.items():
            assert isinstance(obj, SecretInfo)
            self._secrets[key] = obj

    def _touch_secret(self, scope: WatchScope) -> None:
        self._touched.add(ObjectRef("Secret", scope.namespace or "", scope.service or ""))

    def _stream(self, kind: Kind, scope: WatchScope | None) -> tuple[Kind, WatchScope]:
        if scope is None:
            if len(self.scopes) != 1:
                raise ValueError("this cache has several scopes: say which one")
            scope = self.scopes[0]
        stream = (kind, scope)
        if stream not in self._stores:
            raise KeyError(f"no stream for {kind} in scope {scope}")
        return stream

    def _merge_gateway(self, kind: Kind) -> None:
        # Copy-on-write, as for Services: a Mapping the sync holds never changes under it.
        merged: dict[Key, RawObject] = {}
        for (stream_kind, _), store in self._stores.items():
            if stream_kind == kind:
                for key, obj in store.items():
                    assert isinstance(obj, RawObject)
                    merged[key] = obj
        self._gateway[kind] = MappingProxyType(merged)

    def _merge_services(self) -> dict[Key, ServiceInfo]:
        merged: dict[Key, ServiceInfo] = {}
        for (kind, _), store in self._stores.items():
            if kind == "Service":
                for key, obj in store.items():
                    assert isinstance(obj, ServiceInfo)
                    merged[key] = obj
        return merged

    def _reindex_slices(self, removed: Iterable[Object], added: Iterable[Object]) -> None:
        """Rebuild the per-service tuples touched by `removed` and `added` slices."""
        groups: dict[Key, dict[str, SliceInfo]] = {}

        def group(obj: SliceInfo) -> dict[str, SliceInfo]:
            index_key = (obj.namespace, obj.service)
            if index_key not in groups:
                groups[index_key] = {s.name: s for s in self._slices.get(index_key, ())}
            return groups[index_key]

        for obj in removed:
            assert isinstance(obj, SliceInfo)
            group(obj).pop(obj.name, None)
        for obj in added:
            assert isinstance(obj, SliceInfo)
            group(obj)[obj.name] = obj
        for index_key, members in groups.items():
            if not index_key[1]:
                continue  # a slice without the service-name label belongs to no Service
            if members:
                self._slices[index_key] = tuple(members[name] for name in sorted(members))
            else:
                self._slices.pop(index_key, None)

    def _touch(self, *objects: Object | None) -> None:
        for obj in objects:
            if isinstance(obj, SecretInfo):
                self._touched.add(ObjectRef("Secret", obj.namespace, obj.name))
            elif obj is not None and _service_of(obj):
                self._touched.add(ObjectRef("Service", obj.namespace, _service_of(obj)))

    def _notify(self) -> None:
        self.generation += 1
        self.changed.notify()
