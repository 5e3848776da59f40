"""Pool behaviour across a snapshot change and at the edges of outlier ejection: state that
must survive a replace(), answers about upstreams that are gone, and the reasons reported."""

from __future__ import annotations

from proxy.model import Endpoint, HealthSpec, OutlierSpec, UpstreamSpec
from proxy.pool import HealthTransition, Pool, PoolChange

A = Endpoint("10.0.0.1", 80)
B = Endpoint("10.0.0.2", 80)
C = Endpoint("10.0.0.3", 80)
NO_PROBES = HealthSpec(enabled=False)
PROBES = HealthSpec()
EJECT_ON_ONE = OutlierSpec(consecutive_5xx=1, ejection_seconds=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def picks(pool: Pool, name: str = "web", count: int = 30) -> set[Endpoint | None]:
    return {pool.pick(name) for _ in range(count)}


def test_a_pool_without_an_injected_rng_still_balances_at_random() -> None:
    pool = Pool()
    pool.replace(UpstreamSpec("web", (A, B), strategy="random"))
    assert picks(pool, count=100) == {A, B}


def test_replacing_with_the_same_spec_changes_nothing_and_says_so() -> None:
    pool = Pool()
    spec = UpstreamSpec("web", (A, B))
    pool.replace(spec)
    assert pool.replace(UpstreamSpec("web", (A, B))) == PoolChange("web")
    assert pool.remove("gone") == PoolChange("gone")


def test_an_ejection_outlives_a_spec_change_and_ends_on_time() -> None:
    for health in (NO_PROBES, PROBES):
        clock = Clock()
        pool = Pool(clock=clock)
        pool.replace(UpstreamSpec("web", (A, B), health=health, outlier=EJECT_ON_ONE))
        pool.report_status("web", A, 503)
        assert picks(pool) == {B}
        # B's weight changes: a new snapshot, A's ejection must carry over.
        pool.replace(
            UpstreamSpec(
                "web", (A, Endpoint("10.0.0.2", 80, weight=2)), health=health, outlier=EJECT_ON_ONE
            )
        )
        assert A not in picks(pool), health
        clock.now += 31
        assert A in picks(pool), health


def test_consecutive_5xx_keep_counting_across_a_spec_change() -> None:
    outlier = OutlierSpec(consecutive_5xx=3, ejection_seconds=30.0)
    pool = Pool(clock=Clock())
    pool.replace(UpstreamSpec("web", (A, B), outlier=outlier))
    pool.report_status("web", A, 502)
    pool.report_status("web", A, 502)
    pool.replace(UpstreamSpec("web", (A, B, C), outlier=outlier))
    pool.report_status("web", A, 502)
    assert A not in picks(pool)


def test_a_success_resets_the_5xx_count_even_before_any_failure() -> None:
    outlier = OutlierSpec(consecutive_5xx=2, ejection_seconds=30.0)
    pool = Pool(clock=Clock())
    pool.replace(UpstreamSpec("web", (A, B), outlier=outlier))
    pool.report_status("web", A, 200)  # nothing counted yet: nothing to reset
    pool.report_status("web", A, 500)
    pool.report_status("web", A, 200)
    pool.report_status("web", A, 500)
    assert A in picks(pool)


def test_reports_about_an_unknown_upstream_change_nothing() -> None:
    pool = Pool()
    pool.replace(UpstreamSpec("web", (A,)))
    pool.report_status("gone", A, 503)
    pool.report_failure("gone", A, "connect refused")
    pool.report("gone", A, healthy=False, reason="probe failed")
    assert picks(pool) == {A}


def test_an_endpoint_back_on_probes_returns_when_its_ejection_ends() -> None:
    clock = Clock()
    pool = Pool(clock=clock)
    pool.replace(UpstreamSpec("web", (A, B), health=PROBES, outlier=EJECT_ON_ONE))
    pool.report("web", A, healthy=False, reason="GET /healthz -> 500")
    pool.report_status("web", A, 503)  # counted, but A is already out
    pool.report("web", A, healthy=True, reason="GET /healthz -> 200")
    assert A in picks(pool)
    pool.report_status("web", A, 503)
    pool.report("web", A, healthy=False, reason="GET /healthz -> 500")
    pool.report("web", A, healthy=True, reason="GET /healthz -> 200")
    assert A not in picks(pool), "an outlier stays out for its ejection time"
    clock.now += 31
    assert A in picks(pool), "the passing probe cleared the hold; the ejection is over"


def test_transition_reasons_for_ejection_end_and_probes_turned_off() -> None:
    heard: list[HealthTransition] = []
    clock = Clock()
    pool = Pool(clock=clock, on_transition=heard.append)
    pool.replace(UpstreamSpec("web", (A, B), health=NO_PROBES, outlier=EJECT_ON_ONE))
    pool.report_status("web", A, 503)
    clock.now += 31
    pool.pick("web")
    pool.replace(UpstreamSpec("web", (A, B), health=PROBES, outlier=EJECT_ON_ONE))
    pool.report("web", B, healthy=False, reason="GET /healthz -> 500")
    pool.replace(UpstreamSpec("web", (A, B), health=NO_PROBES, outlier=EJECT_ON_ONE))
    assert [(t.endpoint, t.healthy, t.reason, t.source) for t in heard] == [
        (A, False, "1 consecutive 5xx responses", "outlier"),
        (A, True, "ejection time over", "outlier"),
        (B, False, "GET /healthz -> 500", "active"),
        (B, True, "health checks disabled", "active"),
    ]


def test_after_an_ejection_the_5xx_count_starts_again() -> None:
    clock = Clock()
    outlier = OutlierSpec(consecutive_5xx=2, ejection_seconds=30.0)
    pool = Pool(clock=clock)
    pool.replace(UpstreamSpec("web", (A, B), health=NO_PROBES, outlier=outlier))
    pool.report_status("web", A, 503)
    pool.report_status("web", A, 503)
    assert A not in picks(pool)
    clock.now += 31
    assert A in picks(pool)
    pool.report_status("web", A, 503)  # one failure after coming back: not yet ejected
    assert A in picks(pool)
    pool.report_status("web", A, 503)
    assert A not in picks(pool)
