"""The --gateway-* flags of `kubeferry controller`: parsed into GatewayOptions, or a usage
error naming the flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller.app import ControllerOptions, GatewayOptions
from controller.cli import UsageError, _check_gateway_ports, add_arguments, parse_options
from proxy.settings import load_settings

SELECTOR = ("--gateway-service-selector", "app.kubernetes.io/name=kubeferry,tier=edge")


def parse(*argv: str, environ: dict[str, str] | None = None) -> ControllerOptions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parse_options(
        parser.parse_args(argv), environ=environ or {}, account_dir=Path("/nonexistent")
    )


def test_gateway_api_is_off_by_default() -> None:
    assert parse().gateway is None


def test_gateway_api_defaults_and_own_namespace() -> None:
    options = parse("--gateway-api", *SELECTOR, environ={"POD_NAMESPACE": "edge"})
    assert options.gateway == GatewayOptions(
        controller_name="kubeferry.io/gateway-controller",
        service_namespace="edge",
        service_selector=(("app.kubernetes.io/name", "kubeferry"), ("tier", "edge")),
        port_range=(20000, 29999),
    )


def test_gateway_service_namespace_falls_back_to_the_one_watched_namespace() -> None:
    gateway = parse("--gateway-api", *SELECTOR, "--namespace", "shop").gateway
    assert gateway is not None and gateway.service_namespace == "shop"
    gateway = parse("--gateway-api", *SELECTOR, "--namespace", "a,b").gateway
    assert gateway is not None and gateway.service_namespace == "default"


def test_gateway_flags_are_parsed() -> None:
    gateway = parse(
        "--gateway-api",
        *SELECTOR,
        "--gateway-controller-name",
        "example.com/gw",
        "--gateway-port-range",
        "30000-30009",
    ).gateway
    assert gateway is not None
    assert gateway.controller_name == "example.com/gw"
    assert gateway.port_range == (30000, 30009)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--gateway-controller-name", "x.io/y"), "--gateway-controller-name needs --gateway-api"),
        (("--gateway-api",), "needs --gateway-service-selector"),
        (("--gateway-api", *SELECTOR, "--gateway-controller-name", "nodomain"), "domain-prefixed"),
        (("--gateway-api", "--gateway-service-selector", "app"), "expected KEY=VALUE"),
        (("--gateway-api", "--gateway-service-selector", "a=b,a=c"), "given twice"),
        (("--gateway-api", "--gateway-service-selector", "Bad_/x=y"), "not a DNS subdomain"),
        (("--gateway-api", "--gateway-service-selector", "app=no pe"), "not a label value"),
        (("--gateway-api", *SELECTOR, "--gateway-port-range", "20000"), "expected FIRST-LAST"),
        (("--gateway-api", *SELECTOR, "--gateway-port-range", "3-2"), "the first not above"),
        (("--gateway-api", *SELECTOR, "--gateway-port-range", "1-70000"), "1-65535"),
        (("--gateway-api", *SELECTOR, "--upstream", "web=3001"), "for ingress mode"),
    ],
)
def test_bad_gateway_flags_are_usage_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*argv)


def test_the_port_range_must_not_hold_the_controllers_own_ports() -> None:
    options = parse("--gateway-api", *SELECTOR, "--gateway-port-range", "2000-3999")
    with pytest.raises(UsageError, match="contains port 3000"):
        _check_gateway_ports(options, load_settings(overrides={}))
    _check_gateway_ports(options, load_settings(overrides={"port": 8080, "admin_port": 9000}))
