"""List+watch of Services and EndpointSlices into the cache, in kopf's three layers.

  forever        `_Stream.run_forever`: reconnect after any failure, with full-jitter
                 exponential backoff (controller.backoff) that starts over after a healthy
                 period
  list+watch     `_Stream.list_and_watch`: list once (the cache swaps in the result whole),
                 then watch from the tracked resourceVersion (events and bookmarks advance
                 it); a 410 Gone, as HTTP status or as an ERROR event, forgets it: relist
  one request    `StreamReader.watch_once` (controller.watch_stream): one watch request with a
                 jittered server-side `timeoutSeconds`, and a client read timeout so a silent
                 connection cannot hang it

Each (kind, scope) pair is one stream with its own task. The cache is never cleared on a
failure: the proxy serves (and health-checks) the last known endpoints until a new list
replaces them.

The Gateway API kinds are CRDs that may not be installed: their list answers 404. That is
said once, in one `gateway_api_missing` line for all of them (`MissingApiNotice`), and again
only after they were found; the streams keep retrying with the usual backoff, and nothing
else waits for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client

from controller.backoff import Backoff
from controller.cache import Cache, Kind, Object, WatchScope
from controller.collector import collector_paused
from controller.gateway_streams import GATEWAY_CRD_KINDS
from controller.objects import mapping
from controller.watch_stream import Gone, StreamReader, WatchError, raise_for_status

__all__ = [
    "Backoff",
    "MissingApiNotice",
    "WatchMetrics",
    "WatchScope",
    "WatchTiming",
    "run_watches",
    "stream_forever",
]

log = logging.getLogger("kubeferry.controller.watch")


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


Sleep = Callable[[float], Awaitable[None]]


class MissingApiNotice:
    """Says once that the Gateway API CRDs are missing, however many streams find out, and
    once that they are back. Mutable state: `missing`, the kinds whose last list was a 404."""

    def __init__(self) -> None:
        self.missing: set[str] = set()

    def __repr__(self) -> str:
        return f"<MissingApiNotice missing={sorted(self.missing)}>"

    def not_found(self, kind: str, error: str) -> bool:
        """A list of `kind` answered 404; True if this was said now (else it is debug-level)."""
        first = not self.missing
        self.missing.add(kind)
        if first:
            log.warning(
                "the Gateway API CRDs are not installed (%s: %s); Gateway API support waits "
                "for them and retries with backoff, annotated Services are served as usual",
                kind,
                error,
                extra={"event": "gateway_api_missing", "kind": kind, "error": error},
            )
        return first

    def found(self, kind: str) -> None:
        if kind not in self.missing:
            return
        self.missing.discard(kind)
        if not self.missing:
            log.info(
                "the Gateway API CRDs are installed now",
                extra={"event": "gateway_api_found", "kind": kind},
            )


async def run_watches(
    api: client.ApiClient,
    cache: Cache,
    *,
    metrics: WatchMetrics,
    timing: WatchTiming = WatchTiming(),
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Keep `cache` in step with the cluster, forever: one stream per kind and each of the
    cache's scopes. Returns only by cancellation; every failure inside is retried with backoff
    and never clears the cache.
    """
    rng = rng or random.Random()
    notice = MissingApiNotice()
    async with asyncio.TaskGroup() as group:
        for kind, scope in cache.watched():
            stream = stream_forever(
                api,
                cache,
                kind=kind,
                scope=scope,
                metrics=metrics,
                timing=timing,
                rng=rng,
                clock=clock,
                sleep=sleep,
                notice=notice,
            )
            group.create_task(stream, name=f"watch {kind} {scope}")


async def stream_forever(
    api: client.ApiClient,
    cache: Cache,
    *,
    kind: Kind,
    scope: WatchScope,
    metrics: WatchMetrics,
    timing: WatchTiming,
    rng: random.Random,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    notice: MissingApiNotice | None = None,
) -> None:
    """One stream (a kind in a scope) kept in step forever, as `run_watches` runs each of
    its own; controller.secret_watch runs one per referenced Secret. `notice` (Gateway API
    kinds) reports a missing CRD once for all streams."""
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
        notice=notice or MissingApiNotice(),
    )
    await stream.run_forever()


