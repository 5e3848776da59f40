"""Warning Events on Services, for problems an operator must see with `kubectl describe`.

The sync calls `warn()` (plain def, never blocks, never raises); a background task creates the
core/v1 Events from a bounded queue. Creating an Event is best effort: a failure is logged and
dropped, because losing a Warning must never stop the proxy from balancing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from controller.objects import ServiceInfo

logger = logging.getLogger("kubeferry.controller")

COMPONENT = "kubeferry"
REPORTING_CONTROLLER = "kubeferry.io/controller"
MAX_MESSAGE_CHARS = 1024  # the API server's limit on an Event message


class EventRecorder(Protocol):
    """Where the sync reports problems on a Service."""

    def warn(self, service: ServiceInfo, reason: str, message: str) -> None:
        """Queue a Warning Event on `service`; returns at once and never raises."""
        ...


class EventsApi(Protocol):
    """The two calls of kubernetes-asyncio's CoreV1Api that the recorder uses."""

    def create_namespaced_event(self, namespace: str, body: Any) -> Awaitable[Any]: ...

    def patch_namespaced_event(self, name: str, namespace: str, body: Any) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class _Pending:
    service: ServiceInfo
    reason: str
    message: str


@dataclass(slots=True)
class _Sent:
    name: str
    count: int
    first_timestamp: str


class KubeEventRecorder:
    """Creates Warning Events through the API; run `run()` as a task owned by the caller.

    The same (Service uid, reason, message) warned again bumps `count` and `lastTimestamp` of
    the Event already created, as kubectl's own recorders do, instead of piling up Events.

    Mutable state (event loop only): `_queue` of pending warnings; `_sent`, a bounded LRU of
    the Events created so far by their dedup key.
    """

    def __init__(
        self,
        api: EventsApi,
        *,
        instance: str | None = None,
        queue_size: int = 256,
        remembered: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._instance = (instance or socket.gethostname())[:128]
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._sent: OrderedDict[tuple[str, str, str], _Sent] = OrderedDict()
        self._remembered = remembered
        self._clock = clock

    @classmethod
    def from_client(cls, api_client: Any, **kwargs: Any) -> KubeEventRecorder:
        from kubernetes_asyncio import client

        return cls(client.CoreV1Api(api_client), **kwargs)

    def __repr__(self) -> str:
        return f"<KubeEventRecorder {self._queue.qsize()} queued, {len(self._sent)} sent>"

    def warn(self, service: ServiceInfo, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait(_Pending(service, reason, message[:MAX_MESSAGE_CHARS]))
        except asyncio.QueueFull:
            logger.warning(
                "event queue full; dropping a Warning event",
                extra={
                    "event": "event_dropped",
                    "namespace": service.namespace,
                    "service": service.name,
                    "reason": reason,
                },
            )

    async def run(self) -> None:
        """Send queued warnings one at a time, forever."""
        while True:
            pending = await self._queue.get()
            try:
                await self.send(pending.service, pending.reason, pending.message)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a boundary: the proxy must outlive the events API
                logger.warning(
                    "could not record a Warning event",
                    extra={
                        "event": "event_failed",
                        "namespace": pending.service.namespace,
                        "service": pending.service.name,
                        "reason": pending.reason,
                        "error": repr(error),
                    },
                )

    async def drain(self) -> None:
        """Send everything queued now (for tests and orderly shutdown)."""
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            await self.send(pending.service, pending.reason, pending.message)

    async def send(self, service: ServiceInfo, reason: str, message: str) -> None:
        now = _timestamp(self._clock())
        key = (service.uid, reason, message)
        sent = self._sent.get(key)
        if sent is not None:
            sent.count += 1
            patch = {"count": sent.count, "lastTimestamp": now}
            try:
                await self._api.patch_namespaced_event(sent.name, service.namespace, patch)
                self._sent.move_to_end(key)
                return
            except Exception as error:
                if getattr(error, "status", None) != 404:
                    raise
                # The Event expired (the API server keeps them about an hour): create anew.
        name = f"{service.name}.{time.time_ns():x}"
        await self._api.create_namespaced_event(
            service.namespace, self._body(service, reason, message, name=name, now=now)
        )
        self._sent[key] = _Sent(name, 1, now)
        while len(self._sent) > self._remembered:
            self._sent.popitem(last=False)

    def _body(
        self, service: ServiceInfo, reason: str, message: str, *, name: str, now: str
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": service.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Service",
                "namespace": service.namespace,
                "name": service.name,
                "uid": service.uid,
                "resourceVersion": service.resource_version,
            },
            "type": "Warning",
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT},
            # core/v1 spells the reporting controller field "reportingComponent".
            "reportingComponent": REPORTING_CONTROLLER,
            "reportingInstance": self._instance,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        }


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
