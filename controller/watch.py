"""List+watch of Services and EndpointSlices into the cache, in kopf's three layers.

  forever        `_Stream.run_forever`: reconnect after any failure, with full-jitter
                 exponential backoff that starts over after a healthy period
  list+watch     `_Stream.list_and_watch`: list once (the cache swaps in the result whole),
                 then watch from the tracked resourceVersion (events and bookmarks advance
                 it); a 410 Gone, as HTTP status or as an ERROR event, forgets it: relist
  one request    `_Stream.watch_once`: one watch request with a jittered server-side
                 `timeoutSeconds`, and a client read timeout so a silent connection cannot
                 hang it

Each (kind, scope) pair is one stream with its own task. The cache is never cleared on a
failure: the proxy serves (and health-checks) the last known endpoints until a new list
replaces them. We read raw JSON (`_preload_content=False`) and keep only the frozen views of
controller.objects, never the generated client models.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client

from controller.cache import KINDS, Cache, Kind, Object, WatchScope
from controller.objects import SERVICE_NAME_LABEL, ServiceInfo, SliceInfo

__all__ = ["Backoff", "WatchMetrics", "WatchScope", "WatchTiming", "run_watches"]

log = logging.getLogger("kubeferry.controller.watch")

# One watch event is one JSON line; etcd caps an object at 1.5 MiB, JSON framing adds little.
_MAX_LINE_BYTES = 16 * 2**20


class WatchMetrics(Protocol):
    """What the watch reports (controller.metrics.ControllerMetrics implements it)."""

    def watch_restart(self, *, kind: str) -> None: ...

    def relist(self, *, kind: str) -> None: ...


@dataclass(frozen=True, slots=True)
class WatchTiming:
    """Timeouts and backoff of the watch loop; tests shrink them."""

    # Server-side `timeoutSeconds` of a watch request, uniformly jittered by +-jitter so many
    # controllers do not reconnect in lockstep.
    server_timeout_seconds: float = 270.0
    server_timeout_jitter_seconds: float = 30.0
    # The client gives up on a watch that sent no byte for its server timeout plus this much.
    # Bookmarks and the server's own timeout keep a healthy watch well inside it.
    inactivity_slack_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    # A whole list (every page) must finish in this long.
    list_timeout_seconds: float = 120.0
    list_page_size: int = 500
    # Full jitter: the n-th consecutive failure waits uniform(0, min(max, initial * 2**n)).
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # A watch that streamed this long without failing resets the backoff.
    backoff_reset_after_seconds: float = 60.0


class Backoff:
    """Full-jitter exponential backoff ("Exponential Backoff And Jitter", AWS architecture blog).
    A plain object with no I/O: the caller sleeps."""

    def __init__(self, *, initial_seconds: float, max_seconds: float, rng: random.Random) -> None:
        self._initial = initial_seconds
        self._max = max_seconds
        self._rng = rng
        self.failures = 0

    def __repr__(self) -> str:
        return f"<Backoff {self.failures} failures, cap {self.cap_seconds():g}s>"

    def cap_seconds(self) -> float:
        return float(min(self._max, self._initial * 2 ** min(self.failures, 64)))

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        delay = self._rng.uniform(0, self.cap_seconds())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class WatchError(Exception):
    """A watch or list request failed in a way the API server told us about."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class _Gone(WatchError):
    """410 Gone: our resourceVersion is too old (compacted); only a relist helps."""

    def __init__(self, message: str) -> None:
        super().__init__("gone", message)


Sleep = Callable[[float], Awaitable[None]]


