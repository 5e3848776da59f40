"""Fixtures of the controller's integration tests: an in-process controller (the same
`Controller` that `kubeferry controller` runs) against the session's real control plane, and an
HTTP session for requests through its loopback listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import aiohttp
import pytest
from kubernetes_asyncio import client

from controller.app import Controller, ControllerOptions
from controller.watch import WatchTiming
from proxy.settings import load_settings
from tests.integration.controller import gateway_support as gw
from tests.integration.controller.support import TEST_WATCH_TIMING
from tests.support.ports import free_port


class StartController(Protocol):
    def __call__(
        self,
        options: ControllerOptions,
        *,
        api: client.ApiClient | None = None,
        settings: dict[str, Any] | None = None,
        timing: WatchTiming = TEST_WATCH_TIMING,
        wait_synced: bool = True,
    ) -> Awaitable[Controller]: ...


@pytest.fixture
async def start_controller(kube_api: client.ApiClient) -> AsyncIterator[StartController]:
    """`await start_controller(ControllerOptions(...))`: a started controller on loopback
    ports, synced; stopped after the test."""
    started: list[Controller] = []

    async def start(
        options: ControllerOptions,
        *,
        api: client.ApiClient | None = None,
        settings: dict[str, Any] | None = None,
        timing: WatchTiming = TEST_WATCH_TIMING,
        wait_synced: bool = True,
    ) -> Controller:
        overrides: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": free_port(),
            "admin_port": 0,  # off: the tests read the metrics registry in process
            # The stand-in pods are ours (network namespaces this session made): probing
            # them is allowed, and fast probes keep the tests short.
            "health": {"interval_seconds": 0.5, "timeout_seconds": 0.5},
            # A deleted pod's address answers nothing (its network is gone): each attempt on it
            # waits out the connect timeout. With the default 3 s, a request that tries two
            # vanished pods before the live one needs ~9 s, too close to the test client's
            # 10 s; pods on the local bridge connect in well under a millisecond.
            "timeouts": {"connect_seconds": 1.0},
            **(settings or {}),
        }
        controller = Controller(
            load_settings(overrides=overrides),
            options,
            api_client=api or kube_api,
            watch_timing=timing,
        )
        await controller.start()
        started.append(controller)
        if wait_synced:
            await asyncio.wait_for(controller.wait_synced(), 30)
        return controller

    yield start
    for controller in reversed(started):
        await controller.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10)
    # trust_env=False: never route loopback requests through an environment proxy.
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        yield session


@pytest.fixture
async def gateway_class(kube_api: client.ApiClient, kube_namespace: str) -> AsyncIterator[str]:
    """The CRDs installed and a GatewayClass of ours, named after the test's namespace."""
    await gw.install_crds(kube_api)
    name = f"class-{kube_namespace}"
    await gw.create(
        kube_api,
        "GatewayClass",
        {"metadata": {"name": name}, "spec": {"controllerName": gw.CONTROLLER_NAME}},
    )
    yield name
    await gw.delete(kube_api, "GatewayClass", name)
