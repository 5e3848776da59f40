"""The desired `.status` of every GatewayClass, Gateway and HTTPRoute we own, as plain dicts
ready for a merge patch of the `/status` subresource.

Equal inputs give equal dicts, so the plumbing writes a status only when it differs from the
object's: every condition carries the object's `metadata.generation` as observedGeneration,
and its lastTransitionTime is the existing condition's when status, reason and message are
unchanged (else `now`). In an HTTPRoute, only the parents whose Gateway is ours are ours to
write: other controllers' entries of `status.parents` are kept as they are, before ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controller.gateway.graph import GatewayNode, ListenerNode, RouteNode, Verdict
from controller.gateway.objects import GatewayClass, Key

# The features of Gateway API v1.6 that kubeferry implements, sorted by name as the CRD
# requires. The conformance suite reads this list to decide which extended tests to run, so
# it names only what the model and the data plane both do: not mirrors, timeouts, retries,
# CORS. Listener isolation: translate.py drops a route's hostnames that a more specific
# listener of the port covers and makes every listener hostname an isolated host of the
# port's RouteTable (proxy.routing).
SUPPORTED_FEATURES: tuple[str, ...] = tuple(
    sorted(
        (
            "Gateway",
            "GatewayHTTPListenerIsolation",
            "GatewayPort8080",
            "HTTPRoute",
            "HTTPRoute303RedirectStatusCode",
            "HTTPRoute307RedirectStatusCode",
            "HTTPRoute308RedirectStatusCode",
            "HTTPRouteHostRewrite",
            "HTTPRouteMethodMatching",
            "HTTPRouteParentRefPort",
            "HTTPRoutePathRedirect",
            "HTTPRoutePathRewrite",
            "HTTPRoutePortRedirect",
            "HTTPRouteQueryParamMatching",
            "HTTPRouteResponseHeaderModification",
            "HTTPRouteSchemeRedirect",
            "ReferenceGrant",
        )
    )
)
SUPPORTED_BUNDLE = "v1.6."  # bundle-version prefix of the CRDs this model is written against
MAX_MESSAGE = 1024  # conditions allow 32768; a status is read by people, keep it short
MAX_PARENTS = 32  # status.parents maxItems

Status = dict[str, Any]
Previous = Mapping[str, Mapping[str, Any]]  # condition type -> existing condition


def previous_conditions(conditions: Any) -> Previous:
    """The existing conditions of a status list, by type (malformed entries ignored)."""
    if not isinstance(conditions, list):
        return {}
    return {str(c["type"]): c for c in conditions if isinstance(c, Mapping) and "type" in c}


def condition(
    type_: str, verdict: Verdict, *, generation: int, previous: Previous, now: str
) -> dict[str, Any]:
    status = "True" if verdict.status else "False"
    message = verdict.message[:MAX_MESSAGE]
    old = previous.get(type_)
    since = now
    if (
        old is not None
        and old.get("status") == status
        and old.get("reason") == verdict.reason
        and old.get("message", "") == message
        and isinstance(old.get("lastTransitionTime"), str)
    ):
        since = old["lastTransitionTime"]
    return {
        "type": type_,
        "status": status,
        "reason": verdict.reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def _conditions(
    items: Iterable[tuple[str, Verdict]], *, generation: int, previous: Previous, now: str
) -> list[dict[str, Any]]:
    return [condition(t, v, generation=generation, previous=previous, now=now) for t, v in items]


def _existing_status(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    status = raw.get("status")
    return status if isinstance(status, Mapping) else {}


# -- GatewayClass --------------------------------------------------------------------------


def gateway_class_status(
    gateway_class: GatewayClass,
    raw: Mapping[str, Any],
    *,
    now: str,
    bundle_version: str | None,
) -> Status:
    """Accepted (False InvalidParameters when it names parameters: kubeferry takes none),
    SupportedVersion when the CRDs' bundle version is known, and supportedFeatures."""
    previous = previous_conditions(_existing_status(raw).get("conditions"))
    accepted = Verdict(True, "Accepted", "kubeferry serves Gateways of this class")
    if gateway_class.has_parameters:
        accepted = Verdict(False, "InvalidParameters", "kubeferry takes no parametersRef")
    items = [("Accepted", accepted)]
    if bundle_version is not None:
        if bundle_version.startswith(SUPPORTED_BUNDLE):
            version = Verdict(True, "SupportedVersion", f"CRDs {bundle_version}")
        else:
            version = Verdict(
                False,
                "UnsupportedVersion",
                f"CRDs {bundle_version}; kubeferry supports {SUPPORTED_BUNDLE}x (best effort)",
            )
        items.append(("SupportedVersion", version))
    return {
        "conditions": _conditions(
            items, generation=gateway_class.meta.generation, previous=previous, now=now
        ),
        "supportedFeatures": [{"name": name} for name in SUPPORTED_FEATURES],
    }


