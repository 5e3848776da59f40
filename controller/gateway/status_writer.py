"""Status writes of GatewayClasses, Gateways and HTTPRoutes: the merge patch from what an
object's `.status` is to what the model wants, and the call that sends it.

The model (controller.gateway.status) keeps each condition's lastTransitionTime when its
status, reason and message are unchanged, so an unchanged state gives an equal dict and
`status_patch` gives None: nothing is written, the resourceVersion stays. The patch covers
the top-level fields of `.status` (lists such as conditions, parents and listeners are
replaced whole by a merge patch; a field the model no longer sets is nulled).

Every patch carries the resourceVersion the model read: a merge patch with
`metadata.resourceVersion` fails with 409 when the object changed since, so a status
computed from an old object (another controller's parent entry just added to an HTTPRoute)
never overwrites a newer one; the watch brings the new object and the next sync retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.objects import mapping

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
PLURALS: Mapping[str, str] = {
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
}
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """A merge patch for one object's /status, from the object at `resource_version`."""

    kind: str
    namespace: str  # "" for a GatewayClass
    name: str
    resource_version: str
    patch: Mapping[str, Any]

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    @property
    def body(self) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": self.resource_version}, "status": self.patch}


def status_patch(
    desired: Mapping[str, Any], current: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The top-level merge patch turning `current` into `desired`, or None when equal."""
    have = mapping(current)
    patch: dict[str, Any] = {k: v for k, v in desired.items() if have.get(k) != v}
    patch.update({k: None for k in have if k not in desired and have[k] is not None})
    return patch or None


async def write(custom: Any, item: StatusWrite) -> None:
    """Send one status patch through kubernetes-asyncio's CustomObjectsApi; raises what the
    API raised (409: the object changed since it was read)."""
    plural = PLURALS[item.kind]
    if item.namespace:
        await custom.patch_namespaced_custom_object_status(
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            item.namespace,
            plural,
            item.name,
            item.body,
            _content_type=MERGE_PATCH,
        )
    else:
        await custom.patch_cluster_custom_object_status(
            GATEWAY_GROUP, GATEWAY_VERSION, plural, item.name, item.body, _content_type=MERGE_PATCH
        )
