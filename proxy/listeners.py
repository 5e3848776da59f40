"""Listeners opened and closed at run time: one socket per (Gateway, listener port).

The contract (the controller builds the specs; nothing here knows about Kubernetes):

  ListenerSpec(name, port, routes, tls=None, public_port=None)
      name         the listener's identity across calls (the controller's choice, e.g.
                   "gateway/ns/name/80"); a spec with the same name and port is the same socket
      port         the port to bind on the settings' host (0: an ephemeral one, for tests)
      routes       the RouteTable its requests are matched against
      tls          TlsListenerConfig(certificates): HTTPS with the CertificateSet chosen by SNI
                   (proxy.tls.store); None: plain HTTP
      public_port  the port clients reach (the Gateway listener's port, which a Service maps
                   to `port`): RequestRedirect uses it when it keeps the scheme and sets no
                   port; None: the scheme's default port

  DataPlane.set_listeners(specs) -> ListenerReport   (proxy/app.py)
      Makes the dynamic listeners exactly `specs`: opens a socket for each new name (or when a
      name's port or plain/TLS kind changed), swaps the routes and certificates of the others
      in place (connections stay open; the next request or handshake sees the new ones),
      stops accepting on removed ones at once and closes them once their requests in flight
      finish (up to timeouts.drain_seconds). Idempotent: equal specs change nothing. A port
      that cannot be bound is reported in `failed` and tried again on the next call.
      Called before start(), the specs are remembered and opened by start().

`plan` is the plain, synchronous diff (what to open, swap, close); `DynamicListeners` holds
the open sockets and does the I/O the plan asks for; `bind` opens one socket (the static
listeners of proxy/app.py use it too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from aiohttp import web

from proxy.routing import Router, RouteTable
from proxy.tls.site import TlsSite
from proxy.tls.store import CertificateSet, CertificateStore

log = logging.getLogger("kubeferry.listeners")


@dataclass(frozen=True, slots=True)
class TlsListenerConfig:
    """The certificates an HTTPS listener serves, chosen by SNI (the default one without)."""

    certificates: CertificateSet


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One dynamic listening socket and what it serves (see the module docstring)."""

    name: str
    port: int
    routes: RouteTable
    tls: TlsListenerConfig | None = None
    public_port: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("listener name: empty")
        if not 0 <= self.port < 65536:
            raise ValueError(f"listener {self.name}: port {self.port} out of range")
        if self.public_port is not None and not 0 < self.public_port < 65536:
            raise ValueError(f"listener {self.name}: public port {self.public_port} out of range")

    @property
    def socket_key(self) -> tuple[int, bool, int | None]:
        """What the socket is: a change of it needs a new socket (the public port is fixed in
        the listener's handler); routes and certificates are swapped in place."""
        return (self.port, self.tls is not None, self.public_port)


@dataclass(frozen=True, slots=True)
class ListenerReport:
    """What `set_listeners` left open: the bound port of each listener by name, and the
    listeners that could not be bound with the reason."""

    bound: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    failed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ports(self) -> frozenset[int]:
        """The bound ports (what Gateway `Programmed` waits for)."""
        return frozenset(self.bound.values())


@dataclass(frozen=True, slots=True)
class ListenerPlan:
    """The diff from the open listeners to the wanted ones."""

    open: tuple[ListenerSpec, ...] = ()
    swap: tuple[ListenerSpec, ...] = ()  # same socket, new routes/certificates/public port
    close: tuple[str, ...] = ()  # names

    @property
    def empty(self) -> bool:
        return not (self.open or self.swap or self.close)


def plan(current: Mapping[str, ListenerSpec], wanted: Sequence[ListenerSpec]) -> ListenerPlan:
    """What to do to go from the `current` specs (by name, of the sockets open now) to
    `wanted`; ValueError if `wanted` names a listener twice or binds one fixed port twice."""
    _check_unique(wanted)
    opening: list[ListenerSpec] = []
    swapping: list[ListenerSpec] = []
    closing: list[str] = []
    wanted_names = {spec.name for spec in wanted}
    for name in current:
        if name not in wanted_names:
            closing.append(name)
    for spec in wanted:
        before = current.get(spec.name)
        if before is None:
            opening.append(spec)
        elif before.socket_key != spec.socket_key:
            closing.append(spec.name)
            opening.append(spec)
        elif before.routes != spec.routes or before.tls != spec.tls:
            swapping.append(spec)
    return ListenerPlan(tuple(opening), tuple(swapping), tuple(closing))


def _check_unique(specs: Iterable[ListenerSpec]) -> None:
    names: set[str] = set()
    ports: dict[int, str] = {}
    for spec in specs:
        if spec.name in names:
            raise ValueError(f"listener {spec.name}: named twice")
        names.add(spec.name)
        if spec.port:
            other = ports.setdefault(spec.port, spec.name)
            if other != spec.name:
                raise ValueError(f"listeners {other} and {spec.name}: both on port {spec.port}")


# -- the sockets ---------------------------------------------------------------------------

MakeServer = Callable[..., web.Server]  # (router, *, https, public_port) -> the handler's server


