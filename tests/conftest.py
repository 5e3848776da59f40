"""Shared pytest setup. The real-control-plane fixtures live in tests/kube and are loaded here
so the controller's integration tests and the end-to-end tests can both use them.

A Docker engine that the image and kind tests had to start (none answered when the session
began) is stopped when the session ends, so a test run leaves no daemon of its own behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["tests.kube.fixtures"]

_ENGINE = Path(__file__).resolve().parents[1] / "hack" / "docker-engine.sh"
_engine_was_running = False


def _dockerd_running() -> bool:
    return (
        subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, check=False).returncode == 0
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    global _engine_was_running
    _engine_was_running = _dockerd_running()
    # Inherited by the hack/ scripts the tests run: a dockerd they start is marked as this
    # session's, so the stop below never ends one that another run (another session, a
    # make conformance) started while this session ran.
    os.environ.setdefault("KUBEFERRY_ENGINE_OWNER", f"pytest-{os.getpid()}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # KEEP_CLUSTER=1 keeps the kind cluster, whose node is a container of that engine.
    if os.environ.get("KEEP_CLUSTER") == "1":
        return
    if not _engine_was_running and _dockerd_running():
        subprocess.run([str(_ENGINE), "stop"], check=False, timeout=60)
