"""The Services the controller owns, one per Gateway: what they should be, the diff to what the
cache holds, and the API calls that close it.

Each Gateway gets a ClusterIP Service in the controller's own namespace (cross-namespace
ownerReferences are not allowed, so the owner is named in an annotation), selecting the
kubeferry pods, one port per distinct listener port: `port: <listener port>`,
`targetPort: <internal port>`, name `gw-<port>`. Its ClusterIP is the Gateway's address.
Every owned Service carries the label `gateway.kubeferry.io/namespace` (the watch selects on
it) and, when the Gateway's name fits a label value, `gateway.kubeferry.io/name`.

`changes` is the plain diff (create, patch, delete); `apply` does one change against the API.
Only Services with the label are ever touched, and a delete names the uid it saw, so a
Service re-created in the meantime survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.gateway.state import (
    GATEWAY_NAME_LABEL,
    GATEWAY_NAMESPACE_LABEL,
    GatewayService,
    service_name,
)
from controller.gateway_streams import RawObject
from controller.objects import mapping

GATEWAY_ANNOTATION = "gateway.kubeferry.io/gateway"  # "namespace/name" of the owner
MERGE_PATCH = "application/merge-patch+json"
_MAX_LABEL_VALUE = 63

GatewayKey = tuple[str, str]  # (namespace, name)


def manifest(
    service: GatewayService, namespace: str, selector: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """The whole Service object for one Gateway."""
    gateway_namespace, gateway_name = service.gateway
    labels = {GATEWAY_NAMESPACE_LABEL: gateway_namespace}
    if len(gateway_name) <= _MAX_LABEL_VALUE:
        labels[GATEWAY_NAME_LABEL] = gateway_name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service.name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {GATEWAY_ANNOTATION: f"{gateway_namespace}/{gateway_name}"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {"name": p.name, "protocol": "TCP", "port": p.port, "targetPort": p.target_port}
                for p in service.ports
            ],
        },
    }


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """One call to make: create `body`, merge-patch `body` into `name`, or delete `name`
    (only if its uid is still `uid`)."""

    action: Literal["create", "patch", "delete"]
    name: str
    body: Mapping[str, Any] | None = None
    uid: str = ""

    def __str__(self) -> str:
        return f"{self.action} Service {self.name}"


def owner(service: RawObject) -> GatewayKey | None:
    """The Gateway an owned Service belongs to, from its annotation."""
    annotations = mapping(service.metadata.get("annotations"))
    namespace, slash, name = str(annotations.get(GATEWAY_ANNOTATION) or "").partition("/")
    return (namespace, name) if slash and namespace and name else None


def addresses(services: Iterable[RawObject]) -> dict[GatewayKey, str]:
    """The ClusterIP of each Gateway's Service (once the API server has assigned one)."""
    result: dict[GatewayKey, str] = {}
    for service in services:
        gateway = owner(service)
        cluster_ip = str(mapping(service.body.get("spec")).get("clusterIP") or "")
        if gateway is None or service.name != service_name(*gateway):
            continue
        if cluster_ip and cluster_ip != "None":  # "None": headless, which ours never are
            result[gateway] = cluster_ip
    return result


def changes(
    wanted: Iterable[GatewayService],
    current: Mapping[tuple[str, str], RawObject],
    *,
    namespace: str,
    selector: Sequence[tuple[str, str]],
) -> tuple[ServiceChange, ...]:
    """What to do so that the owned Services in `namespace` are exactly `wanted` (Gateways
    without a port get none: a ClusterIP Service needs one)."""
    existing = {obj.name: obj for (ns, _), obj in current.items() if ns == namespace}
    result: list[ServiceChange] = []
    keep: set[str] = set()
    for owned in sorted(wanted, key=lambda o: o.gateway):
        if not owned.ports:
            continue
        keep.add(owned.name)
        body = manifest(owned, namespace, selector)
        have = existing.get(owned.name)
        if have is None:
            result.append(ServiceChange("create", owned.name, body))
            continue
        patch = _patch(body, have.body)
        if patch:
            result.append(ServiceChange("patch", owned.name, patch))
    for name in sorted(existing.keys() - keep):
        result.append(ServiceChange("delete", name, uid=existing[name].uid))
    return tuple(result)


def _patch(body: Mapping[str, Any], have: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch from `have` to `body` over what this module owns, or {} when equal.
    Maps are merged by a merge patch, so selector keys to drop are set to null; lists
    (ports) are replaced whole."""
    meta, have_meta = mapping(body.get("metadata")), mapping(have.get("metadata"))
    spec, have_spec = mapping(body.get("spec")), mapping(have.get("spec"))
    patch: dict[str, Any] = {}
    for field in ("labels", "annotations"):
        wanted, present = mapping(meta.get(field)), mapping(have_meta.get(field))
        diff = {k: v for k, v in wanted.items() if present.get(k) != v}
        if diff:
            patch.setdefault("metadata", {})[field] = diff
    spec_patch: dict[str, Any] = {}
    selector, have_selector = mapping(spec.get("selector")), mapping(have_spec.get("selector"))
    if dict(selector) != dict(have_selector):
        spec_patch["selector"] = {
            **{k: None for k in have_selector if k not in selector},
            **selector,
        }
    if _ports(spec.get("ports")) != _ports(have_spec.get("ports")):
        spec_patch["ports"] = spec.get("ports")
    if have_spec.get("type", "ClusterIP") != spec.get("type"):
        spec_patch["type"] = spec.get("type")
    if spec_patch:
        patch["spec"] = spec_patch
    return patch


def _ports(value: Any) -> list[tuple[str, str, int, Any]]:
    ports = value if isinstance(value, list) else []
    return sorted(
        (
            str(p.get("name") or ""),
            str(p.get("protocol") or "TCP"),
            int(p.get("port") or 0),
            p.get("targetPort"),
        )
        for p in ports
        if isinstance(p, Mapping)
    )


async def apply(core: Any, namespace: str, change: ServiceChange) -> None:
    """Make one change through kubernetes-asyncio's CoreV1Api; raises what the API raised.
    A create that finds the Service there (another replica made it) or a delete that finds
    it gone is no error."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        if change.action == "create":
            await core.create_namespaced_service(namespace, dict(change.body or {}))
        elif change.action == "patch":
            await core.patch_namespaced_service(
                change.name, namespace, dict(change.body or {}), _content_type=MERGE_PATCH
            )
        else:
            await core.delete_namespaced_service(
                change.name, namespace, body={"preconditions": {"uid": change.uid}}
            )
    except ApiException as error:
        benign = {"create": (409,), "patch": (), "delete": (404, 409)}[change.action]
        if error.status not in benign:
            raise
