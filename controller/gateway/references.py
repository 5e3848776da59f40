"""References across objects and namespaces: ReferenceGrants, a listener's certificateRefs
and a rule's backendRefs, each resolved to what it names or to the Verdict (condition
reason and message) explaining why not.

A reference into another namespace needs a ReferenceGrant in the target's namespace that
names the referrer's kind and namespace (`from`) and the target's kind, and its name if the
grant gives one (`to`). Gateways refer to Secrets; HTTPRoutes to Services.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.gateway.httproute import BackendRef
from controller.gateway.objects import (
    CORE_GROUP,
    GATEWAY_GROUP,
    Gateway,
    GrantFrom,
    GrantTo,
    Key,
    Listener,
    ReferenceGrant,
)
from controller.objects import ServiceInfo
from proxy.tls.certificate import Certificate

# What the TLS Secrets of the cache are, for the model: a certificate that passed
# controller/certificates.py's checks, or the reason it did not.
SecretVerdict = Certificate | str
ServicePortKey = tuple[str, str, int]  # (namespace, Service name, port)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A condition before it has times: status, reason, message."""

    status: bool
    reason: str
    message: str = ""


def _refused(reason: str, message: str) -> Verdict:
    return Verdict(False, reason, message)


class GrantIndex:
    """The ReferenceGrants by namespace."""

    def __init__(self, grants: Sequence[ReferenceGrant]) -> None:
        self._by_namespace: dict[str, list[ReferenceGrant]] = defaultdict(list)
        for grant in grants:
            self._by_namespace[grant.meta.namespace].append(grant)

    def permits(self, *, from_: GrantFrom, to_namespace: str, to: GrantTo) -> bool:
        if from_.namespace == to_namespace:
            return True
        return any(g.permits(from_=from_, to=to) for g in self._by_namespace.get(to_namespace, ()))


def _secret_permitted(
    grants: GrantIndex, gateway_namespace: str, namespace: str, name: str
) -> bool:
    return grants.permits(
        from_=GrantFrom(GATEWAY_GROUP, "Gateway", gateway_namespace),
        to_namespace=namespace,
        to=GrantTo(CORE_GROUP, "Secret", name),
    )


def listener_certificates(
    gateway: Gateway,
    listener: Listener,
    tls_secrets: Mapping[Key, SecretVerdict],
    grants: GrantIndex,
) -> tuple[Certificate | None, list[Verdict]]:
    """The certificate to serve (the first good one) and what is wrong with the others:
    InvalidCertificateRef (not a core Secret, missing, not a valid certificate) or
    RefNotPermitted (another namespace without a grant)."""
    refs = listener.tls.certificate_refs if listener.tls is not None else ()
    if not refs:
        return None, [_refused("InvalidCertificateRef", "HTTPS needs tls.certificateRefs")]
    found: Certificate | None = None
    problems: list[Verdict] = []
    gw_ns = gateway.meta.namespace
    for i, ref in enumerate(refs):
        where = f"tls.certificateRefs[{i}]"
        namespace = ref.namespace or gw_ns
        secret = f"Secret {namespace}/{ref.name}"
        if ref.group != CORE_GROUP or ref.kind != "Secret":
            what = f"{ref.group or 'core'}/{ref.kind}"
            problems.append(_refused("InvalidCertificateRef", f"{where}: {what} is not a Secret"))
            continue
        if not _secret_permitted(grants, gw_ns, namespace, ref.name):
            problems.append(
                _refused(
                    "RefNotPermitted",
                    f"{where}: {secret} is in another namespace and no ReferenceGrant allows it",
                )
            )
            continue
        verdict = tls_secrets.get((namespace, ref.name))
        if verdict is None:
            problems.append(_refused("InvalidCertificateRef", f"{where}: {secret} not found"))
        elif isinstance(verdict, str):
            problems.append(_refused("InvalidCertificateRef", f"{where}: {secret}: {verdict}"))
        elif found is None:
            found = verdict
    return found, problems


def certificate_refs(gateway: Gateway, grants: Sequence[ReferenceGrant]) -> set[Key]:
    """The Secrets a Gateway's HTTPS listeners may read (permitted ones only), for the
    plumbing to watch."""
    index = GrantIndex(grants)
    result: set[Key] = set()
    gw_ns = gateway.meta.namespace
    for listener in gateway.listeners:
        if listener.protocol != "HTTPS" or listener.tls is None:
            continue
        for ref in listener.tls.certificate_refs:
            namespace = ref.namespace or gw_ns
            if (
                ref.group == CORE_GROUP
                and ref.kind == "Secret"
                and _secret_permitted(index, gw_ns, namespace, ref.name)
            ):
                result.add((namespace, ref.name))
    return result


def resolve_backend(
    route_namespace: str,
    ref: BackendRef,
    services: Mapping[Key, ServiceInfo],
    grants: GrantIndex,
) -> tuple[ServicePortKey | None, Verdict | None]:
    """The Service port a backendRef names, or why it does not resolve: InvalidKind (not a
    core Service), RefNotPermitted (another namespace without a grant), BackendNotFound (no
    such Service, or no such port on it)."""
    namespace = ref.namespace or route_namespace
    name = f"{namespace}/{ref.name}"
    if ref.group != CORE_GROUP or ref.kind != "Service":
        what = f"{ref.group or 'core'}/{ref.kind}"
        return None, _refused("InvalidKind", f"backendRef {what} {name} is not a Service")
    permitted = grants.permits(
        from_=GrantFrom(GATEWAY_GROUP, "HTTPRoute", route_namespace),
        to_namespace=namespace,
        to=GrantTo(CORE_GROUP, "Service", ref.name),
    )
    if not permitted:
        return None, _refused(
            "RefNotPermitted",
            f"Service {name} is in another namespace and no ReferenceGrant allows it",
        )
    service = services.get((namespace, ref.name))
    if service is None:
        return None, _refused("BackendNotFound", f"Service {name} not found")
    if ref.port is None:
        return None, _refused("BackendNotFound", f"backendRef to Service {name} has no port")
    if not any(p.port == ref.port for p in service.ports):
        return None, _refused("BackendNotFound", f"Service {name} has no port {ref.port}")
    return (namespace, ref.name, ref.port), None
