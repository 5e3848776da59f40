"""The Gateway API kinds in the controller's cache: which streams there are, the raw form
their objects are kept in (`RawObject`).
Their parsing is the model's (controller.gateway); controller.cache holds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from controller.objects import mapping

GatewayKind: TypeAlias = Literal[
    "GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "Namespace", "GatewayService"
]
# With Gateway API on: Gateways, HTTPRoutes and ReferenceGrants in every scope, GatewayClasses
# and Namespaces cluster-wide, the owned Services in the controller's namespace.
GATEWAY_KINDS: tuple[GatewayKind, ...] = (
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "ReferenceGrant",
    "Namespace",
    "GatewayService",
)
SCOPED_GATEWAY_KINDS: tuple[GatewayKind, ...] = ("Gateway", "HTTPRoute", "ReferenceGrant")
# The kinds that are CRDs (gateway.networking.k8s.io/v1), which may not be installed.
GATEWAY_CRD_KINDS: frozenset[str] = frozenset({"GatewayClass", *SCOPED_GATEWAY_KINDS})


@dataclass(frozen=True, slots=True)
class RawObject:
    """A Kubernetes object kept as the API's JSON (`body`, never mutated: the watch decodes a
    fresh dict per event), for the Gateway API kinds whose parsing is the model's. Compared
    by identity and resourceVersion, which the API server changes on every write, so a relist
    of an unchanged object is no change."""

    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    uid: str
    resource_version: str
    body: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_api(cls, kind: str, obj: Mapping[str, Any]) -> RawObject:
        meta = mapping(obj.get("metadata"))
        # managedFields are the bulk of most objects and nothing here reads them.
        body = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        return cls(
            kind=kind,
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            body=MappingProxyType(body),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def metadata(self) -> Mapping[str, Any]:
        return mapping(self.body.get("metadata"))


@dataclass(frozen=True, slots=True)
class GatewayStreams:
    """Turns on the Gateway API streams: `service_namespace` is where the controller keeps
    the Services it owns for its Gateways (watched by `service_label`, which they carry)."""

    service_namespace: str
    service_label: str
