"""Layer 3 of the watch loop (controller.watch): one request against the API server for one
kind in one scope, and the decoding of what it returns.

`StreamReader.watch_once` sends one watch request with a jittered server-side
`timeoutSeconds` and a client read timeout, so a silent connection cannot hang it, and applies
each event to the cache as it arrives; events and bookmarks advance `resource_version`. A 410
Gone, as HTTP status or as an ERROR event, raises `Gone` and forgets the resourceVersion.
We read raw JSON (`_preload_content=False`) and keep only the frozen views of
controller.objects, never the generated client models.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes_asyncio import client

from controller.cache import Cache, Kind, Object, WatchScope
from controller.gateway_streams import RawObject
from controller.objects import SERVICE_NAME_LABEL, SecretInfo, ServiceInfo, SliceInfo, mapping

if TYPE_CHECKING:  # controller.watch imports this module
    from controller.watch import WatchTiming

# The watch loop's one logger, whichever layer logs: its lines tell one story per stream.
log = logging.getLogger("kubeferry.controller.watch")

# One watch event is one JSON line; etcd caps an object at 1.5 MiB, JSON framing adds little.
_MAX_LINE_BYTES = 16 * 2**20


class WatchError(Exception):
    """A watch or list request failed in a way the API server told us about."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Gone(WatchError):
    """410 Gone: our resourceVersion is too old (compacted); only a relist helps."""

    def __init__(self, message: str) -> None:
        super().__init__("gone", message)


