"""The pool's state machine: snapshots in, health in, picks out. No sockets, fake clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proxy.model import Endpoint, HealthSpec, OutlierSpec, UpstreamSpec
from proxy.pool import HealthTransition, Pool, PoolChange
from proxy.strategies import UnknownStrategyError

A = Endpoint("10.0.0.1", 80)
B = Endpoint("10.0.0.2", 80)
C = Endpoint("10.0.0.3", 80)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Pool transition listener keeping what it heard."""

    def __init__(self) -> None:
        self.events: list[HealthTransition] = []

    def __call__(self, transition: HealthTransition) -> None:
        self.events.append(transition)

    def summary(self) -> list[tuple[str, bool, str]]:
        return [(t.endpoint.key, t.healthy, t.source) for t in self.events]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def heard() -> Recorder:
    return Recorder()


@pytest.fixture
def pool(clock: FakeClock, heard: Recorder) -> Pool:
    return Pool(rng=random.Random(1), clock=clock, on_transition=heard)


def spec(*endpoints: Endpoint, name: str = "web", **fields: object) -> UpstreamSpec:
    return UpstreamSpec(name, endpoints, **fields)  # type: ignore[arg-type]


def picks(pool: Pool, count: int = 30, **kwargs: object) -> set[str]:
    chosen = {pool.pick("web", **kwargs) for _ in range(count)}  # type: ignore[arg-type]
    return {e.key if e else "none" for e in chosen}


# -- snapshots -------------------------------------------------------------------------------


def test_first_replace_adds_everything(pool: Pool) -> None:
    change = pool.replace(spec(A, B))
    assert change == PoolChange("web", added=(A, B))
    assert repr(pool) == "<Pool 1 upstreams, 2 endpoints, 2 healthy>"


def test_replace_reports_added_and_removed(pool: Pool) -> None:
    pool.replace(spec(A, B))
    change = pool.replace(spec(B, C))
    assert change == PoolChange("web", added=(C,), removed=(A,))
    assert not change.empty
    assert picks(pool) == {B.key, C.key}


def test_unchanged_spec_is_a_no_op(pool: Pool, heard: Recorder) -> None:
    pool.replace(spec(A, B))
    pool.report("web", A, healthy=False, reason="down")
    change = pool.replace(spec(A, B))
    assert change.empty
    assert not pool.is_healthy("web", A)
    assert len(heard.events) == 1


def test_endpoints_keep_health_across_replace(pool: Pool) -> None:
    pool.replace(spec(A, B))
    pool.report("web", A, healthy=False, reason="GET /healthz -> 503")
    # A weight change makes a different spec, but the same endpoint (same key) stays down.
    pool.replace(spec(Endpoint("10.0.0.1", 80, weight=3), B, C))
    assert not pool.is_healthy("web", A)
    assert pool.is_healthy("web", C)
    assert repr(pool) == "<Pool 1 upstreams, 3 endpoints, 2 healthy>"


def test_removed_then_readded_endpoint_starts_healthy(pool: Pool) -> None:
    pool.replace(spec(A, B))
    pool.report("web", A, healthy=False, reason="down")
    pool.replace(spec(B))
    pool.replace(spec(A, B))
    assert pool.is_healthy("web", A)


def test_changed_strategy_replaces_the_strategy(pool: Pool) -> None:
    pool.replace(spec(A, B, C))
    assert [pool.pick("web") for _ in range(3)] == [A, B, C]
    pool.replace(spec(A, B, C, strategy="consistent-hash"))
    assert len({pool.pick("web", hash_key="user-1") for _ in range(20)}) == 1


def test_unknown_strategy_leaves_the_pool_unchanged(pool: Pool) -> None:
    with pytest.raises(UnknownStrategyError):
        pool.replace(spec(A, strategy="fastest"))
    assert pool.names() == ()
    pool.replace(spec(A))
    with pytest.raises(UnknownStrategyError):
        pool.replace(spec(A, B, strategy="fastest"))
    assert pool.spec("web") == spec(A)


def test_remove_returns_endpoints_as_removed(pool: Pool) -> None:
    pool.replace(spec(A, B))
    assert pool.remove("web") == PoolChange("web", removed=(A, B))
    assert pool.remove("web").empty
    assert pool.pick("web") is None
    assert repr(pool) == "<Pool 0 upstreams, 0 endpoints, 0 healthy>"


def test_specs_and_names(pool: Pool) -> None:
    pool.replace(spec(A, name="b"))
    pool.replace(spec(B, name="a"))
    assert set(pool.names()) == {"a", "b"}
    assert pool.specs() == {"b": spec(A, name="b"), "a": spec(B, name="a")}
    assert pool.spec("missing") is None


