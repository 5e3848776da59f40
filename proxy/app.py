"""Assembly and lifecycle of the data plane: pool, health checks, listeners, admin, shutdown.

`DataPlane` is shared by every mode: the standalone proxy (one listener, upstream "default"),
the ingress controller (one listener whose Router the controller swaps) and sidecar mode (one
loopback listener per upstream). The controller runs its own loops as `tasks` of `serve()`.
Listeners that come and go at run time (one per Gateway and port) are set whole with
`set_listeners` (proxy.listeners); they drain with the others at shutdown.

`serve()` reads like a table of contents:
  startup     bind admin and listeners; readiness gets "listeners_bound"
  main loop   run the owner's tasks until SIGTERM/SIGINT or stop()
  shutdown    readiness false -> stop accepting -> drain in-flight (timeouts.drain_seconds)
              -> cancel tasks -> close admin, health checks and the upstream client

A second SIGTERM/SIGINT during shutdown ends the drain at once, as Ctrl-C pressed again does in
uvicorn or Envoy: the connections still open are closed (their requests cancelled), then
shutdown goes on as usual and the exit code stays 0. The handlers stay installed until the
last cleanup step is done, so no signal during shutdown falls back to the default action
(death by signal, or KeyboardInterrupt for SIGINT).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.admin import build_admin_app
from proxy.forwarding import Forwarder
from proxy.health import HealthChecker
from proxy.listeners import DynamicListeners, ListenerReport, ListenerSpec, bind
from proxy.listeners import plan as listeners_plan
from proxy.logging import AccessLog, log_health_transition
from proxy.metrics import Metrics
from proxy.model import Endpoint, UpstreamSpec, format_authority
from proxy.pool import HealthTransition, Pool
from proxy.protocol import GuardedServer
from proxy.readiness import Readiness
from proxy.retry_budget import RetryBudget
from proxy.routing import Router
from proxy.settings import Settings
from proxy.tls.store import CertificateStore
from proxy.upstream import HeadLimits, SocketOptions, UpstreamClient

log = logging.getLogger("kubeferry.app")

LISTENERS_BOUND = "listeners_bound"
# The collector's thresholds once serving (CPython's default: 700, 10, 10). Under load the
# objects of requests in flight are alive at nearly every young collection, so with the
# default nearly all of them were promoted to the oldest generation, whose pending count then
# started a full collection every ~2 s; with 10,000 idle client connections each one
# traversed their ~1 million objects for 180-260 ms (bench --only idle: throughput 0.78x of
# the 64-connection figure, p99 224 ms). A young generation of 50,000 is collected ~70 times
# less often and promotes at most what is in flight then; cyclic garbage waits a little
# longer (a few MiB).
GC_THRESHOLDS = (50_000, 20, 10)
# The client library adds these when absent; a proxy must send only what the client sent
# (an added Accept-Encoding would make backends compress for clients that never asked).
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class Listener:
    """One proxy port and the Router that maps its requests to upstreams. Port 0 binds an
    ephemeral port; `DataPlane.ports` tells which. With `tls`, the port speaks HTTPS with
    the certificates its store holds at each handshake (several listeners may share a
    Router and a store: HTTP and HTTPS over the same routes)."""

    host: str
    port: int
    router: Router
    tls: CertificateStore | None = None


def upstream_client(settings: Settings) -> UpstreamClient:
    """The client for proxied requests: pooled keep-alive connections, the timeouts of
    `settings.timeouts`, the response head limits of `settings.limits`."""
    timeouts = settings.timeouts
    limits = settings.limits
    return UpstreamClient(
        connect_timeout_seconds=timeouts.connect_seconds,
        idle_timeout_seconds=timeouts.upstream_idle_seconds,
        keepalive_seconds=timeouts.upstream_keepalive_seconds,
        total_timeout_seconds=timeouts.total_seconds,
        first_byte_timeout_seconds=timeouts.upstream_first_byte_seconds,
        resend_unacknowledged=settings.retries.resend_unacknowledged,
        socket_options=SocketOptions(  # 0 in the settings: leave the kernel default
            user_timeout_seconds=timeouts.upstream_tcp_user_timeout_seconds or None,
            keepalive_idle_seconds=timeouts.upstream_tcp_keepalive_seconds or None,
        ),
        head_limits=HeadLimits(
            head_bytes=limits.max_response_head_bytes,
            field_bytes=limits.max_response_field_bytes,
            field_count=limits.max_response_header_count,
        ),
    )


def upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """The aiohttp client for WebSocket upgrades: pooled keep-alive connections, no cookies,
    no decompression, no automatic headers, no redirects followed, no hidden retries."""
    timeouts = settings.timeouts
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0,  # concurrency is bounded by clients, not by a hidden queue here
            keepalive_timeout=timeouts.upstream_keepalive_seconds,
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=_NO_AUTO_HEADERS,
        timeout=aiohttp.ClientTimeout(
            total=timeouts.total_seconds,
            sock_connect=timeouts.connect_seconds,
            sock_read=timeouts.upstream_idle_seconds,
        ),
    )
    # aiohttp silently retries an idempotent request once when a pooled connection turns out
    # to be closed. Failover is this proxy's decision (other backend, budget, health report),
    # so that hidden retry is switched off; there is no public switch for it in aiohttp 3.x.
    session._retry_connection = False
    return session


class DataPlane:
    """The proxy's runtime: one pool, one health checker, one upstream client, N listeners."""

    def __init__(
        self,
        settings: Settings,
        *,
        listeners: Sequence[Listener],
        readiness: Readiness | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.listeners = tuple(listeners)
        self.metrics = metrics if metrics is not None else Metrics()
        self.readiness = readiness if readiness is not None else Readiness()
        self.pool = Pool(on_transition=self._on_transition)
        self.health = HealthChecker(self.pool, on_probe=self._on_probe)
        self.budget = RetryBudget.from_settings(settings.retries)
        # Mutable lifecycle state, set by start() and cleared by close():
        self.ports: tuple[int, ...] = ()  # bound proxy ports, in listener order
        self.admin_port: int | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: UpstreamClient | None = None
        self._runners: list[web.BaseRunner] = []
        self._servers: list[web.Server] = []  # one per listener, kept for a forced drain
        self._drain_forced = False
        self._admin_runner: web.AppRunner | None = None
        self._dynamic: DynamicListeners | None = None  # set by start()
        self._wanted: tuple[ListenerSpec, ...] = ()  # set_listeners before start()
        self._stop = asyncio.Event()
        self._exit_code = 0

    def __repr__(self) -> str:
        return f"<DataPlane ports={self.ports} admin={self.admin_port} {self.pool!r}>"

    # -- configuration in (plain def: state first, probes started after) ---------------------

    def apply(self, upstreams: Mapping[str, UpstreamSpec]) -> bool:
        """Make the pool hold exactly `upstreams`; True if anything changed. Call it from the
        event loop (health probes are tasks)."""
        changes: dict[str, UpstreamSpec | None] = {
            name: None for name in self.pool.names() if name not in upstreams
        }
        changes.update(upstreams)
        return self.update(changes)

    def update(self, changes: Mapping[str, UpstreamSpec | None]) -> bool:
        """Install each named upstream's whole snapshot (None: remove the upstream) and leave
        the others alone; True if anything changed. The work is proportional to `changes`, not
        to the pool: the controller calls this for every endpoint change in a large cluster."""
        changed: list[str] = []
        for name, spec in changes.items():
            before = self.pool.spec(name)
            if spec is None:
                if before is not None:
                    self._forget(name, self.pool.remove(name).removed)
                    changed.append(name)
                continue
            change = self.pool.replace(spec)
            if before != spec:
                changed.append(name)
            self._forget(name, change.removed)
            for endpoint in change.added:
                self.metrics.backend_health(upstream=name, backend=endpoint.key, healthy=True)
        if changed:
            specs = {name: spec for name in changed if (spec := self.pool.spec(name)) is not None}
            self.health.reconcile(specs, only=changed)
        return bool(changed)

    def _forget(self, upstream: str, endpoints: Sequence[Endpoint]) -> None:
        for endpoint in endpoints:
            self.metrics.forget_backend(upstream=upstream, backend=endpoint.key)
        self._close_idle(endpoints)

    def _close_idle(self, endpoints: Sequence[Endpoint]) -> None:
        # An endpoint that left the pool or the rotation may be a peer that vanished (pod
        # deleted, node lost), which never closes its idle connections itself: a request
        # reusing one would wait for an answer that cannot come (issue 7).
        if endpoints and self._client is not None:
            self._client.close_idle(endpoints)

    def _on_transition(self, transition: HealthTransition) -> None:
        log_health_transition(transition)
        self.metrics.backend_health(
            upstream=transition.upstream,
            backend=transition.endpoint.key,
            healthy=transition.healthy,
        )
        if not transition.healthy:
            self._close_idle((transition.endpoint,))

    def _on_probe(self, upstream: str, endpoint: Endpoint, ok: bool, duration: float) -> None:
        self.metrics.health_probe(
            upstream=upstream, backend=endpoint.key, ok=ok, duration_seconds=duration
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self, *, tasks: Sequence[Callable[[], Awaitable[None]]] = ()) -> int:
        """Start, run `tasks` until SIGTERM/SIGINT or `stop()`, shut down; return the exit
        code (0, or 1 if one of `tasks` failed)."""
        removers = self._handle_signals()
        try:
            await self.start()
            async with asyncio.TaskGroup() as group:
                running = [group.create_task(self._own(task)) for task in tasks]
                await self._stop.wait()
                await self.drain()
                for task in running:
                    task.cancel()
        finally:
            try:
                await self.close()
            finally:
                # Only now: a signal before this point is a second one, which must not kill
                # the process mid-cleanup.
                for remove in removers:
                    remove()
        log.info("stopped", extra={"event": "stopped", "exit_code": self._exit_code})
        return self._exit_code

    def stop(self) -> None:
        """Ask `serve()` to shut down (what SIGTERM does)."""
        self._stop.set()

    def force_drain(self) -> None:
        """End the drain now (what a second SIGTERM does): close every connection still open,
        which cancels its request, so the drain's wait ends; a drain not started yet finds
        the flag and does the same. Shutdown then goes on as usual."""
        if not self._drain_forced:
            self._drain_forced = True
            log.info(
                "ending the drain now: %d requests in flight are cut off",
                self.budget.requests,
                extra={"event": "drain_forced", "inflight": self.budget.requests},
            )
        self._close_connections()

    def _close_connections(self) -> None:
        if not self._drain_forced:
            return
        dynamic = self._dynamic.servers() if self._dynamic is not None else ()
        for server in (*self._servers, *dynamic):
            for connection in server.connections:
                connection.force_close()

    async def set_listeners(self, specs: Sequence[ListenerSpec]) -> ListenerReport:
        """Make the run-time listeners exactly `specs` (see proxy.listeners): new ones bound,
        changed ones swapped in place, removed ones drained; which are bound, and which
        failed. Before start() they are remembered and bound by start(). ValueError (and
        nothing changed) when two specs share a name or a port."""
        if self._dynamic is None:
            listeners_plan({}, specs)  # the same checks now, not at start()
            self._wanted = tuple(specs)
            return ListenerReport()
        return await self._dynamic.apply(specs)

    async def start(self) -> None:
        """Bind the admin port and every listener; afterwards `ports` and `admin_port` hold
        the bound port numbers."""
        settings = self.settings
        self._session = upstream_session(settings)
        self._client = upstream_client(settings)
        if settings.admin_port:
            admin = build_admin_app(pool=self.pool, metrics=self.metrics, readiness=self.readiness)
            self._admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
            await self._admin_runner.setup()
            await web.TCPSite(self._admin_runner, settings.admin_host, settings.admin_port).start()
            self.admin_port = _bound_port(self._admin_runner)
        ports = []
        for listener in self.listeners:
            tls = listener.tls
            server = self._server(listener.router, https=tls is not None)
            self._servers.append(server)
            runner, port = await bind(
                server,
                host=listener.host,
                port=listener.port,
                store=tls,
                drain_seconds=settings.timeouts.drain_seconds,
                handshake_seconds=settings.timeouts.client_header_seconds,
            )
            self._runners.append(runner)
            ports.append(port)
        self.ports = tuple(ports)
        self._dynamic = DynamicListeners(
            host=settings.host,
            drain_seconds=settings.timeouts.drain_seconds,
            handshake_seconds=settings.timeouts.client_header_seconds,
            make_server=self._server,
        )
        if self._wanted:
            wanted, self._wanted = self._wanted, ()
            await self._dynamic.apply(wanted)
        # Everything allocated so far (modules, settings, the app) lives as long as the process.
        # Moved out of the collector's generations, it is never traversed again: the
        # per-request garbage then costs young-generation collections only, which stay cheap.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.readiness.set(LISTENERS_BOUND, True)
        log.info(
            "listening on %s (admin %s)",
            ", ".join(
                ("https://" if lst.tls is not None else "") + format_authority(lst.host, port)
                for lst, port in zip(self.listeners, ports, strict=True)
            ),
            self.admin_port,
            extra={"event": "listening", "ports": list(ports), "admin_port": self.admin_port},
        )

    def _server(
        self, router: Router, *, https: bool, public_port: int | None = None
    ) -> GuardedServer:
        assert self._session is not None and self._client is not None
        settings = self.settings
        forwarder = Forwarder(
            settings=settings,
            router=router,
            pool=self.pool,
            session=self._session,
            client=self._client,
            budget=self.budget,
            metrics=self.metrics,
            access_log=AccessLog(settings.log),
            https=https,
            public_port=public_port,
        )
        limits = settings.limits
        return GuardedServer(
            forwarder,
            head_timeout_seconds=settings.timeouts.client_header_seconds,
            # A client that disconnects cancels its handler, so the upstream request is
            # abandoned at once instead of running to completion for nobody.
            handler_cancellation=True,
            keepalive_timeout=settings.timeouts.client_keepalive_seconds,
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_header_count,
            auto_decompress=False,
            access_log=None,  # proxy.logging.AccessLog writes ours, with upstream details
        )

    async def drain(self) -> None:
        """Readiness false, stop accepting on every listener, let in-flight requests finish
        (up to timeouts.drain_seconds or until force_drain(), then they are cancelled). The
        admin port stays up so /readyz reports the drain."""
        self.readiness.start_draining()
        log.info(
            "draining: %d requests in flight, up to %.1f s",
            self.budget.requests,
            self.settings.timeouts.drain_seconds,
            extra={"event": "draining", "inflight": self.budget.requests},
        )
        for runner in self._runners:
            for site in list(runner.sites):
                await site.stop()
        self._close_connections()  # forced before the drain got here
        runners, self._runners = self._runners, []
        dynamic = self._dynamic.close() if self._dynamic is not None else asyncio.sleep(0)
        await asyncio.gather(dynamic, *(runner.cleanup() for runner in runners))

    async def close(self) -> None:
        """Release everything start() took. Idempotent; drains first if drain() was skipped."""
        if self._runners or (self._dynamic is not None and not self._dynamic.closed):
            await self.drain()
        self._dynamic = None
        self._servers.clear()
        await self.health.close()
        if self._admin_runner is not None:
            runner, self._admin_runner = self._admin_runner, None
            await runner.cleanup()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _own(self, task: Callable[[], Awaitable[None]]) -> None:
        """The boundary of an owner's task: a crash is logged and shuts the proxy down (exit
        1) rather than leaving it running without, say, its controller."""
        try:
            await task()
        except Exception:
            log.exception("task %s failed; shutting down", task, extra={"event": "task_failed"})
            self._exit_code = 1
            self.stop()

    def _handle_signals(self) -> list[Callable[[], object]]:
        loop = asyncio.get_running_loop()
        removers: list[Callable[[], object]] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread (embedded, tests): stop() still works
            removers.append(functools.partial(loop.remove_signal_handler, signum))
        return removers

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        again = self._stop.is_set()
        log.info(
            "received %s during shutdown, forcing it" if again else "received %s, shutting down",
            name,
            extra={"event": "signal", "signal": name, "again": again},
        )
        if again:
            self.force_drain()
        else:
            self.stop()


def _bound_port(runner: web.BaseRunner) -> int:
    address = runner.addresses[-1]
    return int(address[1])
