"""Builders of raw API JSON, a fake ClusterView and a recording EventRecorder for the
controller's unit tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.objects import SecretInfo, ServiceInfo, SliceInfo


def service_json(
    name: str = "web",
    namespace: str = "shop",
    *,
    annotations: Mapping[str, str] | None = None,
    ports: Sequence[Mapping[str, Any]] = ({"name": "http", "port": 80, "targetPort": 8080},),
    created: str = "2024-05-01T10:00:00Z",
    uid: str | None = None,
    ip_families: Sequence[str] = ("IPv4",),
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{namespace}-{name}",
            "creationTimestamp": created,
            "resourceVersion": "1",
            "annotations": dict(annotations or {}),
        },
        "spec": {"ports": [dict(p) for p in ports], "ipFamilies": list(ip_families)},
    }


def service(
    name: str = "web",
    namespace: str = "shop",
    *,
    enabled: bool = True,
    annotations: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> ServiceInfo:
    full = {"kubeferry.io/enabled": "true"} if enabled else {}
    full.update({f"kubeferry.io/{k}": v for k, v in (annotations or {}).items()})
    return ServiceInfo.from_api(service_json(name, namespace, annotations=full, **kwargs))


def endpoint_json(
    *addresses: str,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
) -> dict[str, Any]:
    conditions: dict[str, Any] = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    if terminating is not None:
        conditions["terminating"] = terminating
    return {"addresses": list(addresses), "conditions": conditions}


def slice_(
    service_name: str = "web",
    namespace: str = "shop",
    *,
    name: str | None = None,
    address_type: str = "IPv4",
    ports: Sequence[tuple[str | None, int]] = (("http", 8080),),
    endpoints: Sequence[Mapping[str, Any]] = (),
) -> SliceInfo:
    port_list: list[dict[str, Any]] = []
    for port_name, number in ports:
        entry: dict[str, Any] = {"port": number, "protocol": "TCP"}
        if port_name is not None:
            entry["name"] = port_name
        port_list.append(entry)
    return SliceInfo.from_api(
        {
            "metadata": {
                "name": name or f"{service_name}-{address_type.lower()}",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service_name},
            },
            "addressType": address_type,
            "ports": port_list,
            "endpoints": [dict(e) for e in endpoints],
        }
    )


class FakeCluster:
    """A ClusterView over plain dicts; tests replace entries to simulate changes, keeping
    unchanged objects identical (as the real cache does)."""

    def __init__(self) -> None:
        self.services_by_key: dict[tuple[str, str], ServiceInfo] = {}
        self.slices_by_service: dict[tuple[str, str], tuple[SliceInfo, ...]] = {}

    def add(self, svc: ServiceInfo, *slices: SliceInfo) -> None:
        self.services_by_key[svc.key] = svc
        if slices:
            self.slices_by_service[svc.key] = tuple(slices)

    def set_slices(self, namespace: str, name: str, *slices: SliceInfo) -> None:
        self.slices_by_service[(namespace, name)] = tuple(slices)

    def remove(self, namespace: str, name: str) -> None:
        self.services_by_key.pop((namespace, name), None)

    def services(self) -> Mapping[tuple[str, str], ServiceInfo]:
        return self.services_by_key

    def slices_for(self, namespace: str, service: str) -> Sequence[SliceInfo]:
        return self.slices_by_service.get((namespace, service), ())

    def secret(self, namespace: str, name: str) -> SecretInfo | None:
        return None  # no Secrets here: tests/unit/controller/test_tls_secrets.py uses the Cache

    def secret_listed(self, namespace: str, name: str) -> bool:
        return False


class RecordingEvents:
    """An EventRecorder that keeps every warning as (Service name, reason, message)."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, str, str]] = []

    def warn(self, service: ServiceInfo, reason: str, message: str) -> None:
        self.warnings.append((service.name, reason, message))
