"""`kubeferry demo`: three toy backends and the load balancer, on loopback, to try by hand.

Each backend answers with its name and can be taken down for a while (`POST /demo/stop`):
its listener and every open connection close, as if the process died, so the proxy sees
refused and broken connections, fails over, and takes it back once its health check passes.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from proxy.app import DataPlane, Listener
from proxy.cli import run_event_loop, standalone_upstream
from proxy.logging import configure_logging
from proxy.routing import Router, RouteTable
from proxy.settings import load_settings

log = logging.getLogger("kubeferry.demo")

HOST = "127.0.0.1"
BACKEND_PORTS = (3001, 3002, 3003)
HEALTH_INTERVAL_SECONDS = 2.0
MAX_DOWN_SECONDS = 300.0


class DemoBackend:
    """A backend that can go away and come back. Owns its runner and its restart task."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self._runner: web.AppRunner | None = None
        self._outage: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/demo/stop", self._stop_for_a_while)
        app.router.add_route("*", "/{tail:.*}", self._hello)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()

    async def close(self) -> None:
        if self._outage is not None:
            self._outage.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(text=f"Hello from {self.name}\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _stop_for_a_while(self, request: web.Request) -> web.Response:
        seconds = min(float(request.query.get("seconds", "20")), MAX_DOWN_SECONDS)
        if self._outage is None or self._outage.done():
            self._outage = asyncio.create_task(self._outage_of(seconds))
        return web.Response(text=f"{self.name} going down for {seconds:g} s\n")

    async def _outage_of(self, seconds: float) -> None:
        await asyncio.sleep(0.1)  # let the answer to /demo/stop leave first
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        log.info("%s is down for %g s", self.name, seconds, extra={"event": "demo_down"})
        await asyncio.sleep(seconds)
        await self.start()
        log.info("%s is back", self.name, extra={"event": "demo_up"})


def instructions(port: int, admin_port: int) -> str:
    lb = f"http://{HOST}:{port}"
    admin = f"http://{HOST}:{admin_port}"
    backends = ", ".join(f"http://{HOST}:{p}" for p in BACKEND_PORTS)
    return f"""
kubeferry demo
  load balancer  {lb}
  admin          {admin}/backends  /metrics  /readyz
  backends       {backends}

Try it (in another terminal):
  for i in 1 2 3 4 5 6; do curl -s {lb}/; done        # round robin over 3 backends
  curl -s -X POST 'http://{HOST}:{BACKEND_PORTS[1]}/demo/stop?seconds=20'  # backend-2 dies
  for i in 1 2 3 4 5 6; do curl -s {lb}/; done        # no errors: it fails over
  curl -s {admin}/backends                             # backend-2 shown unhealthy
  sleep 25; for i in 1 2 3; do curl -s {lb}/; done     # back in rotation
Ctrl-C stops everything.
"""


def run_demo(*, port: int = 3000, admin_port: int = 9000) -> int:
    settings = load_settings(
        overrides={
            "host": HOST,
            "port": port,
            "admin_host": HOST,
            "admin_port": admin_port,
            "backends": tuple(f"http://{HOST}:{p}" for p in BACKEND_PORTS),
            "health": {"interval_seconds": HEALTH_INTERVAL_SECONDS, "timeout_seconds": 1.0},
            "timeouts": {"drain_seconds": 2.0},
        }
    )
    configure_logging(settings.log)

    async def demo() -> int:
        backends = [DemoBackend(f"backend-{i}", p) for i, p in enumerate(BACKEND_PORTS, 1)]
        try:
            for backend in backends:
                await backend.start()
            router = Router(RouteTable.single("default"))
            plane = DataPlane(settings, listeners=[Listener(HOST, port, router)])
            plane.apply({"default": standalone_upstream(settings)})
            print(instructions(port, admin_port), flush=True)
            return await plane.serve()
        finally:
            for backend in backends:
                await backend.close()

    return run_event_loop(demo())