async def run_watches(
    api: client.ApiClient,
    cache: Cache,
    *,
    scopes: Sequence[WatchScope] | None = None,
    metrics: WatchMetrics,
    timing: WatchTiming = WatchTiming(),
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Keep `cache` in step with the cluster, forever: one stream per kind and scope.

    `scopes` defaults to the cache's own; each must be one of them. Returns only by
    cancellation; every failure inside is retried with backoff and never clears the cache.
    """
    scopes = tuple(scopes) if scopes is not None else cache.scopes
    unknown = [s for s in scopes if s not in cache.scopes]
    if unknown:
        raise ValueError(f"scopes {unknown} are not the cache's scopes {cache.scopes}")
    rng = rng or random.Random()
    async with asyncio.TaskGroup() as group:
        for scope in scopes:
            for kind in KINDS:
                stream = _Stream(
                    api,
                    cache,
                    kind=kind,
                    scope=scope,
                    metrics=metrics,
                    timing=timing,
                    rng=rng,
                    clock=clock,
                    sleep=sleep,
                )
                group.create_task(stream.run_forever(), name=f"watch {kind} {scope}")


class _Stream:
    """One list+watch stream: a kind in a scope.

    Mutable state: `resource_version` (None: the next attempt lists first), `backoff`,
    `_streaming_since`, `_gone_before`.
    """

    def __init__(
        self,
        api: client.ApiClient,
        cache: Cache,
        *,
        kind: Kind,
        scope: WatchScope,
        metrics: WatchMetrics,
        timing: WatchTiming,
        rng: random.Random,
        clock: Callable[[], float],
        sleep: Sleep,
    ) -> None:
        self._cache = cache
        self._kind: Kind = kind
        self._scope = scope
        self._metrics = metrics
        self._timing = timing
        self._rng = rng
        self._clock = clock
        self._sleep = sleep
        self._list_call, self._selectors = _endpoint(api, kind, scope)
        self._convert: Callable[[Mapping[str, Any]], Object] = (
            ServiceInfo.from_api if kind == "Service" else SliceInfo.from_api
        )
        self.resource_version: str | None = None
        self.backoff = Backoff(
            initial_seconds=timing.backoff_initial_seconds,
            max_seconds=timing.backoff_max_seconds,
            rng=rng,
        )
        # When the current watch request started streaming; None outside a healthy watch.
        self._streaming_since: float | None = None
        # Whether the last failure was a 410 (a second one in a row backs off).
        self._gone_before = False

    def _fields(self, **more: Any) -> dict[str, Any]:
        return {"kind": self._kind, "scope": str(self._scope), **more}

    # -- layer 1: forever ----------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            try:
                await self.list_and_watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the top of the task: log, back off, try again
                reason = _reason(exc)
                if (
                    self._streaming_since is not None
                    and self._clock() - self._streaming_since
                    >= self._timing.backoff_reset_after_seconds
                ):
                    self.backoff.reset()
                self._streaming_since = None
                # A 410 is an answer from a reachable server and routine after compaction or
                # an API server restart: relist at once. Two in a row back off like errors.
                gone = isinstance(exc, _Gone)
                delay = 0.0 if gone and not self._gone_before else self.backoff.next_delay()
                self._gone_before = gone
                self._metrics.watch_restart(kind=self._kind)
                log.warning(
                    "watch of %s %s failed (%s), retrying in %.2fs: %s",
                    self._kind,
                    self._scope,
                    reason,
                    delay,
                    exc,
                    extra={
                        "event": "watch_restart",
                        **self._fields(
                            reason=reason,
                            error=str(exc),
                            delay_seconds=round(delay, 3),
                            failures=self.backoff.failures,
                            relist=self.resource_version is None,
                        ),
                    },
                )
                if delay > 0:
                    await self._sleep(delay)

    # -- layer 2: list, then watch from the list's resourceVersion ------------------------------

    async def list_and_watch(self) -> None:
        if self.resource_version is None:
            await self.list_all()
        while True:
            await self.watch_once()
            lasted = self._clock() - (self._streaming_since or 0.0)
            if lasted < self._timing.backoff_reset_after_seconds:
                # A clean end long before timeoutSeconds (an API server shutting down, a proxy
                # in between): back off, or a server that ends every watch at once would have
                # us rewatching in a hot loop.
                raise WatchError("ended_early", f"the server ended the watch after {lasted:.1f}s")
            # The server ended the request at its timeout: a healthy watch, go on from where
            # it stopped. Nothing to back off from.
            self.backoff.reset()
            self._streaming_since = None
            self._gone_before = False
            self._metrics.watch_restart(kind=self._kind)
            log.info(
                "watch of %s %s ended by the server, rewatching",
                self._kind,
                self._scope,
                extra={
                    "event": "watch_restart",
                    **self._fields(reason="server_timeout", resource_version=self.resource_version),
                },
            )

    async def list_all(self) -> None:
        """List every page, then hand the whole result to the cache in one call."""
        objects: list[Object] = []
        resource_version = ""
        continue_token: str | None = None
        started = self._clock()
        timeout = aiohttp.ClientTimeout(
            total=self._timing.list_timeout_seconds,
            sock_connect=self._timing.connect_timeout_seconds,
        )
        while True:
            params: dict[str, Any] = {"limit": self._timing.list_page_size}
            if continue_token:
                params["_continue"] = continue_token
            response = await self._request(params, timeout)
            async with response:
                await _raise_for_status(response)
                body = await response.json(loads=json.loads, content_type=None)
            meta = _mapping(body.get("metadata"))
            for item in body.get("items") or ():
                if isinstance(item, Mapping):
                    objects.append(self._convert(item))
            resource_version = str(meta.get("resourceVersion") or "")
            continue_token = str(meta.get("continue") or "") or None
            if continue_token is None:
                break
        changed = self._cache.replace_all(self._kind, objects, scope=self._scope)
        self.resource_version = resource_version
        self._metrics.relist(kind=self._kind)
        log.info(
            "listed %d %s in %s",
            len(objects),
            self._kind,
            self._scope,
            extra={
                "event": "relist",
                **self._fields(
                    count=len(objects),
                    changed=changed,
                    resource_version=resource_version,
                    duration_seconds=round(self._clock() - started, 3),
                ),
            },
        )

    # -- layer 3: one watch request ------------------------------------------------------------

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
                **self._fields(
                    resource_version=self.resource_version,
                    timeout_seconds=server_timeout,
                    inactivity_seconds=inactivity,
                ),
            },
        )
        try:
            response = await self._request(params, timeout)
            try:
                await _raise_for_status(response)
                self._streaming_since = self._clock()
                while True:
                    line = await response.content.readline(max_line_length=_MAX_LINE_BYTES)
                    if not line:
                        return  # EOF: the server's timeoutSeconds ran out
                    if line.strip():
                        self._apply(line)
            finally:
                response.close()
        except _Gone:
            self.resource_version = None
            raise
        except TimeoutError as exc:
            if self._streaming_since is None:
                raise  # connecting timed out
            raise WatchError("inactivity", f"no bytes for {inactivity:g}s") from exc

    def _apply(self, line: bytes) -> None:
        """Apply one watch event to the cache (a plain def: state change, no I/O)."""
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise WatchError("bad_event", f"undecodable watch line: {line[:200]!r}") from exc
        if not isinstance(event, Mapping):
            raise WatchError("bad_event", f"watch event is not an object: {line[:200]!r}")
        kind = event.get("type")
        obj = _mapping(event.get("object"))
        if kind == "ERROR":
            code = obj.get("code")
            message = str(obj.get("message") or obj)
            if code == 410:
                raise _Gone(message)
            raise WatchError(f"error_event_{code}", message)
        version = _mapping(obj.get("metadata")).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self._cache.upsert(self._kind, self._convert(obj), scope=self._scope)
        elif kind == "DELETED":
            self._cache.delete(self._kind, self._convert(obj), scope=self._scope)
        elif kind != "BOOKMARK":
            log.warning(
                "ignoring watch event of unknown type %r",
                kind,
                extra={"event": "watch_unknown_event", **self._fields(type=str(kind))},
            )
            return
        if version:
            self.resource_version = str(version)

    async def _request(
        self, params: dict[str, Any], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self._list_call(
            **self._selectors,
            **params,
            _preload_content=False,
            _request_timeout=client_timeout,
        )
        return response


def _endpoint(
    api: client.ApiClient, kind: Kind, scope: WatchScope
) -> tuple[Callable[..., Awaitable[Any]], dict[str, Any]]:
    """The generated list function for a kind in a scope, with its namespace and selectors."""
    selectors: dict[str, Any] = {}
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


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
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
        raise _Gone(message or "410 Gone")
    raise WatchError(f"http_{response.status}", message or response.reason or "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, WatchError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return "connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection_lost"  # the stream broke off mid-response
    return type(exc).__name__


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
