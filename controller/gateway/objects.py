"""Frozen views of GatewayClasses, Gateways and ReferenceGrants (v1, standard channel),
parsed from raw API JSON; HTTPRoutes are in httproute.py.

The API server's OpenAPI validation (the CRDs of config/crd/standard) rejects most malformed
objects before they are stored, but a CRD older or newer than v1.6, or a hand-made test
object, can still carry anything: every parser here raises `GatewayObjectError` naming the
field (`spec.listeners[1].port`) instead of crashing or guessing. Defaults the CRD applies
(`tls.mode: Terminate`, `allowedRoutes.namespaces.from: Same`, certificateRef kind Secret)
are applied here too, so an object built without them means the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.gateway.fields import (
    GatewayObjectError,
    read_hostname,
    read_int,
    read_list,
    read_object,
    read_opt_str,
    read_str,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""

Key = tuple[str, str]  # (namespace, name)


# -- metadata ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meta:
    """What the model reads of `metadata`."""

    namespace: str
    name: str
    generation: int
    created: str  # creationTimestamp, RFC 3339: sorts as text
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, namespaced: bool = True) -> Meta:
        meta = read_object(raw.get("metadata"), "metadata", required=True)
        name = read_str(meta.get("name"), "metadata.name")
        namespace = read_str(meta.get("namespace"), "metadata.namespace", default="")
        if namespaced and not namespace:
            raise GatewayObjectError("metadata.namespace", "is required")
        labels = read_object(meta.get("labels"), "metadata.labels")
        generation = meta.get("generation")
        return cls(
            namespace=namespace,
            name=name,
            generation=generation if isinstance(generation, int) else 0,
            created=read_str(
                meta.get("creationTimestamp"), "metadata.creationTimestamp", default=""
            ),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        )


# -- label selectors -----------------------------------------------------------------------

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class LabelExpression:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector. The empty selector matches everything (Kubernetes' rule)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[LabelExpression, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            e.matches(labels) for e in self.expressions
        )

    @classmethod
    def parse(cls, raw: Any, path: str) -> LabelSelector:
        obj = read_object(raw, path)
        labels = read_object(obj.get("matchLabels"), f"{path}.matchLabels")
        expressions = []
        for i, item in enumerate(
            read_list(obj.get("matchExpressions"), f"{path}.matchExpressions")
        ):
            where = f"{path}.matchExpressions[{i}]"
            expr = read_object(item, where, required=True)
            operator = read_str(expr.get("operator"), f"{where}.operator")
            if operator not in _OPERATORS:
                raise GatewayObjectError(
                    f"{where}.operator",
                    f"{operator!r} is not one of In, NotIn, Exists, DoesNotExist",
                )
            values = tuple(
                read_str(v, f"{where}.values[{j}]")
                for j, v in enumerate(read_list(expr.get("values"), f"{where}.values"))
            )
            if operator in ("In", "NotIn") and not values:
                raise GatewayObjectError(f"{where}.values", f"must not be empty for {operator}")
            if operator in ("Exists", "DoesNotExist") and values:
                raise GatewayObjectError(f"{where}.values", f"must be empty for {operator}")
            expressions.append(
                LabelExpression(read_str(expr.get("key"), f"{where}.key"), operator, values)  # type: ignore[arg-type]
            )
        return cls(
            tuple(
                sorted((str(k), read_str(v, f"{path}.matchLabels.{k}")) for k, v in labels.items())
            ),
            tuple(expressions),
        )


# -- GatewayClass --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayClass:
    meta: Meta
    controller_name: str
    has_parameters: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> GatewayClass:
        meta = Meta.parse(raw, namespaced=False)
        spec = read_object(raw.get("spec"), "spec", required=True)
        return cls(
            meta,
            read_str(spec.get("controllerName"), "spec.controllerName"),
            spec.get("parametersRef") is not None,
        )


# -- Gateway -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A reference to an object by group, kind, name and (optional) namespace."""

    group: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def parse(cls, raw: Any, path: str, *, group: str, kind: str) -> ObjectRef:
        obj = read_object(raw, path, required=True)
        return cls(
            group=read_str(obj.get("group"), f"{path}.group", default=group),
            kind=read_str(obj.get("kind"), f"{path}.kind", default=kind),
            name=read_str(obj.get("name"), f"{path}.name"),
            namespace=read_opt_str(obj.get("namespace"), f"{path}.namespace"),
        )


@dataclass(frozen=True, slots=True)
class RouteGroupKind:
    group: str
    kind: str

    def to_api(self) -> dict[str, str]:
        return {"group": self.group, "kind": self.kind}


HTTP_ROUTE_KIND = RouteGroupKind(GATEWAY_GROUP, "HTTPRoute")

From = Literal["Same", "All", "Selector"]


@dataclass(frozen=True, slots=True)
class AllowedRoutes:
    from_: From = "Same"
    selector: LabelSelector | None = None
    kinds: tuple[RouteGroupKind, ...] | None = None  # None: the protocol's default kinds