async def bind(
    server: web.Server,
    *,
    host: str,
    port: int,
    store: CertificateStore | None,
    drain_seconds: float,
    handshake_seconds: float,
) -> tuple[web.ServerRunner, int]:
    """Listen with `server` on host:port (HTTPS with `store`'s certificates); the runner and
    the bound port. OSError (nothing left open) when the port cannot be bound."""
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=drain_seconds)
    await runner.setup()
    site: web.TCPSite
    if store is None:
        site = web.TCPSite(runner, host, port, backlog=1024)
    else:
        # The request-head deadline starts after the handshake: it gets its own.
        site = TlsSite(
            runner,
            host,
            port,
            ssl_context=store.listener_context(),
            handshake_timeout_seconds=handshake_seconds,
            backlog=1024,
        )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[-1][1])


@dataclass(slots=True)
class _Open:
    spec: ListenerSpec
    router: Router
    store: CertificateStore | None
    server: web.Server
    runner: web.ServerRunner
    port: int


class DynamicListeners:
    """The sockets of `set_listeners`. Mutable state: `_open` (by name), `_draining` (removed
    listeners finishing their requests, each a task owned here), `_closed` (shutdown began:
    nothing opens any more)."""

    def __init__(
        self,
        *,
        host: str,
        drain_seconds: float,
        handshake_seconds: float,
        make_server: MakeServer,
    ) -> None:
        self._host = host
        self._drain_seconds = drain_seconds
        self._handshake_seconds = handshake_seconds
        self._make_server = make_server
        self._open: dict[str, _Open] = {}
        self._draining: dict[asyncio.Task[None], web.Server] = {}
        self._closed = False
        self._lock = asyncio.Lock()  # one apply at a time: each plans from the last's result

    def __repr__(self) -> str:
        ports = ", ".join(f"{name}={o.port}" for name, o in sorted(self._open.items()))
        return f"<DynamicListeners {ports or 'none'}; {len(self._draining)} draining>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def report(self) -> ListenerReport:
        return ListenerReport(MappingProxyType({n: o.port for n, o in self._open.items()}))

    def servers(self) -> Iterator[web.Server]:
        """Every server with connections: open and draining (for a forced drain)."""
        yield from (o.server for o in self._open.values())
        yield from self._draining.values()

    async def apply(self, specs: Sequence[ListenerSpec]) -> ListenerReport:
        """Make the open listeners `specs` (see the module docstring)."""
        async with self._lock:
            if self._closed:
                refused = {spec.name: "shutting down" for spec in specs}
                return ListenerReport(MappingProxyType({}), MappingProxyType(refused))
            todo = plan({name: o.spec for name, o in self._open.items()}, specs)
            for spec in todo.swap:  # state first: plain assignments, no await
                self._swap(self._open[spec.name], spec)
            for name in todo.close:
                await self._retire(self._open.pop(name))
            failed: dict[str, str] = {}
            for spec in todo.open:
                error = await self._bind(spec)
                if error is not None:
                    failed[spec.name] = error
            report = self.report
            return ListenerReport(report.bound, MappingProxyType(failed))

    def _swap(self, opened: _Open, spec: ListenerSpec) -> None:
        opened.router.replace(spec.routes)
        if opened.store is not None and spec.tls is not None:
            opened.store.replace(spec.tls.certificates)
        opened.spec = spec
        log.info(
            "listener %s on port %d: routes and certificates replaced",
            spec.name,
            opened.port,
            extra={"event": "listener_updated", "listener": spec.name, "port": opened.port},
        )

    async def _bind(self, spec: ListenerSpec) -> str | None:
        router = Router(spec.routes)
        store = CertificateStore(spec.tls.certificates) if spec.tls is not None else None
        server = self._make_server(router, https=store is not None, public_port=spec.public_port)
        try:
            runner, port = await bind(
                server,
                host=self._host,
                port=spec.port,
                store=store,
                drain_seconds=self._drain_seconds,
                handshake_seconds=self._handshake_seconds,
            )
        except OSError as error:
            reason = f"cannot listen on {self._host}:{spec.port}: {error.strerror or error}"
            log.error(
                "listener %s: %s",
                spec.name,
                reason,
                extra={"event": "listener_failed", "listener": spec.name, "error": reason},
            )
            return reason
        self._open[spec.name] = _Open(spec, router, store, server, runner, port)
        log.info(
            "listener %s opened on port %d%s",
            spec.name,
            port,
            " (https)" if store is not None else "",
            extra={
                "event": "listener_opened",
                "listener": spec.name,
                "port": port,
                "https": store is not None,
            },
        )
        return None

    async def _retire(self, opened: _Open) -> None:
        """Stop accepting now (the port is free at once); finish the requests in flight in a
        task of our own, so the caller does not wait for them."""
        for site in list(opened.runner.sites):
            await site.stop()
        task = asyncio.create_task(self._drain(opened))
        self._draining[task] = opened.server
        task.add_done_callback(self._draining.pop)
        log.info(
            "listener %s on port %d closed; draining its connections",
            opened.spec.name,
            opened.port,
            extra={"event": "listener_closed", "listener": opened.spec.name, "port": opened.port},
        )

    async def _drain(self, opened: _Open) -> None:
        # The top of a task of ours: a failure is logged here, never left in the task.
        try:
            await opened.runner.cleanup()  # waits for handlers up to drain_seconds, then cancels
        except Exception:
            log.exception(
                "listener %s: draining failed",
                opened.spec.name,
                extra={"event": "listener_drain_failed", "listener": opened.spec.name},
            )

    async def close(self) -> None:
        """Shutdown: nothing opens any more; every listener stops accepting and drains."""
        async with self._lock:
            self._closed = True
            for name in list(self._open):
                await self._retire(self._open.pop(name))
        if self._draining:
            await asyncio.gather(*self._draining)
