from controller.annotations import Defaults, ServiceSpec, parse_service
from controller.translate import endpoints_of, translate
from proxy.model import Endpoint
from proxy.routing import Route
from tests.unit.controller.factories import endpoint_json, service, slice_


def spec_for(**kwargs: object) -> ServiceSpec:
    parsed = parse_service(service(**kwargs), Defaults(), mode="ingress")  # type: ignore[arg-type]
    assert parsed.spec is not None
    return parsed.spec


def test_translate_names_upstream_and_route() -> None:
    svc = service(annotations={"host": "shop.example.com", "path-prefix": "/api"})
    spec = spec_for(annotations={"host": "shop.example.com", "path-prefix": "/api"})
    upstream, route = translate(svc, [slice_(endpoints=[endpoint_json("10.0.0.1")])], spec)
    assert upstream.name == "shop/web"
    assert upstream.endpoints == (Endpoint("10.0.0.1", 8080),)
    assert route == Route("shop/web", "shop.example.com", "/api")
    assert (upstream.strategy, upstream.health) == (spec.strategy, spec.health)


def test_merge_slices_dedupe_and_sort() -> None:
    svc = service()
    slices = [
        slice_(name="a", endpoints=[endpoint_json("10.0.0.2"), endpoint_json("10.0.0.10")]),
        slice_(name="b", endpoints=[endpoint_json("10.0.0.2"), endpoint_json("10.0.0.1")]),
    ]
    assert endpoints_of(svc, slices, port_name="http") == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.2", 8080),
        Endpoint("10.0.0.10", 8080),
    )


def test_duplicate_is_ready_if_any_copy_is_ready() -> None:
    slices = [
        slice_(name="a", endpoints=[endpoint_json("10.0.0.1", ready=False, serving=True)]),
        slice_(name="b", endpoints=[endpoint_json("10.0.0.1", ready=True)]),
    ]
    assert endpoints_of(service(), slices, port_name="http") == (Endpoint("10.0.0.1", 8080),)


def test_target_port_resolved_by_name_per_slice() -> None:
    # A rollout renumbered the container port: each slice carries its own number.
    slices = [
        slice_(
            name="old",
            ports=[("http", 8080), ("metrics", 9090)],
            endpoints=[endpoint_json("10.0.0.1")],
        ),
        slice_(
            name="new",
            ports=[("metrics", 9091), ("http", 8081)],
            endpoints=[endpoint_json("10.0.0.2")],
        ),
        slice_(name="other", ports=[("grpc", 5000)], endpoints=[endpoint_json("10.0.0.3")]),
    ]
    assert endpoints_of(service(), slices, port_name="http") == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.2", 8081),
    )
    assert endpoints_of(service(), slices, port_name="metrics") == (
        Endpoint("10.0.0.1", 9090),
        Endpoint("10.0.0.2", 9091),
    )


def test_unnamed_single_port() -> None:
    svc = service(ports=[{"port": 80, "targetPort": 8080}])
    slices = [slice_(ports=[(None, 8080)], endpoints=[endpoint_json("10.0.0.1")])]
    spec = spec_for(ports=[{"port": 80, "targetPort": 8080}])
    assert spec.port.name == ""
    upstream, _ = translate(svc, slices, spec)
    assert upstream.endpoints == (Endpoint("10.0.0.1", 8080),)


def test_ipv6_addresses_are_normalized() -> None:
    svc = service(ip_families=("IPv6",))
    slices = [
        slice_(
            address_type="IPv6", endpoints=[endpoint_json("fd00::0001"), endpoint_json("fd00::1")]
        ),
    ]
    (endpoint,) = endpoints_of(svc, slices, port_name="http")
    assert endpoint == Endpoint("fd00::1", 8080)
    assert endpoint.key == "[fd00::1]:8080"


def test_dual_stack_uses_the_primary_family_only() -> None:
    v4 = slice_(address_type="IPv4", endpoints=[endpoint_json("10.0.0.1")])
    v6 = slice_(address_type="IPv6", endpoints=[endpoint_json("fd00::1")])
    v6_first = service(ip_families=("IPv6", "IPv4"))
    assert endpoints_of(v6_first, [v4, v6], port_name="http") == (Endpoint("fd00::1", 8080),)
    v4_first = service(ip_families=("IPv4", "IPv6"))
    assert endpoints_of(v4_first, [v4, v6], port_name="http") == (Endpoint("10.0.0.1", 8080),)
    # The primary family has no slices (yet): use what there is rather than nothing.
    assert endpoints_of(v6_first, [v4], port_name="http") == (Endpoint("10.0.0.1", 8080),)


def test_fqdn_slices_and_non_ip_addresses_are_skipped() -> None:
    slices = [
        slice_(name="f", address_type="FQDN", endpoints=[endpoint_json("db.example.com")]),
        slice_(name="v", endpoints=[endpoint_json("not-an-ip"), endpoint_json("10.0.0.1")]),
    ]
    assert endpoints_of(service(), slices, port_name="http") == (Endpoint("10.0.0.1", 8080),)


def test_conditions() -> None:
    slices = [
        slice_(
            endpoints=[
                endpoint_json("10.0.0.1", ready=True),
                endpoint_json("10.0.0.2", ready=None),  # nil ready: ready
                endpoint_json("10.0.0.3", ready=False, serving=True, terminating=True),
                endpoint_json("10.0.0.4", ready=False, serving=False, terminating=True),
                endpoint_json("10.0.0.5", ready=False),  # nil serving: same as ready
            ]
        )
    ]
    assert endpoints_of(service(), slices, port_name="http") == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.2", 8080),
        Endpoint("10.0.0.3", 8080, ready=False),
    )


def test_only_the_first_address_of_an_endpoint_counts() -> None:
    slices = [slice_(endpoints=[endpoint_json("10.0.0.1", "10.0.0.9")])]
    assert endpoints_of(service(), slices, port_name="http") == (Endpoint("10.0.0.1", 8080),)


def test_same_input_gives_equal_output() -> None:
    slices = [slice_(endpoints=[endpoint_json("10.0.0.2"), endpoint_json("10.0.0.1")])]
    spec = spec_for()
    assert translate(service(), slices, spec) == translate(service(), list(reversed(slices)), spec)