@dataclass(frozen=True, slots=True)
class ListenerTLS:
    mode: str
    certificate_refs: tuple[ObjectRef, ...]


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    protocol: str
    hostname: str | None = None
    tls: ListenerTLS | None = None
    allowed: AllowedRoutes = field(default_factory=AllowedRoutes)


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: Meta
    class_name: str
    listeners: tuple[Listener, ...]
    has_addresses: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Gateway:
        meta = Meta.parse(raw)
        spec = read_object(raw.get("spec"), "spec", required=True)
        listeners = tuple(
            _listener(item, f"spec.listeners[{i}]")
            for i, item in enumerate(read_list(spec.get("listeners"), "spec.listeners"))
        )
        names = [listener.name for listener in listeners]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise GatewayObjectError(f"spec.listeners[{i}].name", f"{name!r} is used twice")
        return cls(
            meta,
            read_str(spec.get("gatewayClassName"), "spec.gatewayClassName"),
            listeners,
            bool(read_list(spec.get("addresses"), "spec.addresses")),
        )


def _listener(raw: Any, path: str) -> Listener:
    obj = read_object(raw, path, required=True)
    tls: ListenerTLS | None = None
    if obj.get("tls") is not None:
        tls_obj = read_object(obj.get("tls"), f"{path}.tls")
        refs = tuple(
            ObjectRef.parse(
                ref, f"{path}.tls.certificateRefs[{i}]", group=CORE_GROUP, kind="Secret"
            )
            for i, ref in enumerate(
                read_list(tls_obj.get("certificateRefs"), f"{path}.tls.certificateRefs")
            )
        )
        tls = ListenerTLS(
            read_str(tls_obj.get("mode"), f"{path}.tls.mode", default="Terminate"), refs
        )
    allowed_obj = read_object(obj.get("allowedRoutes"), f"{path}.allowedRoutes")
    namespaces = read_object(allowed_obj.get("namespaces"), f"{path}.allowedRoutes.namespaces")
    from_ = read_str(
        namespaces.get("from"), f"{path}.allowedRoutes.namespaces.from", default="Same"
    )
    if from_ not in ("Same", "All", "Selector"):
        raise GatewayObjectError(
            f"{path}.allowedRoutes.namespaces.from", f"{from_!r} is not one of Same, All, Selector"
        )
    selector = None
    if from_ == "Selector":
        if namespaces.get("selector") is None:
            raise GatewayObjectError(
                f"{path}.allowedRoutes.namespaces.selector", "is required when from is Selector"
            )
        selector = LabelSelector.parse(
            namespaces.get("selector"), f"{path}.allowedRoutes.namespaces.selector"
        )
    kinds: tuple[RouteGroupKind, ...] | None = None
    if allowed_obj.get("kinds") is not None:
        kinds = tuple(
            RouteGroupKind(
                read_str(
                    k.get("group") if isinstance(k, Mapping) else None,
                    f"{path}.allowedRoutes.kinds[{i}].group",
                    default=GATEWAY_GROUP,
                ),
                read_str(
                    read_object(k, f"{path}.allowedRoutes.kinds[{i}]", required=True).get("kind"),
                    f"{path}.allowedRoutes.kinds[{i}].kind",
                ),
            )
            for i, k in enumerate(
                read_list(allowed_obj.get("kinds"), f"{path}.allowedRoutes.kinds")
            )
        )
    raw_hostname = obj.get("hostname")
    hostname = None if raw_hostname is None else read_hostname(raw_hostname, f"{path}.hostname")
    return Listener(
        name=read_str(obj.get("name"), f"{path}.name"),
        port=read_int(obj.get("port"), f"{path}.port", low=1, high=65535),
        protocol=read_str(obj.get("protocol"), f"{path}.protocol"),
        hostname=hostname,
        tls=tls,
        allowed=AllowedRoutes(from_, selector, kinds),  # type: ignore[arg-type]
    )


# -- ReferenceGrant ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True, slots=True)
class GrantTo:
    group: str
    kind: str
    name: str | None = None  # None: every object of the kind in the grant's namespace


@dataclass(frozen=True, slots=True)
class ReferenceGrant:
    meta: Meta
    from_: tuple[GrantFrom, ...]
    to: tuple[GrantTo, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ReferenceGrant:
        meta = Meta.parse(raw)
        spec = read_object(raw.get("spec"), "spec", required=True)
        froms = []
        for i, item in enumerate(read_list(spec.get("from"), "spec.from")):
            obj = read_object(item, f"spec.from[{i}]", required=True)
            froms.append(
                GrantFrom(
                    read_str(obj.get("group"), f"spec.from[{i}].group"),
                    read_str(obj.get("kind"), f"spec.from[{i}].kind"),
                    read_str(obj.get("namespace"), f"spec.from[{i}].namespace"),
                )
            )
        tos = []
        for i, item in enumerate(read_list(spec.get("to"), "spec.to")):
            obj = read_object(item, f"spec.to[{i}]", required=True)
            tos.append(
                GrantTo(
                    read_str(obj.get("group"), f"spec.to[{i}].group"),
                    read_str(obj.get("kind"), f"spec.to[{i}].kind"),
                    read_opt_str(obj.get("name"), f"spec.to[{i}].name") or None,
                )
            )
        return cls(meta, tuple(froms), tuple(tos))

    def permits(self, *, from_: GrantFrom, to: GrantTo) -> bool:
        """Whether this grant (in the target's namespace) lets `from_` refer to `to`."""
        return from_ in self.from_ and any(
            t.group == to.group and t.kind == to.kind and (t.name is None or t.name == to.name)
            for t in self.to
        )
