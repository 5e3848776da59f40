"""Frozen value objects shared by the pool, the strategies, health checks and the controller.

Everything here is immutable and compared by value, so a whole snapshot can be built
anew, compared with the current one ("unchanged? skip the push") and swapped by reference.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address. Identity (`key`) is host and port; weight and readiness ride along."""

    host: str
    port: int
    weight: int = 1
    # False for an endpoint Kubernetes reports serving but not ready (for example terminating):
    # it gets traffic only while no ready endpoint is healthy.
    ready: bool = True
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range 1-65535")
        if self.weight < 1:
            raise ValueError(f"weight {self.weight} must be at least 1")
        object.__setattr__(self, "key", format_authority(self.host, self.port))

    @property
    def base_url(self) -> str:
        """`http://host:port`, with IPv6 hosts bracketed."""
        return f"http://{self.key}"


def format_authority(host: str, port: int) -> str:
    """`host:port`, bracketing IPv6 literals (`[::1]:80`)."""
    # Only an IPv6 literal can contain a colon: hostnames and IPv4 addresses skip the parse,
    # which was most of the cost of building the 100,000 endpoints of a large cluster.
    if ":" in host:
        try:
            if ipaddress.ip_address(host).version == 6:
                return f"[{host}]:{port}"
        except ValueError:
            pass  # not an IP literal
    return f"{host}:{port}"


HashSource = Literal["header", "cookie", "client"]


@dataclass(frozen=True, slots=True)
class HashOn:
    """What consistent hashing keys on: a request header, a cookie, or the client address."""

    source: HashSource
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> HashOn:
        """Parse `header:X-User`, `cookie:session` or `client`; raise ValueError otherwise."""
        source, _, name = text.strip().partition(":")
        source = source.strip().lower()
        name = name.strip()
        if source == "client" and not name:
            return cls("client")
        if source in ("header", "cookie") and name:
            return cls(source, name)  # type: ignore[arg-type]
        raise ValueError(
            f"{text!r} is not a hash key: use 'header:NAME', 'cookie:NAME' or 'client'"
        )

    def __str__(self) -> str:
        return self.source if self.source == "client" else f"{self.source}:{self.name}"


@dataclass(frozen=True, slots=True)
class HealthSpec:
    """How one upstream's endpoints are actively probed."""

    path: str = "/healthz"
    interval_seconds: float = 5.0
    timeout_seconds: float = 3.0
    # Inclusive (low, high) status ranges that count as healthy; default 2xx.
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 299),)
    healthy_threshold: int = 1
    unhealthy_threshold: int = 1
    enabled: bool = True

    def accepts(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expected_statuses)


@dataclass(frozen=True, slots=True)
class OutlierSpec:
    """Passive ejection after consecutive 5xx answers; off when `consecutive_5xx` is 0."""

    consecutive_5xx: int = 0
    ejection_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """All the data plane needs to balance one upstream (a Service, or the static backends)."""

    name: str
    endpoints: tuple[Endpoint, ...]
    strategy: str = "round-robin"
    hash_on: HashOn | None = None
    health: HealthSpec = HealthSpec()
    outlier: OutlierSpec = OutlierSpec()
