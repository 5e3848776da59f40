"""The controller process assembled: data plane, cache, watches, sync and event recorder.

`Controller` is what `kubeferry controller` runs and what an in-process test starts against a
real API server:

    async with Controller(settings, options, api_client=api) as controller:
        await controller.wait_synced()
        port = controller.ports[0]          # bound proxy port(s), in listener order
        ...                                 # requests, kubectl, assertions

In ingress mode with HTTPS on (`tls.enabled` or `tls.cert_file`), a second listener on
`tls_port` serves the same routes over TLS; its CertificateStore gets the certificates of
the Services' `tls-secret`s from the sync, and its default certificate from `tls.cert_file`
(reloaded as in the standalone proxy) or a self-signed one.

`serve()` runs until SIGTERM (the CLI); `start()`/`stop()` (or `async with`) run the same
thing in the background (tests). Shutdown order is the data plane's: readiness false, stop
accepting, drain, cancel the watch, sync and event tasks, close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from controller.annotations import Defaults, Mode
from controller.cache import Cache, WatchScope
from controller.desired import Selection
from controller.events import EventRecorder, KubeEventRecorder
from controller.gateway_streams import GatewayStreams
from controller.metrics import ControllerMetrics
from controller.secret_watch import SecretWatches
from controller.sync import Sync
from controller.watch import WatchTiming, run_watches
from proxy.app import DataPlane, Listener
from proxy.cli import certificate_reloader, standalone_certificates
from proxy.routing import Router, RouteTable
from proxy.settings import Settings
from proxy.tls.files import FileReloader
from proxy.tls.store import CertificateStore

if TYPE_CHECKING:  # imported only with --gateway-api
    from controller.gateway_sync import GatewaySync
    from controller.gateway_writer import GatewayWriter
    from proxy.listeners import ListenerReport, ListenerSpec


@dataclass(frozen=True, slots=True)
class SidecarUpstream:
    """`--upstream [namespace/]name=port`: a Service reachable on 127.0.0.1:port."""

    namespace: str
    name: str
    port: int  # 0 binds an ephemeral port (tests); `Controller.ports` tells which

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def upstream(self) -> str:
        return f"{self.namespace}/{self.name}"


DEFAULT_GATEWAY_CONTROLLER = "kubeferry.io/gateway-controller"
# Every Service the controller owns for a Gateway carries this label (the Gateway's namespace).
GATEWAY_NAMESPACE_LABEL = "gateway.kubeferry.io/namespace"
GATEWAY_SERVICE_SELECTOR = GATEWAY_NAMESPACE_LABEL  # "has the label"


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """`--gateway-api`: serve the Gateways of GatewayClasses naming `controller_name`.

    Each Gateway gets its own Service in `service_namespace` (the controller's own), selecting
    the kubeferry pods by `service_selector`, whose ports lead to internal listening ports
    taken from `port_range` (inclusive)."""

    controller_name: str = DEFAULT_GATEWAY_CONTROLLER
    service_namespace: str = "default"
    service_selector: tuple[tuple[str, str], ...] = ()
    port_range: tuple[int, int] = (20000, 29999)


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    """What the controller does, beyond the proxy settings. Validated by `controller.cli`."""

    mode: Mode = "ingress"
    # Ingress mode: the namespaces watched; None means all of them.
    namespaces: tuple[str, ...] | None = None
    # Sidecar mode: the Services, each on its own loopback port.
    upstreams: tuple[SidecarUpstream, ...] = ()
    sidecar_host: str = "127.0.0.1"
    # Ingress mode: overrides `settings.port`; 0 binds an ephemeral port (tests).
    listen_port: int | None = None
    # Ingress mode: Gateway API on (None: off).
    gateway: GatewayOptions | None = None

    def scopes(self) -> tuple[WatchScope, ...]:
        if self.mode == "sidecar":
            return tuple(WatchScope(u.namespace, u.name) for u in self.upstreams)
        if self.namespaces is None:
            return (WatchScope(),)
        return tuple(WatchScope(ns) for ns in dict.fromkeys(self.namespaces))

    def selection(self) -> Selection:
        if self.mode == "sidecar":
            return Selection("sidecar", frozenset(u.key for u in self.upstreams))
        return Selection("ingress")


class Controller:
    """One controller: its data plane listeners, cache, watches, sync and event recorder."""

    def __init__(
        self,
        settings: Settings,
        options: ControllerOptions,
        *,
        api_client: Any,
        events: EventRecorder | None = None,
        watch_timing: WatchTiming | None = None,
        certificates: CertificateStore | None = None,
    ) -> None:
        """`certificates`: the HTTPS listener's store, already loaded (the CLI does, to
        report a bad `tls.cert_file` before starting); made here from the settings if None.
        """
        self.settings = settings
        self.options = options
        self._api = api_client
        self._watch_timing = watch_timing or WatchTiming()
        self.router: Router | None = None
        self.certificates: CertificateStore | None = None
        self._reloader: FileReloader | None = None
        if options.mode == "sidecar":
            listeners = [
                Listener(options.sidecar_host, u.port, Router(RouteTable.single(u.upstream)))
                for u in options.upstreams
            ]
        else:
            self.router = Router()
            port = settings.port if options.listen_port is None else options.listen_port
            listeners = [Listener(settings.host, port, self.router)]
            if settings.tls.serving:
                store = certificates or standalone_certificates(settings.tls)
                assert store is not None
                self.certificates = store
                self._reloader = certificate_reloader(settings.tls, store)
                listeners.append(Listener(settings.host, settings.tls_port, self.router, store))
        self.plane = DataPlane(settings, listeners=listeners)
        self.metrics = ControllerMetrics(self.plane.metrics.registry)
        gateway_streams = None
        if options.gateway is not None:
            gateway_streams = GatewayStreams(
                options.gateway.service_namespace, GATEWAY_SERVICE_SELECTOR
            )
        self.cache = Cache(options.scopes(), gateway=gateway_streams)
        self.secrets: SecretWatches | None = None
        if options.mode == "ingress":
            self.secrets = SecretWatches(
                api_client, self.cache, metrics=self.metrics, timing=self._watch_timing
            )
        self._recorder: KubeEventRecorder | None = None
        if events is None:
            self._recorder = KubeEventRecorder.from_client(api_client)
            events = self._recorder
        self.gateway: GatewaySync | None = None
        self._gateway_writer: GatewayWriter | None = None
        if options.gateway is not None:
            from controller.gateway_sync import GatewaySync
            from controller.gateway_writer import GatewayWriter

            self.gateway = GatewaySync(
                self.cache, options.gateway, Defaults.from_settings(settings)
            )
            self._gateway_writer = GatewayWriter(
                api_client,
                listeners=self.plane,
                service_namespace=options.gateway.service_namespace,
                on_applied=self._gateway_applied,
                backoff_initial_seconds=self._watch_timing.backoff_initial_seconds,
                backoff_max_seconds=self._watch_timing.backoff_max_seconds,
            )
        self.sync = Sync(
            self.cache,
            selection=options.selection(),
            defaults=Defaults.from_settings(settings),
            dataplane=self.plane,
            router=self.router,
            certificates=self.certificates,
            secrets=self.secrets,
            readiness=self.plane.readiness,
            events=events,
            metrics=self.metrics,
            resync_interval_seconds=settings.controller.resync_interval_seconds,
            gateway=self.gateway,
            gateway_sink=self._gateway_writer,
        )
        # Lifecycle state for start()/stop().
        self._started = asyncio.Event()
        self._serving: asyncio.Task[int] | None = None

    def __repr__(self) -> str:
        return f"<Controller {self.options.mode} {self.cache!r} {self.sync!r} {self.plane!r}>"

    def _gateway_applied(self, listeners: Sequence[ListenerSpec], report: ListenerReport) -> None:
        # The data plane took new Gateway listeners: statuses may change (Programmed, its
        # sockets bound or closed) and upstreams only the old routes used may go, so the
        # sync runs again.
        if self.gateway is not None and self.gateway.listeners_applied(listeners, report.ports):
            self.cache.changed.notify()

    @property
    def gateway_writes(self) -> int:
        """Status writes sent so far (0 without --gateway-api): a test and debug aid."""
        return 0 if self._gateway_writer is None else self._gateway_writer.writes

    @property
    def ports(self) -> tuple[int, ...]:
        """Bound proxy ports in listener order (sidecar: in `options.upstreams` order)."""
        return self.plane.ports

    @property
    def admin_port(self) -> int | None:
        return self.plane.admin_port

    def tasks(self) -> Sequence[Callable[[], Awaitable[None]]]:
        """The loops the data plane runs and cancels on shutdown."""

        async def watches() -> None:
            await run_watches(
                self._api, self.cache, metrics=self.metrics, timing=self._watch_timing
            )

        async def sync() -> None:
            await self.sync.run(self.cache)

        async def started() -> None:
            self._started.set()

        loops: list[Callable[[], Awaitable[None]]] = [started, watches, sync]
        if self._recorder is not None:
            loops.append(self._recorder.run)
        if self.secrets is not None:
            loops.append(self.secrets.run)
        if self._gateway_writer is not None:
            loops.append(self._gateway_writer.run)
        if self._reloader is not None:
            loops.append(self._reloader.run)
        return loops

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT or `stop()`; return the exit status."""
        if self._reloader is None:
            return await self.plane.serve(tasks=self.tasks())
        undo = self._reloader.handle_sighup()  # SIGHUP re-reads tls.cert_file at once
        try:
            return await self.plane.serve(tasks=self.tasks())
        finally:
            undo()

    async def start(self) -> None:
        """`serve()` in the background; returns once the listeners are bound."""
        if self._serving is not None:
            raise RuntimeError("already started")
        self._serving = asyncio.create_task(self.serve(), name="kubeferry controller")
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({started, self._serving}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await self._serving  # raises what stopped startup (a port already taken)
            raise RuntimeError("the controller stopped while starting")

    async def wait_synced(self) -> None:
        """Return after the first full sync (when /readyz turns true)."""
        await self.sync.first_synced.wait()

    async def stop(self) -> int:
        """Shut down as on SIGTERM; return the exit status."""
        if self._serving is None:
            return 0
        self.plane.stop()
        serving, self._serving = self._serving, None
        return await serving

    async def __aenter__(self) -> Controller:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.stop()
