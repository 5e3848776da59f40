"""The I/O of the Gateway API side: `GatewayWriter` applies what `GatewaySync` (controller.
gateway_sync) wants: the data plane's listener sockets, the per-Gateway Services
(controller.gateway.services) and the status merge patches (controller.gateway.status_writer).

It takes the latest desired state (`want`, a plain def the sync calls; never a queue) and
applies it in two lanes, each its own loop: the data plane's listeners (local and quick),
and the API calls (the Services, then the statuses), so a route change reaches the data
plane at once even while statuses are being sent or the API server is failing. A failure
is logged and that lane tries again after a backoff, with whatever is desired by then; a
status write refused with 409 (the object changed since it was read) or 404 (gone) is left
to the next sync, which the watch event triggers anyway.
One and the same status of an object is written at most `budget_writes` times per
`budget_seconds`, so two replicas that disagree (each writes what its own sockets say)
cannot ping-pong it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from controller.backoff import Backoff
from controller.gateway import services as owned_services
from controller.gateway import status_writer
from controller.gateway_sync import GatewayDesired
from proxy.listeners import ListenerReport, ListenerSpec

logger = logging.getLogger("kubeferry.controller.gateway")


class ListenerSink(Protocol):
    """The data plane's dynamic listeners (proxy.app.DataPlane)."""

    async def set_listeners(self, specs: Sequence[ListenerSpec]) -> ListenerReport: ...


