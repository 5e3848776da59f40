"""Frozen views of the Kubernetes objects the controller reads, built from raw API JSON.

The watch reads raw JSON (`_preload_content=False`) instead of the generated client models to
keep memory low with many endpoints, so these classes take the camelCase dicts the API server
sends and keep only what translation needs. Every field has a safe value when the API leaves it
out, because a malformed object must never crash the watch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ANNOTATION_PREFIX = "kubeferry.io/"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One entry of a Service's `spec.ports`. `name` is "" for an unnamed single port."""

    name: str
    port: int
    target_port: int | str
    protocol: str

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> ServicePort:
        port = _int(obj.get("port"))
        target = obj.get("targetPort")
        target_port: int | str
        if isinstance(target, int) and not isinstance(target, bool):
            target_port = target
        elif isinstance(target, str) and target:
            target_port = int(target) if target.isdigit() else target
        else:
            target_port = port  # the API defaults targetPort to port
        return cls(
            name=str(obj.get("name") or ""),
            port=port,
            target_port=target_port,
            protocol=str(obj.get("protocol") or "TCP"),
        )


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the controller needs of a Service.

    `annotations` holds only the `kubeferry.io/*` ones, sorted, so two ServiceInfos compare
    equal exactly when everything the controller reads from them is equal.
    """

    namespace: str
    name: str
    uid: str
    created: str  # metadata.creationTimestamp, RFC 3339 ("2024-05-01T10:00:00Z"); sorts as text
    resource_version: str
    annotations: tuple[tuple[str, str], ...]
    ports: tuple[ServicePort, ...]
    # spec.ipFamilies, primary first ("IPv4", "IPv6"); picks one family of a dual-stack Service.
    ip_families: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> ServiceInfo:
        meta = mapping(obj.get("metadata"))
        spec = mapping(obj.get("spec"))
        raw_annotations = mapping(meta.get("annotations"))
        annotations = tuple(
            sorted(
                (str(k), str(v))
                for k, v in raw_annotations.items()
                if str(k).startswith(ANNOTATION_PREFIX)
            )
        )
        ports = tuple(
            ServicePort.from_api(p) for p in _sequence(spec.get("ports")) if isinstance(p, Mapping)
        )
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            created=str(meta.get("creationTimestamp") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            annotations=annotations,
            ports=ports,
            ip_families=tuple(str(f) for f in _sequence(spec.get("ipFamilies")) if f),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def annotation(self, name: str) -> str | None:
        """The value of `kubeferry.io/<name>`, or None when unset."""
        wanted = ANNOTATION_PREFIX + name
        for key, value in self.annotations:
            if key == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """One endpoint of an EndpointSlice, with the API's nil conditions already resolved:
    ready nil means ready, serving nil means the same as ready, terminating nil means not."""

    addresses: tuple[str, ...]
    ready: bool
    serving: bool
    terminating: bool

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> SliceEndpoint:
        conditions = mapping(obj.get("conditions"))
        ready = _condition(conditions.get("ready"), default=True)
        return cls(
            addresses=tuple(str(a) for a in _sequence(obj.get("addresses")) if a),
            ready=ready,
            serving=_condition(conditions.get("serving"), default=ready),
            terminating=_condition(conditions.get("terminating"), default=False),
        )


@dataclass(frozen=True, slots=True)
class SlicePort:
    """A port of an EndpointSlice; `name` matches the Service port's name ("" when unnamed)."""

    name: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class SliceInfo:
    """What the controller needs of an EndpointSlice. `service` is "" when the slice carries
    no `kubernetes.io/service-name` label (it then belongs to no Service)."""

    namespace: str
    name: str
    service: str
    address_type: str  # "IPv4", "IPv6" or "FQDN"
    ports: tuple[SlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...]
    resource_version: str = ""

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> SliceInfo:
        meta = mapping(obj.get("metadata"))
        labels = mapping(meta.get("labels"))
        ports = tuple(
            SlicePort(
                name=str(p.get("name") or ""),
                port=_int(p.get("port")),
                protocol=str(p.get("protocol") or "TCP"),
            )
            for p in _sequence(obj.get("ports"))
            # A nil port means "not restricted": nothing an HTTP proxy can dial, so skip it.
            if isinstance(p, Mapping) and _int(p.get("port")) > 0
        )
        endpoints = tuple(
            SliceEndpoint.from_api(e)
            for e in _sequence(obj.get("endpoints"))
            if isinstance(e, Mapping)
        )
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            service=str(labels.get(SERVICE_NAME_LABEL) or ""),
            address_type=str(obj.get("addressType") or ""),
            ports=ports,
            endpoints=endpoints,
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What the controller keeps of a Secret that a Service names in `kubeferry.io/tls-secret`:
    its type and the two PEM fields of a `kubernetes.io/tls` Secret, decoded. Every other
    field of `data` is dropped unread. The key material is left out of `repr`, so no log line
    or traceback can show it; `None` is a field that is missing or not valid base64."""

    namespace: str
    name: str
    type: str
    chain_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    resource_version: str = ""

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> SecretInfo:
        meta = mapping(obj.get("metadata"))
        data = mapping(obj.get("data"))
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            type=str(obj.get("type") or ""),
            chain_pem=_base64(data.get("tls.crt")),
            key_pem=_base64(data.get("tls.key")),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def _base64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


class ClusterView(Protocol):
    """Read access to the cached cluster state the sync rebuilds its desired state from."""

    def services(self) -> Mapping[tuple[str, str], ServiceInfo]:
        """Every cached Service by (namespace, name)."""
        ...

    def slices_for(self, namespace: str, service: str) -> Sequence[SliceInfo]:
        """The cached EndpointSlices labelled with `service` in `namespace`."""
        ...

    def secret(self, namespace: str, name: str) -> SecretInfo | None:
        """The cached Secret, or None: not found, or not listed yet (see `secret_listed`)."""
        ...

    def secret_listed(self, namespace: str, name: str) -> bool:
        """Whether the watch of this Secret has listed it once (so None means it is missing)."""
        ...


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one (the API may omit or mangle a field)."""
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _condition(value: Any, *, default: bool) -> bool:
    return value if isinstance(value, bool) else default