# -- Gateway -------------------------------------------------------------------------------


def listener_programmed(node: ListenerNode, *, internal_port: int | None, bound: bool) -> Verdict:
    if not node.accepted.status:
        return Verdict(False, "Invalid", "the listener is not accepted")
    if node.conflicted.status:
        return Verdict(False, "Invalid", "the listener conflicts with another listener")
    if not node.certificates_ok:
        return Verdict(False, "Invalid", "no valid certificate to serve")
    if internal_port is None:
        return Verdict(False, "Pending", "no free internal port in the gateway port range")
    if not bound:
        return Verdict(False, "Pending", f"waiting for the data plane to listen on {internal_port}")
    return Verdict(True, "Programmed")


def gateway_status(
    node: GatewayNode,
    raw: Mapping[str, Any],
    *,
    attached: Mapping[tuple[Key, str], int],
    internal_ports: Mapping[int, int],
    bound_ports: frozenset[int],
    address: str | None,
    now: str,
) -> Status:
    """`internal_ports`: listener port -> internal port for this Gateway."""
    existing = _existing_status(raw)
    previous = previous_conditions(existing.get("conditions"))
    previous_listeners: dict[str, Previous] = {}
    if isinstance(existing.get("listeners"), list):
        for item in existing["listeners"]:
            if isinstance(item, Mapping) and "name" in item:
                previous_listeners[str(item["name"])] = previous_conditions(item.get("conditions"))
    gateway = node.gateway
    generation = gateway.meta.generation
    key = gateway.meta.key

    listeners = []
    accepted = gateway_accepted(node)
    programmed_any = False
    for ln in node.listeners:
        internal = internal_ports.get(ln.listener.port)
        programmed = listener_programmed(
            ln, internal_port=internal, bound=internal is not None and internal in bound_ports
        )
        if not accepted.status:
            programmed = Verdict(False, "Invalid", "the Gateway is not accepted")
        programmed_any = programmed_any or programmed.status
        listeners.append(
            {
                "name": ln.listener.name,
                "supportedKinds": [k.to_api() for k in ln.supported_kinds],
                "attachedRoutes": attached.get((key, ln.listener.name), 0),
                "conditions": _conditions(
                    (
                        ("Accepted", ln.accepted),
                        ("Programmed", programmed),
                        ("ResolvedRefs", ln.resolved_refs),
                        ("Conflicted", ln.conflicted),
                    ),
                    generation=generation,
                    previous=previous_listeners.get(ln.listener.name, {}),
                    now=now,
                ),
            }
        )

    if not accepted.status:
        programmed_gw = Verdict(False, "Invalid", "the Gateway is not accepted")
    elif not any(ln.servable for ln in node.listeners):
        programmed_gw = Verdict(False, "Invalid", "no listener can be served")
    elif address is None:
        programmed_gw = Verdict(False, "AddressNotAssigned", "waiting for the Gateway's Service")
    elif not programmed_any:
        programmed_gw = Verdict(False, "Pending", "no listener is programmed yet")
    else:
        programmed_gw = Verdict(True, "Programmed")
    return {
        "addresses": [] if address is None else [{"type": "IPAddress", "value": address}],
        "conditions": _conditions(
            (("Accepted", accepted), ("Programmed", programmed_gw)),
            generation=generation,
            previous=previous,
            now=now,
        ),
        "listeners": listeners,
    }


