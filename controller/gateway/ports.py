"""Internal port assignment: which data-plane socket serves each (Gateway, listener port).

A pure function of the cache, so every replica computes the same assignment without talking
to the others. Gateways are taken oldest first (creationTimestamp, then namespace and name);
each (Gateway, port), in that order, takes the first free port at or after
`start + crc32("ns/name/port") % size`, wrapping around the range. An older Gateway's ports
therefore never move when a newer one arrives; a Gateway that leaves frees its ports, and
only Gateways younger than it whose preferred port was taken can move into them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GatewayPortKey = tuple[str, str, int]  # (namespace, name, listener port)


@dataclass(frozen=True, slots=True)
class PortRange:
    """Inclusive range of internal ports (default 20000-29999, as the design says)."""

    start: int = 20000
    end: int = 29999

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.end <= 65535:
            raise ValueError(f"port range {self.start}-{self.end} is not within 1-65535")

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class GatewayPorts:
    """What the assignment needs of one Gateway: its age, identity and listener ports."""

    namespace: str
    name: str
    created: str
    ports: tuple[int, ...]


def preferred(key: GatewayPortKey, ports: PortRange) -> int:
    namespace, name, port = key
    return ports.start + zlib.crc32(f"{namespace}/{name}/{port}".encode()) % ports.size


def assign(gateways: Iterable[GatewayPorts], ports: PortRange) -> Mapping[GatewayPortKey, int]:
    """Internal port of each (Gateway, listener port). When the range is full, the youngest
    Gateways' ports are left out (the caller reports them as not programmed)."""
    taken: set[int] = set()
    result: dict[GatewayPortKey, int] = {}
    for gateway in sorted(gateways, key=lambda g: (g.created, g.namespace, g.name)):
        for port in sorted(set(gateway.ports)):
            if len(taken) >= ports.size:
                return result
            key = (gateway.namespace, gateway.name, port)
            candidate = preferred(key, ports)
            while candidate in taken:
                candidate = ports.start if candidate == ports.end else candidate + 1
            taken.add(candidate)
            result[key] = candidate
    return result
