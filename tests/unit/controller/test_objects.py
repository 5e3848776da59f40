from controller.objects import ServiceInfo, SliceInfo
from tests.unit.controller.factories import endpoint_json, service_json


def test_service_keeps_only_kubeferry_annotations_sorted() -> None:
    raw = service_json(
        annotations={"kubeferry.io/port": "http", "other/x": "y", "kubeferry.io/host": "a.b"}
    )
    info = ServiceInfo.from_api(raw)
    assert info.annotations == (("kubeferry.io/host", "a.b"), ("kubeferry.io/port", "http"))
    assert info.key == ("shop", "web")
    assert info.annotation("port") == "http"
    assert info.annotation("strategy") is None
    assert info.created == "2024-05-01T10:00:00Z"


def test_service_ports_default_target_port_and_name() -> None:
    raw = service_json(ports=[{"port": 80}, {"name": "m", "port": 9090, "targetPort": "metrics"}])
    first, second = ServiceInfo.from_api(raw).ports
    assert (first.name, first.port, first.target_port, first.protocol) == ("", 80, 80, "TCP")
    assert (second.name, second.target_port) == ("m", "metrics")


def test_malformed_objects_do_not_raise() -> None:
    assert ServiceInfo.from_api({}).ports == ()
    info = SliceInfo.from_api({"metadata": None, "ports": [{"name": "x"}], "endpoints": None})
    assert (info.service, info.ports, info.endpoints) == ("", (), ())


def test_slice_conditions_nil_semantics() -> None:
    raw = {
        "metadata": {"name": "s", "namespace": "n", "labels": {}},
        "addressType": "IPv4",
        "endpoints": [
            endpoint_json("10.0.0.1", ready=None),
            endpoint_json("10.0.0.2", ready=False),
            endpoint_json("10.0.0.3", ready=False, serving=True, terminating=True),
        ],
    }
    a, b, c = SliceInfo.from_api(raw).endpoints
    assert (a.ready, a.serving, a.terminating) == (True, True, False)  # nil ready: ready
    assert (b.ready, b.serving) == (False, False)  # nil serving: same as ready
    assert (c.ready, c.serving, c.terminating) == (False, True, True)
