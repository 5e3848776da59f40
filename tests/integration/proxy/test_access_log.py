"""The access log as a cluster log collector sees it: JSON lines on the proxy's stdout."""

from __future__ import annotations

import aiohttp

from tests.integration.proxy.conftest import StartBackends, free_port
from tests.integration.proxy.subprocess_proxy import spawn_proxy
from tests.support.waiting import eventually

ACCESS_FIELDS = {
    "timestamp", "level", "event", "message", "method", "path", "status", "upstream",
    "backend", "duration_ms", "bytes_sent", "request_id", "client", "retries",
}  # fmt: skip


async def test_every_request_gets_one_json_access_line_with_its_fields(
    start_backends: StartBackends,
) -> None:
    backends = await start_backends(2)
    proxy = await spawn_proxy([b.url for b in backends], port=free_port(), admin_port=free_port())
    try:
        async with aiohttp.ClientSession() as client:
            headers = {"X-Request-ID": "req-from-client"}
            async with client.get(proxy.url + "/slow?seconds=0.05", headers=headers) as response:
                assert response.status == 200
                body = await response.read()
            async with client.get(proxy.url + "/status/503") as response:
                assert response.status == 503
        await eventually(lambda: len(proxy.events("access")) == 2)
    finally:
        await proxy.stop()

    slow, failed = proxy.events("access")
    assert slow.keys() >= ACCESS_FIELDS
    assert slow["method"] == "GET"
    assert slow["path"] == "/slow?seconds=0.05"
    assert slow["status"] == 200
    assert slow["upstream"] == "default"
    assert slow["backend"] in {b.url.removeprefix("http://") for b in backends}
    assert slow["request_id"] == "req-from-client"
    assert slow["client"] == "127.0.0.1"
    assert slow["retries"] == 0
    assert slow["bytes_sent"] == len(body)
    # The backend slept 50 ms, so the measured duration cannot be less (a lower bound only).
    assert isinstance(slow["duration_ms"], float) and slow["duration_ms"] >= 50.0
    assert failed["status"] == 503 and failed["request_id"] != slow["request_id"]
