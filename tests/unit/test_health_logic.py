"""The pure parts of the health checker: threshold counting and the reconcile plan."""

from __future__ import annotations

import pytest

from proxy.health import ProbeStreak, ProbeTarget, desired_targets, plan
from proxy.model import Endpoint, HealthSpec, UpstreamSpec

A = Endpoint("10.0.0.1", 80)
B = Endpoint("10.0.0.2", 80)


def verdicts(results: str, spec: HealthSpec) -> list[bool | None]:
    """Feed `results` ('+' pass, '-' fail) and collect the verdict after each probe."""
    streak = ProbeStreak()
    out = []
    for result in results:
        streak = streak.record(result == "+")
        out.append(streak.verdict(spec))
    return out


def test_thresholds_of_one_follow_every_probe() -> None:
    assert verdicts("+-+", HealthSpec()) == [True, False, True]


def test_thresholds_two_up_three_down() -> None:
    spec = HealthSpec(healthy_threshold=2, unhealthy_threshold=3)
    assert verdicts("++---+-++", spec) == [
        None,
        True,
        None,
        None,
        False,
        None,
        None,
        None,
        True,
    ]


def test_verdict_repeats_while_the_streak_lasts() -> None:
    # Level-triggered: the sink hears "healthy" after every passing probe past the threshold,
    # which is what brings back an endpoint a passive failure took out.
    spec = HealthSpec(healthy_threshold=2)
    assert verdicts("++++", spec) == [None, True, True, True]


def test_a_single_opposite_result_breaks_the_streak() -> None:
    streak = ProbeStreak().record(False).record(False).record(True)
    assert streak == ProbeStreak(successes=1, failures=0)


@pytest.mark.parametrize(
    ("statuses", "status", "accepted"),
    [
        (((200, 299),), 204, True),
        (((200, 299),), 503, False),
        (((200, 299), (418, 418)), 418, True),
        (((204, 204),), 200, False),
    ],
)
def test_expected_statuses(
    statuses: tuple[tuple[int, int], ...], status: int, accepted: bool
) -> None:
    assert HealthSpec(expected_statuses=statuses).accepts(status) is accepted


def upstream(name: str, *endpoints: Endpoint, health: HealthSpec | None = None) -> UpstreamSpec:
    return UpstreamSpec(name, endpoints, health=health or HealthSpec())


def test_desired_targets_skip_disabled_upstreams() -> None:
    specs = {
        "web": upstream("web", A, B),
        "static": upstream("static", A, health=HealthSpec(enabled=False)),
    }
    assert set(desired_targets(specs)) == {("web", A.key), ("web", B.key)}
    assert desired_targets(specs)[("web", A.key)].url == "http://10.0.0.1:80/healthz"


def test_plan_starts_new_and_stops_removed() -> None:
    running = desired_targets({"web": upstream("web", A)})
    start, stop = plan(running, desired_targets({"web": upstream("web", B)}))
    assert [t.endpoint for t in start] == [B]
    assert stop == [("web", A.key)]


def test_plan_is_empty_when_nothing_changed() -> None:
    targets = desired_targets({"web": upstream("web", A, B)})
    assert plan(targets, dict(targets)) == ([], [])


def test_plan_restarts_a_target_whose_health_spec_changed() -> None:
    running = desired_targets({"web": upstream("web", A, B)})
    changed = upstream("web", A, B, health=HealthSpec(path="/ready"))
    start, stop = plan(running, desired_targets({"web": changed}))
    assert sorted(stop) == [("web", A.key), ("web", B.key)]
    assert {t.health.path for t in start} == {"/ready"}


def test_plan_keeps_a_target_whose_weight_changed() -> None:
    running = desired_targets({"web": upstream("web", A)})
    heavier = Endpoint("10.0.0.1", 80, weight=5, ready=False)
    assert plan(running, desired_targets({"web": upstream("web", heavier)})) == ([], [])


def test_same_endpoint_in_two_upstreams_is_two_targets() -> None:
    specs = {"a": upstream("a", A), "b": upstream("b", A, health=HealthSpec(path="/x"))}
    targets = desired_targets(specs)
    assert targets == {
        ("a", A.key): ProbeTarget("a", A, HealthSpec()),
        ("b", A.key): ProbeTarget("b", A, HealthSpec(path="/x")),
    }
