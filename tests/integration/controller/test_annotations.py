"""Every kind of invalid annotation produces a Warning Event on the Service (reason
InvalidAnnotation, naming the annotation and the value) and one JSON log line."""

from __future__ import annotations

import logging

import pytest
from kubernetes_asyncio import client

from controller.annotation_table import ANNOTATIONS
from controller.app import ControllerOptions
from tests.integration.controller.conftest import StartController
from tests.integration.controller.support import create_service
from tests.kube.wait import eventually
from tests.support.ports import free_port

pytestmark = [pytest.mark.kube, pytest.mark.integration]

# One invalid value per annotation of the table, plus an unknown (typo) one.
INVALID = {
    "kubeferry.io/enabled": "yes-please",
    "kubeferry.io/port": "no-such-port",
    "kubeferry.io/host": "bad_host!",
    "kubeferry.io/path-prefix": "no-leading-slash",
    "kubeferry.io/strategy": "fastest",
    "kubeferry.io/hash-on": "sometimes",
    "kubeferry.io/health-path": "healthz",
    "kubeferry.io/health-interval": "forever",
    "kubeferry.io/health-timeout": "-1s",
    "kubeferry.io/healthy-threshold": "0",
    "kubeferry.io/unhealthy-threshold": "1000",
    "kubeferry.io/tls-secret": "Not_A_Secret_Name",
    "kubeferry.io/ssl-redirect": "always",
    "kubeferry.io/hsts": "one-year",
    "kubeferry.io/strategyy": "round-robin",
}


def test_every_annotation_of_the_table_has_an_invalid_case() -> None:
    assert {doc.key for doc in ANNOTATIONS} <= set(INVALID)


@pytest.mark.timeout(180)
async def test_each_invalid_annotation_gets_an_event_and_a_log_line(
    kube_api: client.ApiClient,
    kube_namespace: str,
    start_controller: StartController,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.controller")
    ns = kube_namespace
    names = {}
    for i, (key, value) in enumerate(sorted(INVALID.items())):
        name = f"bad-{i}"
        names[key] = name
        annotations = {"kubeferry.io/enabled": "true", "kubeferry.io/host": f"{name}.test"}
        annotations[key] = value
        if key == "kubeferry.io/hash-on":
            annotations["kubeferry.io/strategy"] = "consistent-hash"
        await create_service(kube_api, ns, name, app=name, annotations=annotations)
    # HTTPS on, so the TLS annotations are checked for their values.
    await start_controller(
        ControllerOptions("ingress", namespaces=(ns,)),
        settings={"tls_port": free_port(), "tls": {"enabled": True}},
    )
    core = client.CoreV1Api(kube_api)

    async def all_reported() -> None:
        events = (await core.list_namespaced_event(ns)).items
        lines = [
            r.__dict__ for r in caplog.records if r.__dict__.get("event") == "invalid_annotation"
        ]
        missing = []
        for key, name in names.items():
            value = INVALID[key]
            event = [
                e
                for e in events
                if e.involved_object.name == name
                and e.reason == "InvalidAnnotation"
                and e.type == "Warning"
                and key in (e.message or "")
                and value in (e.message or "")
            ]
            line = [
                r
                for r in lines
                if r["service"] == name and r["annotation"] == key and r["value"] == value
            ]
            if not event or not line:
                missing.append((key, bool(event), bool(line)))
        assert missing == []

    await eventually(all_reported, timeout_seconds=60)