class StreamReader:
    """The request side of one stream (a kind in a scope): list pages and watch requests
    against the API server, watch events applied to the cache.

    Mutable state: `resource_version` (None: the next attempt lists first),
    `streaming_since` (when the current watch request started streaming; None outside a
    healthy watch).
    """

    def __init__(
        self,
        api: client.ApiClient,
        cache: Cache,
        *,
        kind: Kind,
        scope: WatchScope,
        timing: WatchTiming,
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self._cache = cache
        self._kind: Kind = kind
        self._scope = scope
        self._timing = timing
        self._rng = rng
        self._clock = clock
        self._list_call, self._selectors = _endpoint(api, kind, scope, cache)
        self.convert: Callable[[Mapping[str, Any]], Object] = _CONVERT[kind]
        self.resource_version: str | None = None
        self.streaming_since: float | None = None

    def fields(self, **more: Any) -> dict[str, Any]:
        """The stream's structured log fields, plus `more`."""
        return {"kind": self._kind, "scope": str(self._scope), **more}

    def server_timeout_seconds(self) -> int:
        base = self._timing.server_timeout_seconds
        jitter = self._timing.server_timeout_jitter_seconds
        return max(1, round(self._rng.uniform(base - jitter, base + jitter)))

    async def watch_once(self) -> None:
        """Stream one watch request into the cache until the server ends it. Raises on any
        failure; a 410 first forgets the resourceVersion so the next attempt relists."""
        server_timeout = self.server_timeout_seconds()
        inactivity = server_timeout + self._timing.inactivity_slack_seconds
        # sock_read is aiohttp's inactivity timer: it restarts on every chunk received.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timing.connect_timeout_seconds, sock_read=inactivity
        )
        params: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": self.resource_version,
            "timeout_seconds": server_timeout,
        }
        log.info(
            "watching %s in %s from %s",
            self._kind,
            self._scope,
            self.resource_version,
            extra={
                "event": "watch_start",
                **self.fields(
                    resource_version=self.resource_version,
                    timeout_seconds=server_timeout,
                    inactivity_seconds=inactivity,
                ),
            },
        )
        try:
            response = await self.request(params, timeout)
            try:
                await raise_for_status(response)
                self.streaming_since = self._clock()
                while True:
                    line = await response.content.readline(max_line_length=_MAX_LINE_BYTES)
                    if not line:
                        return  # EOF: the server's timeoutSeconds ran out
                    if line.strip():
                        self._apply(line)
            finally:
                response.close()
        except Gone:
            self.resource_version = None
            raise
        except TimeoutError as exc:
            if self.streaming_since is None:
                raise  # connecting timed out
            raise WatchError("inactivity", f"no bytes for {inactivity:g}s") from exc

    def _apply(self, line: bytes) -> None:
        """Apply one watch event to the cache (a plain def: state change, no I/O)."""
        # A Secret's watch line carries its data: never quoted in an error (or a log).
        shown = "(withheld: Secret data)" if self._kind == "Secret" else repr(line[:200])
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise WatchError("bad_event", f"undecodable watch line: {shown}") from exc
        if not isinstance(event, Mapping):
            raise WatchError("bad_event", f"watch event is not an object: {shown}")
        kind = event.get("type")
        obj = mapping(event.get("object"))
        if kind == "ERROR":
            code = obj.get("code")
            message = str(obj.get("message") or obj)
            if code == 410:
                raise Gone(message)
            raise WatchError(f"error_event_{code}", message)
        version = mapping(obj.get("metadata")).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self._cache.upsert(self._kind, self.convert(obj), scope=self._scope)
        elif kind == "DELETED":
            self._cache.delete(self._kind, self.convert(obj), scope=self._scope)
        elif kind != "BOOKMARK":
            log.warning(
                "ignoring watch event of unknown type %r",
                kind,
                extra={"event": "watch_unknown_event", **self.fields(type=str(kind))},
            )
            return
        if version:
            self.resource_version = str(version)

    async def request(
        self, params: dict[str, Any], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """One list or watch call of this stream's kind and scope; the caller reads the body."""
        response: aiohttp.ClientResponse = await self._list_call(
            **self._selectors,
            **params,
            _preload_content=False,
            _request_timeout=client_timeout,
        )
        return response


_CONVERT: Mapping[Kind, Callable[[Mapping[str, Any]], Object]] = {
    "Service": ServiceInfo.from_api,
    "EndpointSlice": SliceInfo.from_api,
    "Secret": SecretInfo.from_api,
    **{
        kind: functools.partial(RawObject.from_api, kind)
        for kind in ("GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "Namespace")
    },
    "GatewayService": functools.partial(RawObject.from_api, "Service"),
}

GATEWAY_GROUP = "gateway.networking.k8s.io"
# Every kind is served as v1 by Gateway API v1.6 (ReferenceGrant since v1.5; v1beta1 stays).
GATEWAY_VERSION = "v1"
GATEWAY_PLURALS: Mapping[str, str] = {
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
    "ReferenceGrant": "referencegrants",
}


def _endpoint(
    api: client.ApiClient, kind: Kind, scope: WatchScope, cache: Cache
) -> tuple[Callable[..., Awaitable[Any]], dict[str, Any]]:
    """The generated list function for a kind in a scope, with its namespace and selectors."""
    selectors: dict[str, Any] = {}
    plural = GATEWAY_PLURALS.get(kind)
    if plural is not None:
        custom = client.CustomObjectsApi(api)
        selectors.update(group=GATEWAY_GROUP, version=GATEWAY_VERSION, plural=plural)
        if scope.namespace is None:  # every namespace (or cluster-scoped GatewayClasses)
            return custom.list_cluster_custom_object, selectors
        selectors["namespace"] = scope.namespace
        return custom.list_namespaced_custom_object, selectors
    if kind == "Namespace":
        return client.CoreV1Api(api).list_namespace, selectors
    if kind == "GatewayService":
        if cache.gateway is None or scope.namespace is None:
            raise ValueError("owned Gateway Services need the cache's GatewayStreams")
        selectors["namespace"] = scope.namespace
        selectors["label_selector"] = cache.gateway.service_label
        return client.CoreV1Api(api).list_namespaced_service, selectors
    if kind == "Secret":
        # One Secret by name: a namespace-wide Secret watch would stream every Secret's data
        # (tokens, passwords) into this process. RBAC cannot narrow list/watch by name, but
        # the field selector narrows what the API server sends.
        if scope.namespace is None or scope.service is None:
            raise ValueError(f"a Secret stream names one Secret, not {scope}")
        selectors["namespace"] = scope.namespace
        selectors["field_selector"] = f"metadata.name={scope.service}"
        return client.CoreV1Api(api).list_namespaced_secret, selectors
    if kind == "Service":
        core = client.CoreV1Api(api)
        if scope.service is not None:
            selectors["field_selector"] = f"metadata.name={scope.service}"
        if scope.namespace is None:
            return core.list_service_for_all_namespaces, selectors
        selectors["namespace"] = scope.namespace
        return core.list_namespaced_service, selectors
    discovery = client.DiscoveryV1Api(api)
    if scope.service is not None:
        selectors["label_selector"] = f"{SERVICE_NAME_LABEL}={scope.service}"
    if scope.namespace is None:
        return discovery.list_endpoint_slice_for_all_namespaces, selectors
    selectors["namespace"] = scope.namespace
    return discovery.list_namespaced_endpoint_slice, selectors


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Raise `WatchError` (`Gone` for a 410) with the API server's message, unless 2xx."""
    if 200 <= response.status < 300:
        return
    try:
        text = (await response.content.read(4096)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        text = ""
    message = text
    try:
        status = json.loads(text)
        if isinstance(status, Mapping) and status.get("message"):
            message = str(status["message"])
    except ValueError:
        pass
    if response.status == 410:
        raise Gone(message or "410 Gone")
    raise WatchError(f"http_{response.status}", message or response.reason or "")