class _Lane:
    """One retrying loop: apply the latest wanted state; after a failure, back off, then try
    again with whatever is wanted by then. Mutable state: `applied` (the state last applied
    without failure), the wake flag and the backoff."""

    def __init__(
        self,
        name: str,
        apply: Callable[[GatewayDesired], Awaitable[list[str]]],
        backoff: Backoff,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self.name = name
        self._apply = apply
        self.backoff = backoff
        self._sleep = sleep
        self.applied: GatewayDesired | None = None
        self.wake = asyncio.Event()

    async def run(self, wanted: Callable[[], GatewayDesired | None]) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            desired = wanted()
            if desired is None or desired is self.applied:
                continue
            try:
                failed = await self._apply(desired)
            except Exception as error:  # the top of the task: a bug here must not stop serving
                logger.exception(
                    "applying the Gateway %s failed",
                    self.name,
                    extra={"event": "gateway_write_failed", "lane": self.name},
                )
                failed = [repr(error)]
            if not failed:
                self.backoff.reset()
                self.applied = desired
                continue
            delay = self.backoff.next_delay()
            logger.warning(
                "Gateway %s failed (%s); retrying in %.2fs",
                self.name,
                "; ".join(failed[:5]),
                delay,
                extra={
                    "event": "gateway_write_failed",
                    "lane": self.name,
                    "failures": failed,
                    "delay_seconds": round(delay, 3),
                },
            )
            await self._sleep(delay)
            self.applied = None
            self.wake.set()  # again, with whatever is wanted by then


class GatewayWriter:
    """Applies the latest `GatewayDesired` in two lanes (`_Lane`): the listeners, and the
    owned Services then the statuses. `CancelledError` ends both.

    Mutable state (event loop only): `_wanted` (the latest desired state), `_listeners` (the
    specs last accepted whole by the data plane), `_written` (status writes sent, by object
    and the resourceVersion they were computed from, so a sync before the watch brings the
    new object does not send them twice), `_history` (recent status writes per object, for
    the write budget).
    """

    def __init__(
        self,
        api: Any,
        *,
        listeners: ListenerSink,
        service_namespace: str,
        on_applied: Callable[[Sequence[ListenerSpec], ListenerReport], None],
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        budget_writes: int = 5,
        budget_seconds: float = 10.0,
        concurrency: int = 8,
        core: Any = None,
        custom: Any = None,
    ) -> None:
        from kubernetes_asyncio import client

        # kubernetes-asyncio's CoreV1Api and CustomObjectsApi (a unit test passes its fakes).
        self._core: Any = core if core is not None else client.CoreV1Api(api)
        self._custom: Any = custom if custom is not None else client.CustomObjectsApi(api)
        self._plane = listeners
        self._namespace = service_namespace
        self._on_applied = on_applied
        self._sleep = sleep
        self._clock = clock
        self._budget_writes = budget_writes
        self._budget_seconds = budget_seconds
        self._concurrency = concurrency
        # Per object, when we wrote its status lately (see `_budget_allows`).
        self._history: dict[
            tuple[str, str, str], collections.deque[tuple[float, Mapping[str, Any]]]
        ] = {}
        self._wanted: GatewayDesired | None = None
        self._listeners: tuple[ListenerSpec, ...] | None = None
        self._written: dict[tuple[str, str, str], tuple[str, Mapping[str, Any]]] = {}
        self.writes = 0  # status writes sent (a test and debug aid)
        rng = rng or random.Random()
        self._lanes = tuple(
            _Lane(
                name,
                apply,
                Backoff(
                    initial_seconds=backoff_initial_seconds,
                    max_seconds=backoff_max_seconds,
                    rng=rng,
                ),
                sleep,
            )
            for name, apply in (("listeners", self.apply_listeners), ("API writes", self.apply_api))
        )

    def __repr__(self) -> str:
        failures = {lane.name: lane.backoff.failures for lane in self._lanes}
        return f"<GatewayWriter {self.writes} status writes, failures={failures}>"

    def want(self, desired: GatewayDesired) -> None:
        """Apply `desired` next (replacing anything not applied yet). Plain def."""
        self._wanted = desired
        for lane in self._lanes:
            if desired is not lane.applied:
                lane.wake.set()

    async def run(self) -> None:
        """Both lanes, until cancelled: the data plane's listeners never wait behind API
        calls (a batch of status writes, or a backoff after the API server failed)."""
        async with asyncio.TaskGroup() as group:
            for lane in self._lanes:
                group.create_task(lane.run(lambda: self._wanted), name=f"gateway {lane.name}")

    async def apply(self, desired: GatewayDesired) -> list[str]:
        """Both lanes' work for `desired`, one after the other; returns what failed."""
        return [*await self.apply_listeners(desired), *await self.apply_api(desired)]

    async def apply_listeners(self, desired: GatewayDesired) -> list[str]:
        """The data plane's listener sockets; returns what failed."""
        failed: list[str] = []
        if desired.listeners != self._listeners:
            try:
                report = await self._plane.set_listeners(desired.listeners)
            except Exception as error:  # a boundary: the next attempt opens them
                failed.append(f"listeners: {error}")
            else:
                self._on_applied(desired.listeners, report)
                if report.failed:
                    failed.extend(f"listener {n}: {why}" for n, why in report.failed.items())
                else:
                    self._listeners = desired.listeners
        return failed

    async def apply_api(self, desired: GatewayDesired) -> list[str]:
        """The owned Services, then the statuses; returns what failed."""
        failed: list[str] = []
        for change in desired.services:
            try:
                await owned_services.apply(self._core, self._namespace, change)
            except Exception as error:
                failed.append(f"{change}: {_describe(error)}")
            else:
                logger.info(
                    "%s for its Gateway",
                    change,
                    extra={
                        "event": "gateway_service",
                        "action": change.action,
                        "service": change.name,
                    },
                )
        sending = []
        for write in desired.statuses:
            key = (write.kind, write.namespace, write.name)
            if self._written.get(key) == (write.resource_version, write.patch):
                continue  # sent already; the watch has not brought the result yet
            if not self._budget_allows(key, write.patch):
                failed.append(
                    f"status of {write}: the same status written {self._budget_writes} times "
                    f"in {self._budget_seconds:g}s, held back (another writer disagrees?)"
                )
                continue
            sending.append(write)
        # Statuses are independent of each other: a few at a time (a cold start over
        # thousands of routes would otherwise wait on one round trip after the other).
        limit = asyncio.Semaphore(self._concurrency)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._write_status(write, limit)) for write in sending]
        failed.extend(problem for task in tasks if (problem := task.result()) is not None)
        wanted = {(w.kind, w.namespace, w.name) for w in desired.statuses}
        for key in [k for k in self._written if k not in wanted]:
            del self._written[key]  # done (or no longer wanted): forget it
        now = self._clock()
        for key in [k for k, h in self._history.items() if now - h[-1][0] > self._budget_seconds]:
            del self._history[key]
        return failed

    async def _write_status(
        self, write: status_writer.StatusWrite, limit: asyncio.Semaphore
    ) -> str | None:
        """Send one status patch; what failed, or None (a 409 or 404 is left to the next
        sync: the object changed or went, and its watch event brings that sync)."""
        async with limit:
            try:
                await status_writer.write(self._custom, write)
            except Exception as error:
                if getattr(error, "status", None) in (404, 409):
                    return None
                return f"status of {write}: {_describe(error)}"
        key = (write.kind, write.namespace, write.name)
        self.writes += 1
        self._written[key] = (write.resource_version, write.patch)
        history = self._history.setdefault(key, collections.deque())
        history.append((self._clock(), _without_times(write.patch)))
        logger.debug(
            "wrote the status of %s",
            write,
            extra={"event": "gateway_status", "object": str(write)},
        )
        return None

    def _budget_allows(self, key: tuple[str, str, str], patch: Mapping[str, Any]) -> bool:
        """At most `budget_writes` writes of one and the same status of an object per
        `budget_seconds`. Our own write comes back equal and asks for nothing more, and real
        changes (a route attached, a generation bumped) make a different status; sending the
        same one again and again means another writer keeps changing it back: a second
        replica that disagrees (it could not bind a port, say) would otherwise ping-pong with
        us as fast as the API server answers."""
        history = self._history.get(key)
        if history is None:
            return True
        now = self._clock()
        while history and now - history[0][0] > self._budget_seconds:
            history.popleft()
        if not history:
            del self._history[key]
            return True
        shape = _without_times(patch)
        return sum(1 for _, sent in history if sent == shape) < self._budget_writes


def _without_times(value: Any) -> Any:
    """`value` without lastTransitionTime anywhere: two replicas flipping a condition back
    and forth stamp it anew each time, yet send the same status."""
    if isinstance(value, Mapping):
        return {k: _without_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _describe(error: BaseException) -> str:
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return repr(error)