class _Stream:
    """One list+watch stream: a kind in a scope.

    Mutable state: `backoff`, `_gone_before`, and the reader's `resource_version` (None: the
    next attempt lists first) and `streaming_since`.
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
        notice: MissingApiNotice,
    ) -> None:
        self._cache = cache
        self._notice = notice
        self._kind: Kind = kind
        self._scope = scope
        self._metrics = metrics
        self._timing = timing
        self._clock = clock
        self._sleep = sleep
        self._reader = StreamReader(
            api, cache, kind=kind, scope=scope, timing=timing, rng=rng, clock=clock
        )
        self.backoff = Backoff(
            initial_seconds=timing.backoff_initial_seconds,
            max_seconds=timing.backoff_max_seconds,
            rng=rng,
        )
        # Whether the last failure was a 410 (a second one in a row backs off).
        self._gone_before = False

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
                    self._reader.streaming_since is not None
                    and self._clock() - self._reader.streaming_since
                    >= self._timing.backoff_reset_after_seconds
                ):
                    self.backoff.reset()
                self._reader.streaming_since = None
                # A 410 is an answer from a reachable server and routine after compaction or
                # an API server restart: relist at once. Two in a row back off like errors.
                gone = isinstance(exc, Gone)
                delay = 0.0 if gone and not self._gone_before else self.backoff.next_delay()
                self._gone_before = gone
                self._metrics.watch_restart(kind=self._kind)
                # A CRD not installed is said once for every stream, then quietly retried.
                quiet = (
                    self._kind in GATEWAY_CRD_KINDS
                    and reason == "http_404"
                    and not self._notice.not_found(self._kind, str(exc).strip())
                )
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "watch of %s %s failed (%s), retrying in %.2fs: %s",
                    self._kind,
                    self._scope,
                    reason,
                    delay,
                    exc,
                    extra={
                        "event": "watch_restart",
                        **self._reader.fields(
                            reason=reason,
                            error=str(exc),
                            delay_seconds=round(delay, 3),
                            failures=self.backoff.failures,
                            relist=self._reader.resource_version is None,
                        ),
                    },
                )
                if delay > 0:
                    await self._sleep(delay)

    # -- layer 2: list, then watch from the list's resourceVersion ------------------------------

    async def list_and_watch(self) -> None:
        if self._reader.resource_version is None:
            await self.list_all()
        while True:
            await self._reader.watch_once()
            lasted = self._clock() - (self._reader.streaming_since or 0.0)
            if lasted < self._timing.backoff_reset_after_seconds:
                # A clean end long before timeoutSeconds (an API server shutting down, a proxy
                # in between): back off, or a server that ends every watch at once would have
                # us rewatching in a hot loop.
                raise WatchError("ended_early", f"the server ended the watch after {lasted:.1f}s")
            # The server ended the request at its timeout: a healthy watch, go on from where
            # it stopped. Nothing to back off from.
            self.backoff.reset()
            self._reader.streaming_since = None
            self._gone_before = False
            self._metrics.watch_restart(kind=self._kind)
            log.info(
                "watch of %s %s ended by the server, rewatching",
                self._kind,
                self._scope,
                extra={
                    "event": "watch_restart",
                    **self._reader.fields(
                        reason="server_timeout", resource_version=self._reader.resource_version
                    ),
                },
            )

    async def list_all(self) -> None:
        """List every page, then hand the whole result to the cache in one call."""
        # Every object parsed is kept: the collector would only re-traverse the growing heap.
        with collector_paused():
            await self._list_all()

    async def _list_all(self) -> None:
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
            response = await self._reader.request(params, timeout)
            async with response:
                await raise_for_status(response)
                body = await response.json(loads=json.loads, content_type=None)
            meta = mapping(body.get("metadata"))
            for item in body.get("items") or ():
                if isinstance(item, Mapping):
                    objects.append(self._reader.convert(item))
            resource_version = str(meta.get("resourceVersion") or "")
            continue_token = str(meta.get("continue") or "") or None
            if continue_token is None:
                break
        changed = self._cache.replace_all(self._kind, objects, scope=self._scope)
        self._notice.found(self._kind)
        self._reader.resource_version = resource_version
        self._metrics.relist(kind=self._kind)
        log.info(
            "listed %d %s in %s",
            len(objects),
            self._kind,
            self._scope,
            extra={
                "event": "relist",
                **self._reader.fields(
                    count=len(objects),
                    changed=changed,
                    resource_version=resource_version,
                    duration_seconds=round(self._clock() - started, 3),
                ),
            },
        )


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
