"""The Gateway API side of the sync: the cache in, `controller.gateway.state.build` in the
middle, the data plane's listeners, upstreams, status writes and owned Services out.

Two halves, as everywhere in the controller: `GatewaySync.sync` is a plain def that the sync
(controller.sync) calls in the same step as the annotated mode's rebuild, so listeners and
the upstreams their routes name change together; it returns a `GatewayDesired`. The I/O it
implies (binding listener sockets, writing `/status`, creating, patching and deleting the
per-Gateway Services) is controller.gateway_writer's, a task that takes the latest desired
state (`want`, never a queue) and applies it, retrying failures with backoff.

Level-triggered and whole: a change that can alter the model's result (a Gateway API object's
spec, a Namespace's labels, a listener Secret, a Service a route names, the bound ports, a
relist) rebuilds the whole Gateway state from the cache. Only what provably cannot is spared:
endpoints that moved redo just the upstreams of those backends, and a status coming back as
the model wants it (our own write) or written by another controller recomputes only the
writes still pending. Nothing is written before every Gateway API stream has listed once, so
a Service is never deleted for a Gateway merely not listed yet. A status is written only when
it differs from the object's (controller.gateway.status_writer), so an unchanged state costs
no API call and leaves every resourceVersion alone.

The upstream of each Service backend (`namespace/name:port`, controller.gateway.translate) is
built as the annotated mode builds one: endpoints from the Service's EndpointSlices on the
port's name (controller.translate), with the settings' strategy, health checks and outlier
detection; so Gateway routes get the same health checks and failover.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from controller.annotations import Defaults
from controller.cache import Changes, Key, ObjectRef
from controller.certificates import SecretCertificates
from controller.gateway import services as owned_services
from controller.gateway import status_writer
from controller.gateway.graph import SecretVerdict, ServicePortKey
from controller.gateway.memo import GatewayMemo
from controller.gateway.ports import PortRange
from controller.gateway.state import GatewayInputs, GatewayState, build
from controller.gateway.status import has_our_parents
from controller.gateway.translate import upstream_name
from controller.gateway_streams import GatewayKind, RawObject
from controller.objects import ClusterView, ServiceInfo, SliceInfo, mapping
from controller.translate import endpoints_of
from proxy.listeners import ListenerSpec
from proxy.model import UpstreamSpec

if TYPE_CHECKING:  # controller.app imports this module
    from controller.app import GatewayOptions

logger = logging.getLogger("kubeferry.controller.gateway")

# The kinds whose status the model writes, and Namespaces (their labels): what a build read
# that a change may leave as it was.
_BUILT_KINDS: tuple[GatewayKind, ...] = ("GatewayClass", "Gateway", "HTTPRoute", "Namespace")

_NO_UPSTREAMS: Mapping[str, UpstreamSpec] = MappingProxyType({})


class GatewayView(ClusterView, Protocol):
    """The cache as the Gateway sync reads it."""

    @property
    def gateway_listed(self) -> bool: ...

    def gateway_objects(self, kind: GatewayKind) -> Mapping[Key, RawObject]: ...

    def take_gateway_changed(self) -> Changes: ...


@dataclass(frozen=True, slots=True)
class GatewayDesired:
    """What one Gateway sync wants: the data plane's listeners and the upstreams their routes
    use, the status writes and Service changes still to make, the Secrets to watch."""

    listeners: tuple[ListenerSpec, ...] = ()
    upstreams: Mapping[str, UpstreamSpec] = field(default_factory=lambda: _NO_UPSTREAMS)
    statuses: tuple[status_writer.StatusWrite, ...] = ()
    services: tuple[owned_services.ServiceChange, ...] = ()
    secrets: frozenset[Key] = frozenset()
    errors: tuple[str, ...] = ()


def rfc3339_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GatewaySync:
    """Builds the Gateway state from the cache (plain defs only).

    Mutable state:
      bound_ports   the internal ports the data plane reported bound (set by the writer;
                    None until its first report)
      _built_ports  the bound ports the last build saw
      _desired      the last result (None: nothing built yet); _state the build it came from
      _seen         every Service the routes name, as the last build saw it (None: absent)
      _built        the GatewayClasses, Gateways, HTTPRoutes and Namespaces the last build read
      _applied      the upstreams the routes of the data plane's listeners use now (the
                    writer applies listeners after the sync pushed upstreams, so an upstream
                    the new routes dropped stays until the old routes are gone; it is taken
                    from the last result's upstreams)
      _upstreams    backend -> (Service, slices, spec) of the last build, reused while its
                    inputs are the same objects, so an unchanged upstream is the same object
      _errors       malformed objects already logged
      certificates  the listener Secrets' validations and last good certificates
      _memo         the model's parses and routes, reused while their inputs are the same
    """

    def __init__(
        self,
        view: GatewayView,
        options: GatewayOptions,
        defaults: Defaults,
        *,
        now: Callable[[], str] = rfc3339_now,
    ) -> None:
        self._view = view
        self._options = options
        self._defaults = defaults
        self._now = now
        self._port_range = PortRange(*options.port_range)
        self.bound_ports: frozenset[int] | None = None
        self._built_ports: frozenset[int] | None = None
        self._desired: GatewayDesired | None = None
        self._state: GatewayState | None = None
        self._seen: dict[Key, ServiceInfo | None] = {}
        self._built: dict[str, Mapping[Key, RawObject]] = {}
        self._applied: frozenset[str] = frozenset()
        self._applied_changed = False
        self._upstreams: dict[
            ServicePortKey, tuple[ServiceInfo, Sequence[SliceInfo], UpstreamSpec]
        ] = {}
        self._errors: frozenset[str] = frozenset()
        self._secrets: frozenset[Key] = frozenset()
        self.certificates = SecretCertificates()
        self._memo = GatewayMemo()

    def __repr__(self) -> str:
        desired = self._desired
        if desired is None:
            return "<GatewaySync nothing built>"
        return (
            f"<GatewaySync {len(desired.listeners)} listeners, {len(desired.upstreams)} "
            f"upstreams, {len(desired.statuses)} status writes pending>"
        )

    def listeners_applied(self, listeners: Sequence[ListenerSpec], ports: frozenset[int]) -> bool:
        """The data plane now serves `listeners` and has `ports` bound (the writer says so
        after each `set_listeners`). Plain def; True if a sync should run again: the ports
        changed (Programmed), or upstreams only the replaced routes used may now go."""
        names = _upstream_names(listeners)
        changed = ports != self.bound_ports or names != self._applied
        self.bound_ports = ports
        if names != self._applied:
            self._applied = names
            self._applied_changed = True
        return changed

    @property
    def pending(self) -> int | None:
        """Status writes and Service changes the last build still found to do (None: nothing
        built yet, or statuses held back: `_held`); 0 once the cluster shows everything the
        model wants."""
        desired, state = self._desired, self._state
        if desired is None or state is None or self._held(state):
            return None
        return len(desired.statuses) + len(desired.services)

    def _held(self, state: GatewayState) -> bool:
        """Whether no status may be written yet, though the state is built:
        - a listener Secret not listed yet is neither there nor missing; until its stream has
          listed (which wakes the sync again), every start would flash InvalidCertificateRef
          on HTTPS listeners;
        - until the data plane has reported on its listener sockets once (which wakes the
          sync again), a replica starting next to one that serves would write Programmed
          False for the ports it has not bound yet, and then True (tests/integration/
          controller/test_gateway_replicas.py caught that flap)."""
        if self.bound_ports is None:
            return True
        listed = self._view.secret_listed
        return not all(listed(*key) for key in state.secrets)

    def sync(self, changes: Changes | None = None) -> GatewayDesired | None:
        """`update` behind a boundary: a failure of the Gateway side (a bug, a malformed
        object the model chokes on) is logged and the last Gateway state stays, so annotated
        Services keep syncing; the next sync builds the Gateway state whole again."""
        try:
            return self.update(changes)
        except Exception:  # the boundary between the Gateway side and the rest of the sync
            logger.exception(
                "Gateway API sync failed; keeping the last Gateway state",
                extra={"event": "gateway_sync_failed"},
            )
            self._state = None  # the next sync rebuilds whole
            return self._desired

    def update(self, changes: Changes | None = None) -> GatewayDesired | None:
        """The desired Gateway state, brought up to date with `changes` (the annotated side's
        note of the Services, slices and Secrets that changed; None: assume everything did);
        None until every Gateway API stream has listed.

        A whole build runs when a Gateway API object, a bound port, a Secret a listener names
        or a Service a route names (its existence, ports) changed, or after a relist. A change
        that only moved the endpoints of backends redoes just those upstreams: at 2,000
        HTTPRoutes a build takes a quarter of a second, and endpoints move all the time."""
        view = self._view
        if not view.gateway_listed:
            return None
        changed = view.take_gateway_changed()
        desired, state = self._desired, self._state
        if (
            desired is None
            or state is None
            or changes is None
            or changes.everything
            or self.bound_ports != self._built_ports
        ):
            return self._rebuild()
        if changed and (changed.everything or not self._echoes(changed.touched, state)):
            return self._rebuild()
        services: set[Key] = set()
        for ref in changes.touched:
            key = (ref.namespace, ref.name)
            if ref.kind == "Secret" and key in self._secrets:
                return self._rebuild()
            if ref.kind == "Service" and key in self._seen:
                services.add(key)
        if services:
            current = view.services()
            if any(current.get(key) is not self._seen[key] for key in services):
                return self._rebuild()  # a Service itself changed (appeared, went, ports)
        if changed and not self._held(state):
            # Only status writes came back (ours, or another controller's): nothing the model
            # reads has changed; what is still to write is all that moved.
            desired = dataclasses.replace(desired, statuses=self._status_writes(state))
        if services or self._applied_changed:
            desired = dataclasses.replace(desired, upstreams=self._build_upstreams(state))
        self._desired = desired
        return desired

    def _echoes(self, touched: Iterable[ObjectRef], state: GatewayState) -> bool:
        """Whether every changed object differs from what the last build read only in a
        `.status` that is now exactly the one the build wants (our write, back through the
        watch), or that is another controller's, or is a Namespace with the same labels: then
        a build would give the same state, and at thousands of routes each would cost one."""
        for ref in touched:
            kind, key = ref.kind, (ref.namespace, ref.name)
            built = self._built.get(kind)
            old = built.get(key) if built is not None else None
            new = self._view.gateway_objects(kind).get(key)  # type: ignore[arg-type]
            if old is None or new is None:
                return False
            if kind == "Namespace":
                # Only its labels reach the model (allowedRoutes selectors).
                if _labels(old) != _labels(new):
                    return False
                continue
            if not _same_but_status(old.body, new.body):
                return False
            wanted = state.statuses.get((kind, *key))
            if wanted is None:
                # Not ours (another controller wrote it): the model reads no status but the
                # object's own, unless a route's status names us (a parent entry to clear).
                if kind == "HTTPRoute" and has_our_parents(new.body, self._options.controller_name):
                    return False
                continue
            if status_writer.status_patch(wanted, mapping(new.body.get("status"))) is not None:
                return False
        return True

    def _rebuild(self) -> GatewayDesired:
        view = self._view
        self._built_ports = self.bound_ports
        self._built = {kind: view.gateway_objects(kind) for kind in _BUILT_KINDS}
        state = build(self.inputs(), memo=self._memo)
        if state.secrets != self._secrets:
            # The listeners name other Secrets than the last build read: read those (as far
            # as the cache has them) before anything is decided from their absence.
            self._secrets = state.secrets
            state = build(self.inputs(), memo=self._memo)
        self._secrets = state.secrets
        services = view.services()
        self._seen = {key: services.get(key) for key in _referenced(view)}
        desired = GatewayDesired(
            listeners=state.listeners,
            upstreams=self._build_upstreams(state),
            statuses=() if self._held(state) else self._status_writes(state),
            services=owned_services.changes(
                state.gateway_services.values(),
                view.gateway_objects("GatewayService"),
                namespace=self._options.service_namespace,
                selector=self._options.service_selector,
            ),
            secrets=state.secrets,
            errors=state.errors,
        )
        new_errors = [e for e in state.errors if e not in self._errors]
        self._errors = frozenset(state.errors)
        for error in new_errors:
            logger.warning(
                "invalid Gateway API object: %s",
                error,
                extra={"event": "invalid_gateway_object", "error": error},
            )
        self._desired, self._state = desired, state
        return desired

    def inputs(self) -> GatewayInputs:
        view = self._view
        objects = view.gateway_objects
        return GatewayInputs(
            controller_name=self._options.controller_name,
            gateway_classes=MappingProxyType(
                {name: obj.body for (_, name), obj in objects("GatewayClass").items()}
            ),
            gateways=_bodies(objects("Gateway")),
            http_routes=_bodies(objects("HTTPRoute")),
            reference_grants=_bodies(objects("ReferenceGrant")),
            namespaces=MappingProxyType(
                {name: _labels(obj) for (_, name), obj in objects("Namespace").items()}
            ),
            services=view.services(),
            tls_secrets=MappingProxyType(self._tls_secrets()),
            addresses=MappingProxyType(
                owned_services.addresses(objects("GatewayService").values())
            ),
            bound_ports=self.bound_ports or frozenset(),
            port_range=self._port_range,
            now=self._now(),
        )

    def _tls_secrets(self) -> dict[Key, SecretVerdict]:
        """The listener Secrets of the last build that the cache has listed: a certificate
        (the last good one of a Secret gone bad) or why there is none; absent if not found."""
        verdicts: dict[Key, SecretVerdict] = {}
        self.certificates.keep_only(set(self._secrets))
        for key in sorted(self._secrets):
            if not self._view.secret_listed(*key):
                continue
            secret = self._view.secret(*key)
            if secret is None:
                continue
            looked = self.certificates.look(key, secret, listed=True)
            if looked.certificate is not None:
                verdicts[key] = looked.certificate
            elif looked.problem is not None:
                verdicts[key] = looked.problem.reason
        return verdicts

    def _build_upstreams(self, state: GatewayState) -> Mapping[str, UpstreamSpec]:
        services = self._view.services()
        upstreams: dict[str, UpstreamSpec] = {}
        kept: dict[ServicePortKey, tuple[ServiceInfo, Sequence[SliceInfo], UpstreamSpec]] = {}
        for backend in sorted(state.backends):
            namespace, name, _ = backend
            service = services.get((namespace, name))
            if service is None:
                continue  # the model reports BackendNotFound; its share answers 500
            slices = self._view.slices_for(namespace, name)
            memo = self._upstreams.get(backend)
            if memo is not None and memo[0] is service and memo[1] is slices:
                spec = memo[2]
            else:
                spec = self._upstream(backend, service, slices)
                if memo is not None and memo[2] == spec:
                    spec = memo[2]  # equal: keep the object the data plane holds
            kept[backend] = (service, slices, spec)
            upstreams[spec.name] = spec
        self._upstreams = kept
        # Upstreams the routes in the data plane still use, until the writer has replaced
        # them: requests never find a route whose upstream is gone.
        pushed = self._desired.upstreams if self._desired is not None else _NO_UPSTREAMS
        for name in self._applied - upstreams.keys():
            old = pushed.get(name)
            if old is not None:
                upstreams[name] = old
        self._applied_changed = False
        return MappingProxyType(upstreams)

    def _upstream(
        self, backend: ServicePortKey, service: ServiceInfo, slices: Sequence[SliceInfo]
    ) -> UpstreamSpec:
        port = next(
            (p for p in service.ports if p.port == backend[2] and p.protocol.upper() == "TCP"),
            None,
        )
        endpoints = () if port is None else endpoints_of(service, slices, port_name=port.name)
        defaults = self._defaults
        return UpstreamSpec(
            name=upstream_name(backend),
            endpoints=endpoints,
            strategy=defaults.strategy,
            hash_on=defaults.hash_on,
            health=defaults.health,
            outlier=defaults.outlier,
        )

    def _status_writes(self, state: GatewayState) -> tuple[status_writer.StatusWrite, ...]:
        kinds: Mapping[str, GatewayKind] = {
            "GatewayClass": "GatewayClass",
            "Gateway": "Gateway",
            "HTTPRoute": "HTTPRoute",
        }
        writes = []
        for (kind, namespace, name), desired in sorted(state.statuses.items()):
            obj = self._view.gateway_objects(kinds[kind]).get((namespace, name))
            if obj is None:
                continue
            patch = status_writer.status_patch(desired, mapping(obj.body.get("status")))
            if patch is not None:
                writes.append(
                    status_writer.StatusWrite(kind, namespace, name, obj.resource_version, patch)
                )
        return tuple(writes)


def _upstream_names(listeners: Sequence[ListenerSpec]) -> frozenset[str]:
    names: set[str] = set()
    for spec in listeners:
        for route in spec.routes.routes:
            if route.upstream:
                names.add(route.upstream)
            names.update(b.upstream for b in route.backends if b.upstream)
    return frozenset(names)


def _same_but_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal but for `.status` and the resourceVersion (a status write changes both)."""
    if old.keys() - {"status"} != new.keys() - {"status"}:
        return False
    for field_name, value in old.items():
        if field_name == "status":
            continue
        if field_name == "metadata":
            other = mapping(new.get("metadata"))
            if {k: v for k, v in mapping(value).items() if k != "resourceVersion"} != {
                k: v for k, v in other.items() if k != "resourceVersion"
            }:
                return False
        elif new.get(field_name) != value:
            return False
    return True


def _referenced(view: GatewayView) -> set[Key]:
    """Every Service an HTTPRoute's backendRefs name (found or not): a change of one of
    those may change a route's ResolvedRefs, so it calls for a whole build."""
    names: set[Key] = set()
    for (namespace, _), route in view.gateway_objects("HTTPRoute").items():
        for rule in _items(mapping(route.body.get("spec")).get("rules")):
            for ref in _items(rule.get("backendRefs")):
                if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service":
                    names.add((str(ref.get("namespace") or namespace), str(ref.get("name"))))
    return names


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _bodies(objects: Mapping[Key, RawObject]) -> Mapping[Key, Mapping[str, Any]]:
    return MappingProxyType({key: obj.body for key, obj in objects.items()})


def _labels(namespace: RawObject) -> Mapping[str, str]:
    labels = mapping(namespace.metadata.get("labels"))
    return MappingProxyType({str(k): str(v) for k, v in labels.items()})
