"""The health checker's pure decisions beyond thresholds: which upstreams are probed, and the
reason a failed connect is reported with (it ends up in logs and in /backends)."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import pytest

from proxy.health import connect_failure, desired_targets
from proxy.model import Endpoint, HealthSpec, UpstreamSpec

A = Endpoint("10.0.0.1", 80)
B = Endpoint("10.0.0.2", 80)


def test_a_disabled_upstream_does_not_stop_the_ones_after_it() -> None:
    specs = {
        "static": UpstreamSpec("static", (A,), health=HealthSpec(enabled=False)),
        "web": UpstreamSpec("web", (A, B)),
    }
    assert set(desired_targets(specs)) == {("web", A.key), ("web", B.key)}


def connector_error(os_error: OSError) -> aiohttp.ClientConnectorError:
    key = SimpleNamespace(host="10.0.0.1", port=80, ssl=False)
    return aiohttp.ClientConnectorError(key, os_error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("os_error", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connect refused"),
        (OSError(113, "No route to host"), "connect failed: No route to host"),
        (OSError(), "connect failed: OSError"),
        (TimeoutError(), "connect failed: TimeoutError"),
    ],
)
def test_connect_failure_reason(os_error: OSError, reason: str) -> None:
    assert connect_failure(connector_error(os_error)) == reason
