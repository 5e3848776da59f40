"""The Secret watches against a loopback API stand-in: one list+watch per wanted Secret, by
name (field selector), into the cache; a Secret no longer wanted is forgotten; a broken
watch line is never quoted, since a Secret's carries its data."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from controller.cache import Cache
from controller.secret_watch import SecretWatches
from tests.support.waiting import eventually
from tests.unit.controller.canned_api import (
    FAST,
    RecordingMetrics,
    RecordingSleep,
    ServerFactory,
    event,
    hang,
    is_watch,
    list_body,
)

KEY_TEXT = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"


def secret(name: str, rv: str, chain: bytes = b"chain") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": name, "resourceVersion": rv},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(chain).decode(),
            "tls.key": base64.b64encode(KEY_TEXT.encode()).decode(),
        },
    }


async def test_a_wanted_secret_is_listed_and_watched_by_name_then_forgotten(
    aiohttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller.watch")
    queries: list[dict[str, str]] = []

    async def secrets(request: web.Request) -> web.StreamResponse:
        queries.append(dict(request.query))
        if not is_watch(request):
            return web.json_response(list_body([secret("web-tls", "5")], "5"))
        if sum(is_watch_query(q) for q in queries) == 1:
            # A line that is not JSON, carrying key material: the error must not quote it.
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"type": "MODIFIED", "object": ' + KEY_TEXT.encode() + b"\n")
            await response.write_eof()
            return response
        if sum(is_watch_query(q) for q in queries) == 2:
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(event("MODIFIED", secret("web-tls", "7", b"new chain")))
            await asyncio.Event().wait()
        return await hang(request)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/secrets", secrets)
    server = await aiohttp_server(app)
    api = ApiClient(Configuration(host=str(server.make_url("")).rstrip("/")))
    cache = Cache()
    watches = SecretWatches(
        api,
        cache,
        metrics=RecordingMetrics(),
        timing=FAST,
        rng=random.Random(1),
        sleep=RecordingSleep(),
    )
    task = asyncio.create_task(watches.run())
    try:
        watches.want(frozenset({("shop", "web-tls")}))

        def updated() -> bool:
            found = cache.secret("shop", "web-tls")
            return found is not None and found.chain_pem == b"new chain"

        await eventually(updated, timeout=5, interval=0.005)
        assert all(q.get("fieldSelector") == "metadata.name=web-tls" for q in queries)
        logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
        assert "bad_event" in logged and "withheld" in logged
        assert "PRIVATE KEY" not in logged and "MIGHAgEA" not in logged

        watches.want(frozenset())
        await eventually(lambda: cache.secret_streams() == frozenset(), timeout=5, interval=0.005)
        assert cache.secret("shop", "web-tls") is None
        assert repr(watches) == "<SecretWatches 0 watched, 0 wanted>"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        await api.close()


def is_watch_query(query: dict[str, str]) -> bool:
    return query.get("watch") in ("true", "True", "1")
