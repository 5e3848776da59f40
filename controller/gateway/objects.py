"""Frozen views of the Gateway API objects (v1, standard channel), parsed from raw API JSON.

The API server's OpenAPI validation (the CRDs of config/crd/standard) rejects most malformed
objects before they are stored, but a CRD older or newer than v1.6, or a hand-made test
object, can still carry anything: every parser here raises `GatewayObjectError` naming the
field (`spec.listeners[1].port`) instead of crashing or guessing. Defaults the CRD applies
(`group: gateway.networking.k8s.io`, `kind: Gateway`, `weight: 1`, `from: Same`, path
`PathPrefix /`) are applied here too, so an object built without them means the same.

`ParentRef.raw` keeps the parentRef exactly as the route wrote it: the conformance suite
compares `status.parents[].parentRef` with the spec's field by field (nil group/kind included),
so the status must echo it, not a normalised copy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""

Key = tuple[str, str]  # (namespace, name)

# The CRD's Hostname pattern (lower case: names are lower-cased before the check).
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


class GatewayObjectError(ValueError):
    """An object that cannot be used; `path` names the field (`spec.rules[0].matches[1]`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# -- small typed readers over JSON -------------------------------------------------------


def _obj(value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise GatewayObjectError(path, "must be an object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise GatewayObjectError(path, "must be a list")
    return list(value)


def _str(value: Any, path: str, *, default: str | None = None) -> str:
    if value is None:
        if default is None:
            raise GatewayObjectError(path, "is required")
        return default
    if not isinstance(value, str):
        raise GatewayObjectError(path, "must be a string")
    return value


def _opt_str(value: Any, path: str) -> str | None:
    return None if value is None else _str(value, path)


def _hostname(value: Any, path: str) -> str:
    host = _str(value, path).lower()
    if len(host) > 253 or not _HOSTNAME_RE.match(host):
        raise GatewayObjectError(path, f"{host!r} is not a host name or *.wildcard")
    return host


def _int(value: Any, path: str, *, low: int, high: int, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise GatewayObjectError(path, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayObjectError(path, "must be an integer")
    if not low <= value <= high:
        raise GatewayObjectError(path, f"{value} is not in {low}-{high}")
    return value


def _opt_int(value: Any, path: str, *, low: int, high: int) -> int | None:
    return None if value is None else _int(value, path, low=low, high=high)


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
        meta = _obj(raw.get("metadata"), "metadata", required=True)
        name = _str(meta.get("name"), "metadata.name")
        namespace = _str(meta.get("namespace"), "metadata.namespace", default="")
        if namespaced and not namespace:
            raise GatewayObjectError("metadata.namespace", "is required")
        labels = _obj(meta.get("labels"), "metadata.labels")
        generation = meta.get("generation")
        return cls(
            namespace=namespace,
            name=name,
            generation=generation if isinstance(generation, int) else 0,
            created=_str(meta.get("creationTimestamp"), "metadata.creationTimestamp", default=""),
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
        obj = _obj(raw, path)
        labels = _obj(obj.get("matchLabels"), f"{path}.matchLabels")
        expressions = []
        for i, item in enumerate(_list(obj.get("matchExpressions"), f"{path}.matchExpressions")):
            where = f"{path}.matchExpressions[{i}]"
            expr = _obj(item, where, required=True)
            operator = _str(expr.get("operator"), f"{where}.operator")
            if operator not in _OPERATORS:
                raise GatewayObjectError(
                    f"{where}.operator",
                    f"{operator!r} is not one of In, NotIn, Exists, DoesNotExist",
                )
            values = tuple(
                _str(v, f"{where}.values[{j}]")
                for j, v in enumerate(_list(expr.get("values"), f"{where}.values"))
            )
            if operator in ("In", "NotIn") and not values:
                raise GatewayObjectError(f"{where}.values", f"must not be empty for {operator}")
            if operator in ("Exists", "DoesNotExist") and values:
                raise GatewayObjectError(f"{where}.values", f"must be empty for {operator}")
            expressions.append(
                LabelExpression(_str(expr.get("key"), f"{where}.key"), operator, values)  # type: ignore[arg-type]
            )
        return cls(
            tuple(sorted((str(k), _str(v, f"{path}.matchLabels.{k}")) for k, v in labels.items())),
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
        spec = _obj(raw.get("spec"), "spec", required=True)
        return cls(
            meta,
            _str(spec.get("controllerName"), "spec.controllerName"),
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
        obj = _obj(raw, path, required=True)
        return cls(
            group=_str(obj.get("group"), f"{path}.group", default=group),
            kind=_str(obj.get("kind"), f"{path}.kind", default=kind),
            name=_str(obj.get("name"), f"{path}.name"),
            namespace=_opt_str(obj.get("namespace"), f"{path}.namespace"),
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
        spec = _obj(raw.get("spec"), "spec", required=True)
        listeners = tuple(
            _listener(item, f"spec.listeners[{i}]")
            for i, item in enumerate(_list(spec.get("listeners"), "spec.listeners"))
        )
        names = [listener.name for listener in listeners]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise GatewayObjectError(f"spec.listeners[{i}].name", f"{name!r} is used twice")
        return cls(
            meta,
            _str(spec.get("gatewayClassName"), "spec.gatewayClassName"),
            listeners,
            bool(_list(spec.get("addresses"), "spec.addresses")),
        )


def _listener(raw: Any, path: str) -> Listener:
    obj = _obj(raw, path, required=True)
    tls: ListenerTLS | None = None
    if obj.get("tls") is not None:
        tls_obj = _obj(obj.get("tls"), f"{path}.tls")
        refs = tuple(
            ObjectRef.parse(
                ref, f"{path}.tls.certificateRefs[{i}]", group=CORE_GROUP, kind="Secret"
            )
            for i, ref in enumerate(
                _list(tls_obj.get("certificateRefs"), f"{path}.tls.certificateRefs")
            )
        )
        tls = ListenerTLS(_str(tls_obj.get("mode"), f"{path}.tls.mode", default="Terminate"), refs)
    allowed_obj = _obj(obj.get("allowedRoutes"), f"{path}.allowedRoutes")
    namespaces = _obj(allowed_obj.get("namespaces"), f"{path}.allowedRoutes.namespaces")
    from_ = _str(namespaces.get("from"), f"{path}.allowedRoutes.namespaces.from", default="Same")
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
                _str(
                    k.get("group") if isinstance(k, Mapping) else None,
                    f"{path}.allowedRoutes.kinds[{i}].group",
                    default=GATEWAY_GROUP,
                ),
                _str(
                    _obj(k, f"{path}.allowedRoutes.kinds[{i}]", required=True).get("kind"),
                    f"{path}.allowedRoutes.kinds[{i}].kind",
                ),
            )
            for i, k in enumerate(_list(allowed_obj.get("kinds"), f"{path}.allowedRoutes.kinds"))
        )
    raw_hostname = obj.get("hostname")
    hostname = None if raw_hostname is None else _hostname(raw_hostname, f"{path}.hostname")
    return Listener(
        name=_str(obj.get("name"), f"{path}.name"),
        port=_int(obj.get("port"), f"{path}.port", low=1, high=65535),
        protocol=_str(obj.get("protocol"), f"{path}.protocol"),
        hostname=hostname,
        tls=tls,
        allowed=AllowedRoutes(from_, selector, kinds),  # type: ignore[arg-type]
    )


# -- HTTPRoute -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParentRef:
    group: str
    kind: str
    name: str
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def parse(cls, raw: Any, path: str) -> ParentRef:
        obj = _obj(raw, path, required=True)
        return cls(
            group=_str(obj.get("group"), f"{path}.group", default=GATEWAY_GROUP),
            kind=_str(obj.get("kind"), f"{path}.kind", default="Gateway"),
            name=_str(obj.get("name"), f"{path}.name"),
            namespace=_opt_str(obj.get("namespace"), f"{path}.namespace"),
            section_name=_opt_str(obj.get("sectionName"), f"{path}.sectionName"),
            port=_opt_int(obj.get("port"), f"{path}.port", low=1, high=65535),
            raw=dict(obj),
        )


PathKind = Literal["exact", "prefix", "regex"]
MatchKind = Literal["exact", "regex"]
_PATH_TYPES: Mapping[str, PathKind] = {
    "Exact": "exact",
    "PathPrefix": "prefix",
    "RegularExpression": "regex",
}
_VALUE_TYPES: Mapping[str, MatchKind] = {"Exact": "exact", "RegularExpression": "regex"}


@dataclass(frozen=True, slots=True)
class PathMatch:
    kind: PathKind = "prefix"
    value: str = "/"


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A header or query parameter match."""

    name: str
    value: str
    kind: MatchKind = "exact"


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: PathMatch = field(default_factory=PathMatch)
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    method: str | None = None


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathModifier:
    kind: Literal["full", "prefix"]
    value: str


@dataclass(frozen=True, slots=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathModifier | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True)
class Rewrite:
    hostname: str | None = None
    path: PathModifier | None = None


@dataclass(frozen=True, slots=True)
class RouteFilter:
    """One filter; `type` is the API's name. Exactly the field of a supported type is set;
    any other type (RequestMirror, ExtensionRef, CORS, ...) carries only its name."""

    type: str
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None


SUPPORTED_FILTERS = frozenset(
    {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"}
)


@dataclass(frozen=True, slots=True)
class BackendRef:
    group: str
    kind: str
    name: str
    namespace: str | None = None
    port: int | None = None
    weight: int = 1
    has_filters: bool = False


@dataclass(frozen=True, slots=True)
class RouteRule:
    matches: tuple[RouteMatch, ...]
    filters: tuple[RouteFilter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()
    name: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    meta: Meta
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> HTTPRoute:
        meta = Meta.parse(raw)
        spec = _obj(raw.get("spec"), "spec", required=True)
        hostnames = tuple(
            _hostname(h, f"spec.hostnames[{i}]")
            for i, h in enumerate(_list(spec.get("hostnames"), "spec.hostnames"))
        )
        raw_rules = spec.get("rules")
        # The CRD defaults an absent rules list to one rule matching PathPrefix "/".
        rules_list = _list(raw_rules, "spec.rules") if raw_rules is not None else [{}]
        rules = tuple(_rule(item, f"spec.rules[{i}]") for i, item in enumerate(rules_list))
        return cls(meta, parse_parent_refs(raw), hostnames, rules)


def parse_parent_refs(raw: Mapping[str, Any]) -> tuple[ParentRef, ...]:
    """Only the parentRefs of a route: enough to report on a route whose rules are broken."""
    spec = _obj(raw.get("spec"), "spec", required=True)
    return tuple(
        ParentRef.parse(item, f"spec.parentRefs[{i}]")
        for i, item in enumerate(_list(spec.get("parentRefs"), "spec.parentRefs"))
    )


def _rule(raw: Any, path: str) -> RouteRule:
    obj = _obj(raw, path, required=True)
    raw_matches = obj.get("matches")
    matches = (
        tuple(
            _match(item, f"{path}.matches[{i}]")
            for i, item in enumerate(_list(raw_matches, f"{path}.matches"))
        )
        if raw_matches is not None
        else ()
    )
    if not matches:
        matches = (RouteMatch(),)  # no match: every request (PathPrefix "/")
    filters = tuple(
        _filter(item, f"{path}.filters[{i}]")
        for i, item in enumerate(_list(obj.get("filters"), f"{path}.filters"))
    )
    backends = tuple(
        _backend(item, f"{path}.backendRefs[{i}]")
        for i, item in enumerate(_list(obj.get("backendRefs"), f"{path}.backendRefs"))
    )
    return RouteRule(matches, filters, backends, _opt_str(obj.get("name"), f"{path}.name"))


def _match(raw: Any, path: str) -> RouteMatch:
    obj = _obj(raw, path, required=True)
    path_obj = _obj(obj.get("path"), f"{path}.path")
    path_type = _str(path_obj.get("type"), f"{path}.path.type", default="PathPrefix")
    if path_type not in _PATH_TYPES:
        raise GatewayObjectError(
            f"{path}.path.type", f"{path_type!r} is not Exact, PathPrefix or RegularExpression"
        )
    value = _str(path_obj.get("value"), f"{path}.path.value", default="/")
    if path_type != "RegularExpression" and not value.startswith("/"):
        raise GatewayObjectError(f"{path}.path.value", f"{value!r} must start with '/'")
    method = _opt_str(obj.get("method"), f"{path}.method")
    return RouteMatch(
        PathMatch(_PATH_TYPES[path_type], value),
        _values(obj.get("headers"), f"{path}.headers", lower=True),
        _values(obj.get("queryParams"), f"{path}.queryParams", lower=False),
        method.upper() if method else None,
    )


def _values(raw: Any, path: str, *, lower: bool) -> tuple[ValueMatch, ...]:
    result = []
    seen: set[str] = set()
    for i, item in enumerate(_list(raw, path)):
        obj = _obj(item, f"{path}[{i}]", required=True)
        kind = _str(obj.get("type"), f"{path}[{i}].type", default="Exact")
        if kind not in _VALUE_TYPES:
            raise GatewayObjectError(
                f"{path}[{i}].type", f"{kind!r} is not Exact or RegularExpression"
            )
        name = _str(obj.get("name"), f"{path}[{i}].name")
        name = name.lower() if lower else name
        # The spec: when a name repeats, the first entry counts and the others are ignored.
        if name in seen:
            continue
        seen.add(name)
        result.append(
            ValueMatch(name, _str(obj.get("value"), f"{path}[{i}].value"), _VALUE_TYPES[kind])
        )
    return tuple(result)


def _filter(raw: Any, path: str) -> RouteFilter:
    obj = _obj(raw, path, required=True)
    kind = _str(obj.get("type"), f"{path}.type")
    if kind == "RequestHeaderModifier":
        return RouteFilter(
            kind,
            request_headers=_modifier(
                obj.get("requestHeaderModifier"), f"{path}.requestHeaderModifier"
            ),
        )
    if kind == "ResponseHeaderModifier":
        return RouteFilter(
            kind,
            response_headers=_modifier(
                obj.get("responseHeaderModifier"), f"{path}.responseHeaderModifier"
            ),
        )
    if kind == "RequestRedirect":
        where = f"{path}.requestRedirect"
        red = _obj(obj.get("requestRedirect"), where, required=True)
        scheme = _opt_str(red.get("scheme"), f"{where}.scheme")
        return RouteFilter(
            kind,
            redirect=Redirect(
                scheme=scheme.lower() if scheme else None,
                hostname=_opt_str(red.get("hostname"), f"{where}.hostname"),
                port=_opt_int(red.get("port"), f"{where}.port", low=1, high=65535),
                path=_path_modifier(red.get("path"), f"{where}.path"),
                status_code=_int(
                    red.get("statusCode"), f"{where}.statusCode", low=300, high=399, default=302
                ),
            ),
        )
    if kind == "URLRewrite":
        where = f"{path}.urlRewrite"
        rew = _obj(obj.get("urlRewrite"), where, required=True)
        return RouteFilter(
            kind,
            rewrite=Rewrite(
                hostname=_opt_str(rew.get("hostname"), f"{where}.hostname"),
                path=_path_modifier(rew.get("path"), f"{where}.path"),
            ),
        )
    return RouteFilter(kind)


def _modifier(raw: Any, path: str) -> HeaderModifier:
    obj = _obj(raw, path, required=True)

    def pairs(name: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            (
                _str(
                    _obj(item, f"{path}.{name}[{i}]", required=True).get("name"),
                    f"{path}.{name}[{i}].name",
                ),
                _str(item.get("value"), f"{path}.{name}[{i}].value"),
            )
            for i, item in enumerate(_list(obj.get(name), f"{path}.{name}"))
        )

    remove = tuple(
        _str(item, f"{path}.remove[{i}]")
        for i, item in enumerate(_list(obj.get("remove"), f"{path}.remove"))
    )
    return HeaderModifier(pairs("set"), pairs("add"), remove)


def _path_modifier(raw: Any, path: str) -> PathModifier | None:
    if raw is None:
        return None
    obj = _obj(raw, path)
    kind = _str(obj.get("type"), f"{path}.type")
    if kind == "ReplaceFullPath":
        return PathModifier("full", _str(obj.get("replaceFullPath"), f"{path}.replaceFullPath"))
    if kind == "ReplacePrefixMatch":
        return PathModifier(
            "prefix", _str(obj.get("replacePrefixMatch"), f"{path}.replacePrefixMatch")
        )
    raise GatewayObjectError(
        f"{path}.type", f"{kind!r} is not ReplaceFullPath or ReplacePrefixMatch"
    )


def _backend(raw: Any, path: str) -> BackendRef:
    obj = _obj(raw, path, required=True)
    return BackendRef(
        group=_str(obj.get("group"), f"{path}.group", default=CORE_GROUP),
        kind=_str(obj.get("kind"), f"{path}.kind", default="Service"),
        name=_str(obj.get("name"), f"{path}.name"),
        namespace=_opt_str(obj.get("namespace"), f"{path}.namespace"),
        port=_opt_int(obj.get("port"), f"{path}.port", low=1, high=65535),
        weight=_int(obj.get("weight"), f"{path}.weight", low=0, high=1_000_000, default=1),
        has_filters=bool(_list(obj.get("filters"), f"{path}.filters")),
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
        spec = _obj(raw.get("spec"), "spec", required=True)
        froms = []
        for i, item in enumerate(_list(spec.get("from"), "spec.from")):
            obj = _obj(item, f"spec.from[{i}]", required=True)
            froms.append(
                GrantFrom(
                    _str(obj.get("group"), f"spec.from[{i}].group"),
                    _str(obj.get("kind"), f"spec.from[{i}].kind"),
                    _str(obj.get("namespace"), f"spec.from[{i}].namespace"),
                )
            )
        tos = []
        for i, item in enumerate(_list(spec.get("to"), "spec.to")):
            obj = _obj(item, f"spec.to[{i}]", required=True)
            tos.append(
                GrantTo(
                    _str(obj.get("group"), f"spec.to[{i}].group"),
                    _str(obj.get("kind"), f"spec.to[{i}].kind"),
                    _opt_str(obj.get("name"), f"spec.to[{i}].name") or None,
                )
            )
        return cls(meta, tuple(froms), tuple(tos))

    def permits(self, *, from_: GrantFrom, to: GrantTo) -> bool:
        """Whether this grant (in the target's namespace) lets `from_` refer to `to`."""
        return from_ in self.from_ and any(
            t.group == to.group and t.kind == to.kind and (t.name is None or t.name == to.name)
            for t in self.to
        )