# -- picking ---------------------------------------------------------------------------------


def test_pick_only_healthy(pool: Pool) -> None:
    pool.replace(spec(A, B, C))
    pool.report("web", B, healthy=False, reason="down")
    assert picks(pool) == {A.key, C.key}


def test_pick_none_when_nothing_healthy_or_unknown(pool: Pool) -> None:
    pool.replace(spec(A))
    pool.report("web", A, healthy=False, reason="down")
    assert pool.pick("web") is None
    assert not pool.has_candidates("web")
    assert pool.pick("other") is None
    assert not pool.has_candidates("other")


def test_serving_only_endpoints_are_a_fallback(pool: Pool) -> None:
    draining = Endpoint("10.0.0.9", 80, ready=False)
    pool.replace(spec(A, draining))
    assert picks(pool) == {A.key}
    pool.report("web", A, healthy=False, reason="down")
    # No ready endpoint is healthy: the terminating one is better than a 503.
    assert picks(pool) == {draining.key}
    pool.report("web", A, healthy=True, reason="up")
    assert picks(pool) == {A.key}


def test_unhealthy_serving_only_endpoint_is_not_a_fallback(pool: Pool) -> None:
    draining = Endpoint("10.0.0.9", 80, ready=False)
    pool.replace(spec(A, draining))
    pool.report("web", A, healthy=False, reason="down")
    pool.report("web", draining, healthy=False, reason="down")
    assert pool.pick("web") is None


def test_exclude_steers_retries_elsewhere(pool: Pool) -> None:
    pool.replace(spec(A, B, C))
    assert picks(pool, exclude={A.key}) == {B.key, C.key}
    assert picks(pool, exclude={A.key, B.key}) == {C.key}
    assert pool.pick("web", exclude={A.key, B.key, C.key}) is None


def test_weighted_strategy_through_the_pool(pool: Pool) -> None:
    heavy = Endpoint("10.0.0.1", 80, weight=3)
    pool.replace(spec(heavy, B, strategy="weighted-round-robin"))
    counts = Counter(pool.pick("web") for _ in range(40))
    assert counts == {heavy: 30, B: 10}


# -- health ----------------------------------------------------------------------------------


def test_passive_failure_removes_at_once_with_one_transition(pool: Pool, heard: Recorder) -> None:
    pool.replace(spec(A, B))
    pool.report_failure("web", A, "connect refused")
    pool.report_failure("web", A, "connect refused")
    assert picks(pool) == {B.key}
    assert heard.events == [HealthTransition("web", A, False, "connect refused", "passive")]


def test_active_report_restores_after_passive_failure(pool: Pool, heard: Recorder) -> None:
    pool.replace(spec(A, B))
    pool.report_failure("web", A, "connect refused")
    pool.report("web", A, healthy=True, reason="GET /healthz -> 200")
    assert picks(pool) == {A.key, B.key}
    assert heard.summary() == [(A.key, False, "passive"), (A.key, True, "active")]


def test_repeated_active_verdicts_are_no_ops(pool: Pool, heard: Recorder) -> None:
    pool.replace(spec(A))
    for _ in range(3):
        pool.report("web", A, healthy=True, reason="ok")
    for _ in range(3):
        pool.report("web", A, healthy=False, reason="GET /healthz -> 503")
    assert heard.events == [HealthTransition("web", A, False, "GET /healthz -> 503", "active")]


def test_reports_for_unknown_endpoints_are_ignored(pool: Pool, heard: Recorder) -> None:
    pool.replace(spec(A))
    pool.report("web", B, healthy=False, reason="late probe")
    pool.report("gone", A, healthy=False, reason="late probe")
    pool.report_failure("web", B, "late")
    pool.report_status("web", B, 503)
    assert heard.events == []
    assert repr(pool) == "<Pool 1 upstreams, 1 endpoints, 1 healthy>"


def test_passive_failure_without_active_checks_returns_after_ejection_time(
    pool: Pool, clock: FakeClock, heard: Recorder
) -> None:
    pool.replace(spec(A, B, health=HealthSpec(enabled=False), outlier=OutlierSpec(0, 10.0)))
    pool.report_failure("web", A, "connect refused")
    clock.now += 9.9
    assert picks(pool) == {B.key}
    clock.now += 0.1
    assert picks(pool) == {A.key, B.key}
    assert heard.summary() == [(A.key, False, "passive"), (A.key, True, "outlier")]


