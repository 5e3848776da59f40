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

`plan` is the plain, synchronous diff (what to open, swap, close); proxy/app.py does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from proxy.routing import RouteTable
from proxy.tls.store import CertificateSet


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
    def socket_key(self) -> tuple[int, bool]:
        """What the socket is: a change of it needs a new socket, anything else is swapped."""
        return (self.port, self.tls is not None)


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
        elif before != spec:
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
