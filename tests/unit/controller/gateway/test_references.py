"""References and the reasons each invalid one reports: backendRefs (kind, namespace with or
without a ReferenceGrant, existence, port) on the route's ResolvedRefs, and certificateRefs
(kind, namespace and grant, missing or broken Secrets) on the listener's ResolvedRefs; what
the data plane is given for each (500 shares, no socket)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.gateway.state import build, wanted_secrets
from tests.unit.controller.gateway.builders import (
    INFRA,
    backend,
    certificate,
    gateway,
    grant,
    inputs,
    listener,
    route,
    rule,
    svc,
)
from tests.unit.controller.gateway.routing import (
    condition,
    gateway_condition,
    listener_condition,
    listener_status,
    matched,
    spec_for,
)

WEB = f"{INFRA}/web:8080"
REMOTE = "backends/web:8080"


def _route_with(*backends: dict[str, Any]) -> dict[str, Any]:
    return route(rules=[rule(backends=list(backends))])


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        (backend("web", group="example.com", kind="Widget"), "InvalidKind"),
        (backend("web", group="", kind="ConfigMap"), "InvalidKind"),
        (backend("missing"), "BackendNotFound"),
        (backend("web", port=9999), "BackendNotFound"),
        (backend("web", port=None), "BackendNotFound"),
        (backend("web", namespace="backends"), "RefNotPermitted"),
    ],
)
def test_an_invalid_backend_ref_gives_its_reason_and_a_500_share(
    ref: dict[str, Any], reason: str
) -> None:
    state = build(
        inputs(
            gateways=[gateway()],
            routes=[_route_with(ref)],
            services=[svc("web"), svc("web", "backends")],
        )
    )
    assert condition(state, "route", "ResolvedRefs") == ("False", reason)
    assert condition(state, "route", "Accepted") == ("True", "Accepted")
    found = matched(state, "x", "/")
    assert found is not None and [b.upstream for b in found.backends] == [None]
    assert state.backends == frozenset()


def test_a_reference_grant_permits_a_backend_in_its_namespace() -> None:
    def resolved(*grants: dict[str, Any]) -> tuple[str, str]:
        state = build(
            inputs(
                gateways=[gateway()],
                routes=[_route_with(backend("web", namespace="backends"))],
                services=[svc("web", "backends")],
                grants=grants,
            )
        )
        return condition(state, "route", "ResolvedRefs")

    assert resolved(grant()) == ("True", "ResolvedRefs")
    assert resolved(grant(to_name="web")) == ("True", "ResolvedRefs")
    # Grants that do not cover it: another Service, another kind, another source namespace,
    # a grant from Gateways, a grant in the route's own namespace.
    for wrong in (
        grant(to_name="other"),
        grant(to_kind="Secret"),
        grant(from_namespace="apps"),
        grant(from_kind="Gateway"),
        grant(namespace=INFRA),
    ):
        assert resolved(wrong) == ("False", "RefNotPermitted"), wrong


def test_a_partially_invalid_route_keeps_serving_its_valid_rules() -> None:
    rules = [
        rule(path="/", backends=[backend("web")]),
        rule(path="/v2", backends=[backend("web", namespace="backends")]),
    ]
    state = build(
        inputs(
            gateways=[gateway()],
            routes=[route(rules=rules)],
            services=[svc("web"), svc("web", "backends")],
        )
    )
    assert condition(state, "route", "ResolvedRefs") == ("False", "RefNotPermitted")
    valid = matched(state, "x", "/")
    invalid = matched(state, "x", "/v2")
    assert valid is not None and [b.upstream for b in valid.backends] == [WEB]
    assert invalid is not None and [b.upstream for b in invalid.backends] == [None]


def _https(*refs: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return gateway(listeners=[listener("https", 443, "HTTPS", certificates=refs)], **kwargs)


def _secret(name: str = "tls", **extra: Any) -> dict[str, Any]:
    return {"group": "", "kind": "Secret", "name": name, **extra}


@pytest.mark.parametrize(
    ("ref", "secrets", "reason"),
    [
        (_secret("missing"), {}, "InvalidCertificateRef"),
        (_secret(group="example.com"), {}, "InvalidCertificateRef"),
        (_secret(kind="ConfigMap"), {}, "InvalidCertificateRef"),
        (_secret(), {(INFRA, "tls"): "tls.crt is not PEM"}, "InvalidCertificateRef"),
        (_secret(namespace="certs"), {}, "RefNotPermitted"),
    ],
)
def test_an_invalid_certificate_ref_gives_its_reason_and_no_socket(
    ref: dict[str, Any], secrets: dict[tuple[str, str], Any], reason: str
) -> None:
    state = build(
        inputs(
            gateways=[_https(ref)],
            routes=[route()],
            tls_secrets=secrets,
            addresses={(INFRA, "gw"): "10.0.0.1"},
        )
    )
    assert listener_condition(state, "https", "ResolvedRefs") == ("False", reason)
    assert listener_condition(state, "https", "Programmed")[0] == "False"
    assert listener_status(state, "https")["attachedRoutes"] == 1  # as the suite checks
    assert state.listeners == ()
    # Accepted with the listener called out; not programmed, nothing to serve.
    assert gateway_condition(state, "Accepted") == ("True", "ListenersNotValid")
    assert gateway_condition(state, "Programmed") == ("False", "Invalid")


def test_a_cross_namespace_certificate_needs_a_grant_from_gateways() -> None:
    ref = _secret(namespace="certs")
    secrets = {("certs", "tls"): certificate()}
    for grants, expected in [
        ([grant(namespace="certs", from_kind="Gateway", to_kind="Secret")], "True"),
        ([grant(namespace="certs", from_kind="Gateway", to_kind="Secret", to_name="tls")], "True"),
        ([grant(namespace="certs", from_kind="Gateway", to_kind="Secret", to_name="x")], "False"),
        ([grant(namespace="certs", from_kind="HTTPRoute", to_kind="Secret")], "False"),
        ([grant(namespace="certs", from_kind="Gateway", to_kind="Service")], "False"),
    ]:
        state = build(inputs(gateways=[_https(ref)], tls_secrets=secrets, grants=grants))
        assert listener_condition(state, "https", "ResolvedRefs")[0] == expected, grants
        assert (("certs", "tls") in state.secrets) is (expected == "True")
        # Known before any Secret is: the plumbing watches them before the first build.
        assert wanted_secrets(inputs(gateways=[_https(ref)], grants=grants)) == state.secrets


def test_an_https_listener_serves_its_certificate_by_sni() -> None:
    gw = gateway(
        listeners=[
            listener("a", 443, "HTTPS", hostname="a.example.com", certificates=[_secret("a")]),
            listener("any", 443, "HTTPS", certificates=[_secret("any")]),
        ]
    )
    secrets = {(INFRA, "a"): certificate("a.example.com"), (INFRA, "any"): certificate()}
    state = build(
        inputs(gateways=[gw], routes=[route()], tls_secrets=secrets, bound_ports=frozenset())
    )
    spec = spec_for(state, port=443)
    assert spec.tls is not None and spec.public_port == 443
    assert spec.tls.certificates.select("a.example.com") is certificate("a.example.com")
    assert spec.tls.certificates.select("b.example.com") is certificate()
    assert spec.tls.certificates.select(None) is certificate()
    assert listener_condition(state, "a", "ResolvedRefs") == ("True", "ResolvedRefs")
    assert state.secrets == frozenset({(INFRA, "a"), (INFRA, "any")})
