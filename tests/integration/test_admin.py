"""The admin app on a real loopback socket: status, body and headers of each endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.admin import build_admin_app
from proxy.metrics import Metrics
from proxy.model import Endpoint, UpstreamSpec
from proxy.pool import Pool
from proxy.readiness import Readiness

pytestmark = pytest.mark.integration

AdminClient = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[AdminClient]]


@pytest.fixture
def pool() -> Pool:
    pool = Pool()
    pool.replace(
        UpstreamSpec("default/web", (Endpoint("127.0.0.1", 8081), Endpoint("127.0.0.1", 8082)))
    )
    return pool


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, pool: Pool, metrics: Metrics, readiness: Readiness
) -> AdminClient:
    return await aiohttp_client(build_admin_app(pool=pool, metrics=metrics, readiness=readiness))


async def test_healthz(client: AdminClient) -> None:
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.text() == "ok"


async def test_readyz_ready_then_not(client: AdminClient, readiness: Readiness) -> None:
    readiness.set("routes_loaded", True)
    response = await client.get("/readyz")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {
        "ready": True,
        "draining": False,
        "conditions": {"routes_loaded": True},
    }

    readiness.set("listener_bound", False)
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["conditions"] == {
        "routes_loaded": True,
        "listener_bound": False,
    }


async def test_readyz_while_draining(client: AdminClient, readiness: Readiness) -> None:
    readiness.start_draining()
    response = await client.get("/readyz")

    assert response.status == 503
    assert (await response.json())["draining"] is True


async def test_metrics_exposition(client: AdminClient, metrics: Metrics) -> None:
    metrics.observe_request(
        route="default/web",
        upstream="default/web",
        backend="127.0.0.1:8081",
        status=200,
        duration_seconds=0.003,
    )
    metrics.backend_health(upstream="default/web", backend="127.0.0.1:8081", healthy=True)
    metrics.retry(upstream="default/web", outcome="resent")
    metrics.upstream_error(upstream="default/web", backend="127.0.0.1:8082", kind="connect")
    metrics.health_probe(
        upstream="default/web", backend="127.0.0.1:8081", ok=True, duration_seconds=0.001
    )

    response = await client.get("/metrics")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    for family in (
        "kubeferry_requests_total",
        "kubeferry_request_duration_seconds",
        "kubeferry_backend_up",
        "kubeferry_retries_total",
        "kubeferry_upstream_errors_total",
        "kubeferry_health_checks_total",
        "kubeferry_health_check_duration_seconds",
    ):
        assert f"# TYPE {family} " in text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = {
        "route": "default/web",
        "upstream": "default/web",
        "backend": "127.0.0.1:8081",
        "status": "200",
    }
    assert samples["kubeferry_requests_total", tuple(sorted(labels.items()))] == 1


async def test_backends_describes_the_pool(client: AdminClient, pool: Pool) -> None:
    pool.report(
        "default/web", Endpoint("127.0.0.1", 8082), healthy=False, reason="GET /healthz: 503"
    )

    response = await client.get("/backends")

    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body == pool.describe()
    (upstream,) = body
    assert upstream["upstream"] == "default/web"
    assert [(e["address"], e["healthy"]) for e in upstream["endpoints"]] == [
        ("127.0.0.1:8081", True),
        ("127.0.0.1:8082", False),
    ]


async def test_unknown_path_is_404(client: AdminClient) -> None:
    response = await client.get("/nope")

    assert response.status == 404
