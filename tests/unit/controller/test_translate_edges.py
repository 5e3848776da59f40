"""Translation edges: every spec field reaches the data plane, duplicates keep the ready copy
whichever slice comes first, and the port and endpoint filters drop only what they must."""

from __future__ import annotations

import dataclasses

import pytest

from controller.annotations import Defaults, ServiceSpec, parse_service
from controller.translate import endpoints_of, parse_address, slice_endpoints, translate
from proxy.model import Endpoint, HashOn, HealthSpec, OutlierSpec, UpstreamSpec
from tests.unit.controller.factories import endpoint_json, service, slice_


def spec_for(**annotations: str) -> ServiceSpec:
    parsed = parse_service(service(annotations=annotations), Defaults(), mode="ingress")
    assert parsed.spec is not None
    return parsed.spec


def test_every_field_of_the_spec_reaches_the_upstream() -> None:
    spec = dataclasses.replace(
        spec_for(strategy="consistent-hash", **{"hash-on": "header:X-User"}),
        health=HealthSpec(path="/ready", interval_seconds=3.0, healthy_threshold=2),
        outlier=OutlierSpec(consecutive_5xx=4, ejection_seconds=12.0),
    )
    upstream, _ = translate(service(), [slice_(endpoints=[endpoint_json("10.0.0.1")])], spec)
    assert upstream == UpstreamSpec(
        name="shop/web",
        endpoints=(Endpoint("10.0.0.1", 8080),),
        strategy="consistent-hash",
        hash_on=HashOn("header", "X-User"),
        health=HealthSpec(path="/ready", interval_seconds=3.0, healthy_threshold=2),
        outlier=OutlierSpec(consecutive_5xx=4, ejection_seconds=12.0),
    )


def test_a_ready_copy_is_not_replaced_by_a_later_unready_one() -> None:
    slices = [
        slice_(name="a", endpoints=[endpoint_json("10.0.0.1", ready=True)]),
        slice_(name="b", endpoints=[endpoint_json("10.0.0.1", ready=False, serving=True)]),
    ]
    assert endpoints_of(service(), slices, port_name="http") == (Endpoint("10.0.0.1", 8080),)


@pytest.mark.parametrize(("port", "kept"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_target_port_must_be_a_tcp_port_number(port: int, kept: bool) -> None:
    entries = slice_endpoints(
        slice_(ports=[("http", port)], endpoints=[endpoint_json("10.0.0.1")]), "http"
    )
    assert [endpoint for _, endpoint in entries] == ([Endpoint("10.0.0.1", port)] if kept else [])


def test_a_skipped_endpoint_does_not_hide_the_ones_after_it() -> None:
    slice_with_gaps = slice_(
        endpoints=[
            endpoint_json(),  # no address
            endpoint_json("10.0.0.1", ready=False, serving=False),  # neither ready nor serving
            endpoint_json("db.internal"),  # not an IP address
            endpoint_json("10.0.0.2"),
        ]
    )
    entries = slice_endpoints(slice_with_gaps, "http")
    assert [endpoint for _, endpoint in entries] == [Endpoint("10.0.0.2", 8080)]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("10.0.0.1", (4, 0x0A000001, "10.0.0.1")),
        ("0.0.0.0", (4, 0, "0.0.0.0")),
        ("255.255.255.255", (4, 0xFFFFFFFF, "255.255.255.255")),
        ("fd00::0001", (6, 0xFD00 << 112 | 1, "fd00::1")),
        # Leading zeros are refused, as ipaddress does (they once meant octal).
        ("010.0.0.0", None),
        ("10.0.0.01", None),
        ("256.0.0.1", None),
        ("10.0.0", None),
        ("db.internal", None),
    ],
)
def test_parse_address_gives_ipaddress_verdicts(
    text: str, parsed: tuple[int, int, str] | None
) -> None:
    assert parse_address(text) == parsed
