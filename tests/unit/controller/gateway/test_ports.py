"""The internal port assignment: a pure function of the Gateways, stable for older Gateways
when new ones arrive, and the same whatever order the cache lists them in."""

from __future__ import annotations

import random

import pytest

from controller.gateway.ports import GatewayPorts, PortRange, assign, preferred


def _gw(name: str, created: str, *ports: int, namespace: str = "ns") -> GatewayPorts:
    return GatewayPorts(namespace, name, created, ports)


def test_each_port_takes_its_preferred_port_when_free() -> None:
    gateways = [_gw("a", "2026-01-01T00:00:00Z", 80, 443)]
    result = assign(gateways, PortRange())
    for port in (80, 443):
        assert result[("ns", "a", port)] == preferred(("ns", "a", port), PortRange())
        assert 20000 <= result[("ns", "a", port)] <= 29999


def test_older_gateways_keep_their_ports_when_newer_ones_arrive() -> None:
    ports = PortRange(20000, 20009)  # small: collisions are certain
    old = [_gw(f"old-{i}", f"2026-01-0{i + 1}T00:00:00Z", 80, 443) for i in range(3)]
    before = assign(old, ports)
    new = [_gw(f"new-{i}", f"2026-02-0{i + 1}T00:00:00Z", 80, 8080) for i in range(2)]
    after = assign([*new, *old], ports)
    assert {k: after[k] for k in before} == dict(before)
    assert len(set(after.values())) == len(after) == 10


def test_the_input_order_does_not_matter() -> None:
    gateways = [
        _gw(f"g{i}", "2026-01-01T00:00:00Z", 80, 81, namespace=f"n{i % 3}") for i in range(8)
    ]
    expected = assign(gateways, PortRange(20000, 20031))
    rng = random.Random(7)
    for _ in range(5):
        shuffled = list(gateways)
        rng.shuffle(shuffled)
        assert assign(shuffled, PortRange(20000, 20031)) == expected


def test_a_full_range_leaves_the_youngest_out() -> None:
    gateways = [_gw("old", "2026-01-01T00:00:00Z", 80, 81), _gw("new", "2026-02-01T00:00:00Z", 80)]
    result = assign(gateways, PortRange(30000, 30001))
    assert set(result) == {("ns", "old", 80), ("ns", "old", 81)}
    assert sorted(result.values()) == [30000, 30001]


def test_a_bad_range_is_refused() -> None:
    with pytest.raises(ValueError, match="port range 30000-20000"):
        PortRange(30000, 20000)