def gateway_accepted(node: GatewayNode) -> Verdict:
    if node.gateway.has_addresses:
        return Verdict(False, "UnsupportedAddress", "spec.addresses is not supported")
    bad = [
        ln.listener.name
        for ln in node.listeners
        if not ln.accepted.status or ln.conflicted.status or not ln.resolved_refs.status
    ]
    if not bad:
        return Verdict(True, "Accepted")
    message = f"listeners not valid: {', '.join(bad)}"
    if any(ln.accepted.status for ln in node.listeners):
        return Verdict(True, "ListenersNotValid", message)
    return Verdict(False, "ListenersNotValid", message)


# -- HTTPRoute -----------------------------------------------------------------------------


def route_status(
    node: RouteNode | None,
    raw: Mapping[str, Any],
    *,
    controller_name: str,
    now: str,
) -> Status:
    """The route's status.parents: other controllers' entries as they are, then ours (none
    when `node` is None: the route no longer names one of our Gateways)."""
    existing = _existing_status(raw)
    old_parents = existing.get("parents")
    old_parents = old_parents if isinstance(old_parents, list) else []
    others = [
        p
        for p in old_parents
        if isinstance(p, Mapping) and p.get("controllerName") != controller_name
    ]
    ours_before = [
        p
        for p in old_parents
        if isinstance(p, Mapping) and p.get("controllerName") == controller_name
    ]
    ours = [] if node is None else _route_parents(node, ours_before, controller_name, now)
    return {"parents": [dict(p) for p in others] + ours[: max(0, MAX_PARENTS - len(others))]}


def _route_parents(
    node: RouteNode, before: Sequence[Mapping[str, Any]], controller_name: str, now: str
) -> list[dict[str, Any]]:
    generation = node.route.meta.generation
    result = []
    for parent in node.parents:
        previous: Previous = {}
        for old in before:
            if old.get("parentRef") == parent.ref.raw:
                previous = previous_conditions(old.get("conditions"))
                break
        items = [("Accepted", parent.accepted), ("ResolvedRefs", node.resolved_refs)]
        if node.partially_invalid is not None:
            items.append(("PartiallyInvalid", node.partially_invalid))
        result.append(
            {
                "parentRef": dict(parent.ref.raw),
                "controllerName": controller_name,
                "conditions": _conditions(items, generation=generation, previous=previous, now=now),
            }
        )
    return result


def has_our_parents(raw: Mapping[str, Any], controller_name: str) -> bool:
    parents = _existing_status(raw).get("parents")
    return isinstance(parents, list) and any(
        isinstance(p, Mapping) and p.get("controllerName") == controller_name for p in parents
    )


def invalid_route_status(
    raw: Mapping[str, Any],
    parents: Sequence[tuple[Mapping[str, Any], Verdict]],
    *,
    generation: int,
    controller_name: str,
    now: str,
) -> Status:
    """The status of a route we cannot parse: each of its parentRefs of our Gateways gets
    Accepted=False with the parse error."""
    existing = _existing_status(raw)
    old_parents = existing.get("parents")
    old_parents = old_parents if isinstance(old_parents, list) else []
    others = [
        dict(p)
        for p in old_parents
        if isinstance(p, Mapping) and p.get("controllerName") != controller_name
    ]
    ours = []
    for ref, verdict in parents:
        previous: Previous = {}
        for old in old_parents:
            if (
                isinstance(old, Mapping)
                and old.get("controllerName") == controller_name
                and (old.get("parentRef") == ref)
            ):
                previous = previous_conditions(old.get("conditions"))
        ours.append(
            {
                "parentRef": dict(ref),
                "controllerName": controller_name,
                "conditions": _conditions(
                    (("Accepted", verdict),), generation=generation, previous=previous, now=now
                ),
            }
        )
    return {"parents": others + ours[: max(0, MAX_PARENTS - len(others))]}
