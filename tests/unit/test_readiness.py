"""Readiness: all conditions true and not draining."""

from __future__ import annotations

from proxy.readiness import Readiness


def test_ready_with_no_conditions() -> None:
    readiness = Readiness()

    assert readiness.ready
    assert readiness.reasons() == {}


def test_ready_only_when_every_condition_holds() -> None:
    readiness = Readiness()
    readiness.set("routes_loaded", True)
    readiness.set("listener_bound", False)
    assert not readiness.ready
    assert readiness.reasons() == {"routes_loaded": True, "listener_bound": False}

    readiness.set("listener_bound", True)
    assert readiness.ready


def test_a_condition_can_turn_false_again() -> None:
    readiness = Readiness()
    readiness.set("routes_loaded", True)
    readiness.set("routes_loaded", False)

    assert not readiness.ready


def test_draining_is_not_ready_and_stays() -> None:
    readiness = Readiness()
    readiness.set("routes_loaded", True)
    readiness.start_draining()
    readiness.set("routes_loaded", True)

    assert readiness.draining
    assert not readiness.ready
    assert "draining" in repr(readiness)


def test_reasons_is_a_copy() -> None:
    readiness = Readiness()
    readiness.reasons()["injected"] = False

    assert readiness.ready
