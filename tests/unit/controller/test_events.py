import asyncio
from typing import Any

import pytest

from controller.events import KubeEventRecorder
from tests.unit.controller.factories import service


class ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.status = status


class FakeEventsApi:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.patched: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_create: Exception | None = None
        self.fail_patch: Exception | None = None

    async def create_namespaced_event(self, namespace: str, body: Any) -> Any:
        if self.fail_create:
            raise self.fail_create
        self.created.append((namespace, body))
        return body

    async def patch_namespaced_event(self, name: str, namespace: str, body: Any) -> Any:
        if self.fail_patch:
            raise self.fail_patch
        self.patched.append((name, namespace, body))
        return body


def recorder(api: FakeEventsApi, **kwargs: Any) -> KubeEventRecorder:
    return KubeEventRecorder(api, instance="pod-1", clock=lambda: 1_700_000_000.0, **kwargs)


async def test_creates_a_warning_event_on_the_service() -> None:
    api = FakeEventsApi()
    events = recorder(api)
    svc = service()
    events.warn(svc, "InvalidAnnotation", "kubeferry.io/port='x': bad")
    await events.drain()
    ((namespace, body),) = api.created
    assert namespace == "shop"
    assert body["type"] == "Warning"
    assert body["reason"] == "InvalidAnnotation"
    assert body["message"] == "kubeferry.io/port='x': bad"
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "namespace": "shop",
        "name": "web",
        "uid": svc.uid,
        "resourceVersion": "1",
    }
    assert body["source"] == {"component": "kubeferry"}
    assert body["reportingComponent"] == "kubeferry.io/controller"
    assert body["reportingInstance"] == "pod-1"
    assert body["count"] == 1
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2023-11-14T22:13:20Z"
    assert body["metadata"]["name"].startswith("web.")


async def test_repeat_bumps_count_instead_of_creating() -> None:
    api = FakeEventsApi()
    events = recorder(api)
    for _ in range(3):
        events.warn(service(), "InvalidAnnotation", "same")
    await events.drain()
    assert len(api.created) == 1
    assert [p[2]["count"] for p in api.patched] == [2, 3]


async def test_expired_event_is_created_again() -> None:
    api = FakeEventsApi()
    events = recorder(api)
    events.warn(service(), "R", "m")
    await events.drain()
    api.fail_patch = ApiError(404)
    events.warn(service(), "R", "m")
    await events.drain()
    assert len(api.created) == 2


async def test_failures_are_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeEventsApi()
    api.fail_create = ApiError(403)
    events = recorder(api)
    task = asyncio.create_task(events.run())
    events.warn(service(), "R", "m")
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    assert any("could not record" in r.message for r in caplog.records)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_full_queue_drops_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    events = recorder(FakeEventsApi(), queue_size=1)
    events.warn(service(), "R", "one")
    events.warn(service(), "R", "two")  # must not raise or block
    assert any("queue full" in r.message for r in caplog.records)


async def test_long_messages_are_truncated() -> None:
    api = FakeEventsApi()
    events = recorder(api)
    events.warn(service(), "R", "x" * 5000)
    await events.drain()
    assert len(api.created[0][1]["message"]) == 1024