def test_disabling_health_checks_restores_endpoints_they_held_down(
    pool: Pool, heard: Recorder
) -> None:
    pool.replace(spec(A, B))
    pool.report("web", A, healthy=False, reason="GET /healthz -> 503")
    pool.replace(spec(A, B, health=HealthSpec(enabled=False)))
    # Nothing probes A any more, so nothing else would ever bring it back.
    assert picks(pool) == {A.key, B.key}
    assert heard.summary()[-1] == (A.key, True, "active")


# -- outlier ejection ------------------------------------------------------------------------


def outlier_spec(count: int = 3, seconds: float = 30.0) -> UpstreamSpec:
    return spec(A, B, outlier=OutlierSpec(consecutive_5xx=count, ejection_seconds=seconds))


def test_outlier_ejected_after_n_consecutive_5xx_and_back_after_ejection_time(
    pool: Pool, clock: FakeClock, heard: Recorder
) -> None:
    pool.replace(outlier_spec(3, 30.0))
    pool.report_status("web", A, 502)
    pool.report_status("web", A, 503)
    assert pool.is_healthy("web", A)
    pool.report_status("web", A, 500)
    assert picks(pool) == {B.key}
    assert heard.events == [
        HealthTransition("web", A, False, "3 consecutive 5xx responses", "outlier")
    ]
    clock.now += 29.0
    assert picks(pool) == {B.key}
    clock.now += 1.0
    assert picks(pool) == {A.key, B.key}
    assert heard.summary()[-1] == (A.key, True, "outlier")


def test_a_success_resets_the_5xx_count(pool: Pool) -> None:
    pool.replace(outlier_spec(3))
    for status in (500, 500, 200, 500, 500, 404):
        pool.report_status("web", A, status)
    assert pool.is_healthy("web", A)


def test_outlier_detection_off_by_default(pool: Pool) -> None:
    pool.replace(spec(A, B))
    for _ in range(100):
        pool.report_status("web", A, 503)
    assert pool.is_healthy("web", A)


def test_passing_probe_does_not_cut_an_ejection_short(pool: Pool, clock: FakeClock) -> None:
    pool.replace(outlier_spec(1, 30.0))
    pool.report_status("web", A, 503)
    pool.report("web", A, healthy=True, reason="GET /healthz -> 200")
    assert picks(pool) == {B.key}
    clock.now += 30.0
    assert picks(pool) == {A.key, B.key}


def test_ejection_end_does_not_restore_an_actively_failing_endpoint(
    pool: Pool, clock: FakeClock
) -> None:
    pool.replace(outlier_spec(1, 30.0))
    pool.report_status("web", A, 503)
    pool.report("web", A, healthy=False, reason="GET /healthz -> 503")
    clock.now += 31.0
    assert picks(pool) == {B.key}
    pool.report("web", A, healthy=True, reason="GET /healthz -> 200")
    assert picks(pool) == {A.key, B.key}


# -- in-flight and describe ------------------------------------------------------------------


def test_inflight_acquire_release(pool: Pool) -> None:
    pool.replace(spec(A))
    pool.acquire(A)
    pool.acquire(A)
    assert pool.inflight(A) == 2
    pool.release(A)
    assert pool.inflight(A) == 1
    pool.release(A)
    pool.release(A)  # an extra release never goes negative
    assert pool.inflight(A) == 0
    pool.acquire(A)
    assert pool.inflight(A) == 1


def test_least_request_follows_inflight(pool: Pool) -> None:
    pool.replace(spec(A, B, strategy="least-request"))
    pool.acquire(A)
    assert {pool.pick("web") for _ in range(20)} == {B}


def test_describe(pool: Pool) -> None:
    draining = Endpoint("10.0.0.9", 80, weight=2, ready=False)
    pool.replace(spec(A, draining, name="web", strategy="random"))
    pool.replace(spec(B, name="api"))
    pool.report("web", A, healthy=False, reason="down")
    pool.acquire(B)
    assert pool.describe() == [
        {
            "upstream": "api",
            "strategy": "round-robin",
            "endpoints": [
                {"address": B.key, "weight": 1, "ready": True, "healthy": True, "inflight": 1}
            ],
        },
        {
            "upstream": "web",
            "strategy": "random",
            "endpoints": [
                {"address": A.key, "weight": 1, "ready": True, "healthy": False, "inflight": 0},
                {
                    "address": "10.0.0.9:80",
                    "weight": 2,
                    "ready": False,
                    "healthy": True,
                    "inflight": 0,
                },
            ],
        },
    ]
    assert repr(pool) == "<Pool 2 upstreams, 3 endpoints, 2 healthy>"
