"""The admin listener: liveness, readiness, Prometheus metrics and the pool as JSON.

It runs on its own port so probes and scrapes never queue behind proxied traffic, and so it
can stay private while the proxy port is public.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.metrics import Metrics
from proxy.pool import Pool
from proxy.readiness import Readiness


def build_admin_app(*, pool: Pool, metrics: Metrics, readiness: Readiness) -> web.Application:
    """An aiohttp application serving GET /healthz, /readyz, /metrics and /backends."""

    async def healthz(request: web.Request) -> web.Response:
        # Alive means the event loop answers; nothing else is checked on purpose, so a
        # backend outage never gets the proxy restarted.
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        ready = readiness.ready
        body = {"ready": ready, "draining": readiness.draining, "conditions": readiness.reasons()}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_text(request: web.Request) -> web.Response:
        # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp's content_type=
        # argument refuses; set the header as is.
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def backends(request: web.Request) -> web.Response:
        return web.json_response(pool.describe())

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/backends", backends)
    return app
