"""The listener diff: what set_listeners opens, swaps in place and closes."""

from __future__ import annotations

import pytest

from proxy.listeners import ListenerPlan, ListenerSpec, TlsListenerConfig, plan
from proxy.routing import Route, RouteTable
from proxy.tls.certificate import load_certificate, self_signed
from proxy.tls.store import CertificateSet
from tests.support.tls_certs import NOW

A = RouteTable.build([Route("a")])
B = RouteTable.build([Route("b")])


def tls() -> TlsListenerConfig:
    chain, key = self_signed(now=NOW)
    return TlsListenerConfig(CertificateSet(load_certificate(chain, key, source="t", now=NOW)))


def test_equal_specs_plan_nothing() -> None:
    current = {"x": ListenerSpec("x", 20000, A), "y": ListenerSpec("y", 20001, B)}
    assert plan(current, list(current.values())).empty
    assert plan(
        current, [ListenerSpec("x", 20000, RouteTable.build([Route("a")])), current["y"]]
    ).empty


def test_new_removed_and_changed_listeners() -> None:
    current = {"keep": ListenerSpec("keep", 20000, A), "gone": ListenerSpec("gone", 20001, A)}
    wanted = [ListenerSpec("keep", 20000, B), ListenerSpec("new", 20002, A)]
    assert plan(current, wanted) == ListenerPlan(
        open=(wanted[1],), swap=(wanted[0],), close=("gone",)
    )


@pytest.mark.parametrize(
    "changed",
    [
        ListenerSpec("x", 20001, A),  # another port
        ListenerSpec("x", 20000, A, public_port=8080),  # the handler keeps its public port
    ],
)
def test_a_changed_socket_is_closed_and_opened_again(changed: ListenerSpec) -> None:
    current = {"x": ListenerSpec("x", 20000, A)}
    assert plan(current, [changed]) == ListenerPlan(open=(changed,), close=("x",))


def test_plain_to_https_is_a_new_socket_and_new_certificates_a_swap() -> None:
    config = tls()
    current = {"x": ListenerSpec("x", 20000, A)}
    turned = ListenerSpec("x", 20000, A, tls=config)
    assert plan(current, [turned]) == ListenerPlan(open=(turned,), close=("x",))
    renewed = ListenerSpec("x", 20000, A, tls=tls())
    assert plan({"x": turned}, [renewed]) == ListenerPlan(swap=(renewed,))


def test_duplicate_names_or_fixed_ports_are_refused() -> None:
    with pytest.raises(ValueError, match="named twice"):
        plan({}, [ListenerSpec("x", 1, A), ListenerSpec("x", 2, A)])
    with pytest.raises(ValueError, match="both on port 7"):
        plan({}, [ListenerSpec("x", 7, A), ListenerSpec("y", 7, A)])
    # Ephemeral ports (0) never collide.
    assert len(plan({}, [ListenerSpec("x", 0, A), ListenerSpec("y", 0, A)]).open) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "empty"),
        ({"port": 70000}, "out of range"),
        ({"public_port": 0}, "public port"),
    ],
)
def test_bad_specs(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "x", "port": 1, "routes": A, **kwargs}
    with pytest.raises(ValueError, match=message):
        ListenerSpec(**fields)  # type: ignore[arg-type]
