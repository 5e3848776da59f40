"""DataPlane.update: whole snapshots for the named upstreams only, the rest left alone, and
health probes and metric series following just those."""

from __future__ import annotations

from proxy.app import DataPlane
from proxy.model import Endpoint, HealthSpec, UpstreamSpec
from proxy.settings import load_settings

# Probes are tasks that wait up to a tenth of the interval before their first probe: with an
# hour, none ever runs (no socket) before the checker is closed.
HEALTH = HealthSpec(interval_seconds=3600.0)


def spec(name: str, *hosts: str) -> UpstreamSpec:
    return UpstreamSpec(name, tuple(Endpoint(h, 8080) for h in hosts), health=HEALTH)


def backend_up(plane: DataPlane, upstream: str, host: str) -> float | None:
    labels = {"upstream": upstream, "backend": f"{host}:8080"}
    return plane.metrics.registry.get_sample_value("kubeferry_backend_up", labels)


async def test_update_replaces_and_removes_only_the_named_upstreams() -> None:
    plane = DataPlane(load_settings(), listeners=[])
    try:
        web, api = spec("web", "10.0.0.1", "10.0.0.2"), spec("api", "10.0.1.1")
        assert plane.apply({"web": web, "api": api})
        assert set(plane.health.targets()) == {
            ("web", "10.0.0.1:8080"),
            ("web", "10.0.0.2:8080"),
            ("api", "10.0.1.1:8080"),
        }
        api_probe = plane.health._running["api", "10.0.1.1:8080"][1]

        moved = spec("web", "10.0.0.2", "10.0.0.3")
        assert plane.update({"web": moved})
        assert plane.pool.spec("web") == moved and plane.pool.spec("api") is api
        assert set(plane.health.targets()) == {
            ("web", "10.0.0.2:8080"),
            ("web", "10.0.0.3:8080"),
            ("api", "10.0.1.1:8080"),
        }
        assert plane.health._running["api", "10.0.1.1:8080"][1] is api_probe  # untouched
        assert backend_up(plane, "web", "10.0.0.1") is None  # its series left with it
        assert backend_up(plane, "web", "10.0.0.3") == 1

        assert not plane.update({"web": moved})  # the same snapshot: no change
        assert not plane.update({"gone": None})  # removing what is not there: no change
        assert plane.update({"api": None})
        assert plane.pool.names() == ("web",)
        assert ("api", "10.0.1.1:8080") not in plane.health.targets()
        assert backend_up(plane, "api", "10.0.1.1") is None
    finally:
        await plane.health.close()


async def test_apply_is_still_the_whole_truth() -> None:
    plane = DataPlane(load_settings(), listeners=[])
    try:
        plane.apply({"web": spec("web", "10.0.0.1"), "api": spec("api", "10.0.1.1")})
        assert plane.apply({"api": spec("api", "10.0.1.1")})
        assert plane.pool.names() == ("api",)
        assert set(plane.health.targets()) == {("api", "10.0.1.1:8080")}
    finally:
        await plane.health.close()
