"""Frozen views of HTTPRoutes (v1, standard channel), parsed from raw API JSON, with the CRD's
defaults applied (parentRef group/kind, backendRef kind Service and weight 1, path
PathPrefix "/", one rule when none is given) and errors naming the field.

`ParentRef.raw` keeps the parentRef exactly as the route wrote it: the conformance suite
compares `status.parents[].parentRef` with the spec's field by field (nil group/kind
included), so the status must echo it, not a normalised copy.
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
    read_opt_int,
    read_opt_str,
    read_str,
)
from controller.gateway.objects import CORE_GROUP, GATEWAY_GROUP, Meta


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
        obj = read_object(raw, path, required=True)
        return cls(
            group=read_str(obj.get("group"), f"{path}.group", default=GATEWAY_GROUP),
            kind=read_str(obj.get("kind"), f"{path}.kind", default="Gateway"),
            name=read_str(obj.get("name"), f"{path}.name"),
            namespace=read_opt_str(obj.get("namespace"), f"{path}.namespace"),
            section_name=read_opt_str(obj.get("sectionName"), f"{path}.sectionName"),
            port=read_opt_int(obj.get("port"), f"{path}.port", low=1, high=65535),
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
        spec = read_object(raw.get("spec"), "spec", required=True)
        hostnames = tuple(
            read_hostname(h, f"spec.hostnames[{i}]")
            for i, h in enumerate(read_list(spec.get("hostnames"), "spec.hostnames"))
        )
        raw_rules = spec.get("rules")
        # The CRD defaults an absent rules list to one rule matching PathPrefix "/".
        rules_list = read_list(raw_rules, "spec.rules") if raw_rules is not None else [{}]
        rules = tuple(_rule(item, f"spec.rules[{i}]") for i, item in enumerate(rules_list))
        return cls(meta, parse_parent_refs(raw), hostnames, rules)


def parse_parent_refs(raw: Mapping[str, Any]) -> tuple[ParentRef, ...]:
    """Only the parentRefs of a route: enough to report on a route whose rules are broken."""
    spec = read_object(raw.get("spec"), "spec", required=True)
    return tuple(
        ParentRef.parse(item, f"spec.parentRefs[{i}]")
        for i, item in enumerate(read_list(spec.get("parentRefs"), "spec.parentRefs"))
    )


def _rule(raw: Any, path: str) -> RouteRule:
    obj = read_object(raw, path, required=True)
    raw_matches = obj.get("matches")
    matches = (
        tuple(
            _match(item, f"{path}.matches[{i}]")
            for i, item in enumerate(read_list(raw_matches, f"{path}.matches"))
        )
        if raw_matches is not None
        else ()
    )
    if not matches:
        matches = (RouteMatch(),)  # no match: every request (PathPrefix "/")
    filters = tuple(
        _filter(item, f"{path}.filters[{i}]")
        for i, item in enumerate(read_list(obj.get("filters"), f"{path}.filters"))
    )
    backends = tuple(
        _backend(item, f"{path}.backendRefs[{i}]")
        for i, item in enumerate(read_list(obj.get("backendRefs"), f"{path}.backendRefs"))
    )
    return RouteRule(matches, filters, backends, read_opt_str(obj.get("name"), f"{path}.name"))


def _match(raw: Any, path: str) -> RouteMatch:
    obj = read_object(raw, path, required=True)
    path_obj = read_object(obj.get("path"), f"{path}.path")
    path_type = read_str(path_obj.get("type"), f"{path}.path.type", default="PathPrefix")
    if path_type not in _PATH_TYPES:
        raise GatewayObjectError(
            f"{path}.path.type", f"{path_type!r} is not Exact, PathPrefix or RegularExpression"
        )
    value = read_str(path_obj.get("value"), f"{path}.path.value", default="/")
    if path_type != "RegularExpression" and not value.startswith("/"):
        raise GatewayObjectError(f"{path}.path.value", f"{value!r} must start with '/'")
    method = read_opt_str(obj.get("method"), f"{path}.method")
    return RouteMatch(
        PathMatch(_PATH_TYPES[path_type], value),
        _values(obj.get("headers"), f"{path}.headers", lower=True),
        _values(obj.get("queryParams"), f"{path}.queryParams", lower=False),
        method.upper() if method else None,
    )


def _values(raw: Any, path: str, *, lower: bool) -> tuple[ValueMatch, ...]:
    result = []
    seen: set[str] = set()
    for i, item in enumerate(read_list(raw, path)):
        obj = read_object(item, f"{path}[{i}]", required=True)
        kind = read_str(obj.get("type"), f"{path}[{i}].type", default="Exact")
        if kind not in _VALUE_TYPES:
            raise GatewayObjectError(
                f"{path}[{i}].type", f"{kind!r} is not Exact or RegularExpression"
            )
        name = read_str(obj.get("name"), f"{path}[{i}].name")
        name = name.lower() if lower else name
        # The spec: when a name repeats, the first entry counts and the others are ignored.
        if name in seen:
            continue
        seen.add(name)
        result.append(
            ValueMatch(name, read_str(obj.get("value"), f"{path}[{i}].value"), _VALUE_TYPES[kind])
        )
    return tuple(result)


def _filter(raw: Any, path: str) -> RouteFilter:
    obj = read_object(raw, path, required=True)
    kind = read_str(obj.get("type"), f"{path}.type")
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
        red = read_object(obj.get("requestRedirect"), where, required=True)
        scheme = read_opt_str(red.get("scheme"), f"{where}.scheme")
        return RouteFilter(
            kind,
            redirect=Redirect(
                scheme=scheme.lower() if scheme else None,
                hostname=read_opt_str(red.get("hostname"), f"{where}.hostname"),
                port=read_opt_int(red.get("port"), f"{where}.port", low=1, high=65535),
                path=_path_modifier(red.get("path"), f"{where}.path"),
                status_code=read_int(
                    red.get("statusCode"), f"{where}.statusCode", low=300, high=399, default=302
                ),
            ),
        )
    if kind == "URLRewrite":
        where = f"{path}.urlRewrite"
        rew = read_object(obj.get("urlRewrite"), where, required=True)
        return RouteFilter(
            kind,
            rewrite=Rewrite(
                hostname=read_opt_str(rew.get("hostname"), f"{where}.hostname"),
                path=_path_modifier(rew.get("path"), f"{where}.path"),
            ),
        )
    return RouteFilter(kind)


def _modifier(raw: Any, path: str) -> HeaderModifier:
    obj = read_object(raw, path, required=True)

    def pairs(name: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            (
                read_str(
                    read_object(item, f"{path}.{name}[{i}]", required=True).get("name"),
                    f"{path}.{name}[{i}].name",
                ),
                read_str(item.get("value"), f"{path}.{name}[{i}].value"),
            )
            for i, item in enumerate(read_list(obj.get(name), f"{path}.{name}"))
        )

    remove = tuple(
        read_str(item, f"{path}.remove[{i}]")
        for i, item in enumerate(read_list(obj.get("remove"), f"{path}.remove"))
    )
    return HeaderModifier(pairs("set"), pairs("add"), remove)


def _path_modifier(raw: Any, path: str) -> PathModifier | None:
    if raw is None:
        return None
    obj = read_object(raw, path)
    kind = read_str(obj.get("type"), f"{path}.type")
    if kind == "ReplaceFullPath":
        return PathModifier("full", read_str(obj.get("replaceFullPath"), f"{path}.replaceFullPath"))
    if kind == "ReplacePrefixMatch":
        return PathModifier(
            "prefix", read_str(obj.get("replacePrefixMatch"), f"{path}.replacePrefixMatch")
        )
    raise GatewayObjectError(
        f"{path}.type", f"{kind!r} is not ReplaceFullPath or ReplacePrefixMatch"
    )


def _backend(raw: Any, path: str) -> BackendRef:
    obj = read_object(raw, path, required=True)
    return BackendRef(
        group=read_str(obj.get("group"), f"{path}.group", default=CORE_GROUP),
        kind=read_str(obj.get("kind"), f"{path}.kind", default="Service"),
        name=read_str(obj.get("name"), f"{path}.name"),
        namespace=read_opt_str(obj.get("namespace"), f"{path}.namespace"),
        port=read_opt_int(obj.get("port"), f"{path}.port", low=1, high=65535),
        weight=read_int(obj.get("weight"), f"{path}.weight", low=0, high=1_000_000, default=1),
        has_filters=bool(read_list(obj.get("filters"), f"{path}.filters")),
    )
