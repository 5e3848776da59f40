"""Pytest plugin: a real control plane (etcd, kube-apiserver, kube-controller-manager) and
stand-in pods, for the controller's integration tests and the end-to-end tests.

Fixtures (session scope is shared by every test of the run):

- ``control_plane`` (session): a started :class:`ControlPlane`; ``.kubeconfig`` (admin),
  ``.server``, ``.ca_file``, ``.restart_apiserver()``.
- ``pod_network`` (session): the bridge and pod address range stand-in pods live on.
- ``kube_api`` (function, async): an admin ``kubernetes_asyncio`` ApiClient, closed afterwards.
- ``kube_namespace`` (function, async): a fresh namespace ``kf-<hex>`` whose default
  ServiceAccount exists; deleted afterwards.
- ``stand_in_pods`` (function, async): a :class:`StandInPods`; every pod it made is removed after.
- ``sa_kubeconfig`` (function): ``await sa_kubeconfig(namespace, name) -> Path`` writes a kubeconfig
  for that ServiceAccount (created if missing) with a TokenRequest token.

Binaries are resolved once, after collection and outside any test timeout, and only when a
selected test needs the control plane: ``KUBEBUILDER_ASSETS`` if it holds them, else
``hack/envtest.sh`` (cache, or a build). Tests that use ``control_plane`` get the ``kube`` marker
automatically, so ``-m "not kube"`` deselects them. A missing prerequisite fails these tests with
the reason; it never skips them, so CI cannot go green without having run them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from tests.kube.controlplane import AssetsError, ControlPlane, resolve_assets
from tests.kube.kubeconfig import service_account_kubeconfig
from tests.kube.manifests import body
from tests.kube.netns import PodNetwork
from tests.kube.pods import StandInPods
from tests.kube.wait import eventually

SaKubeconfig = Callable[[str, str], Awaitable[Path]]

_assets_key = pytest.StashKey[Path | str]()  # the directory, or why there is none
_kept_logs_key = pytest.StashKey[Path]()


def _needs_control_plane(item: pytest.Item) -> bool:
    return "control_plane" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before -m deselection, so the added marker counts
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_control_plane(item) and item.get_closest_marker("kube") is None:
            item.add_marker(pytest.mark.kube)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Here, not in the fixture: a cold build takes many minutes and would blow a test's timeout.
    if session.config.option.collectonly or not any(map(_needs_control_plane, session.items)):
        return
    try:
        session.config.stash[_assets_key] = resolve_assets()
    except AssetsError as e:
        session.config.stash[_assets_key] = str(e)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    kept = config.stash.get(_kept_logs_key, None)
    if kept is not None:
        terminalreporter.write_line(f"control-plane and backend logs kept in {kept}", yellow=True)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    assets = request.config.stash.get(_assets_key, None)
    if assets is None:  # e.g. requested through getfixturevalue only
        try:
            assets = resolve_assets()
        except AssetsError as e:
            assets = str(e)
    if isinstance(assets, str):
        pytest.fail(
            f"no control-plane binaries: {assets}\n"
            "Run `make envtest` (needs Go) or set KUBEBUILDER_ASSETS; deselect with -m 'not kube'.",
            pytrace=False,
        )
    workdir = Path(tempfile.mkdtemp(prefix="kf-controlplane-"))
    plane = ControlPlane(assets=assets, workdir=workdir)
    keep_logs = True  # until proven otherwise: a failed start is exactly when logs matter
    try:
        plane.start()
        yield plane
        keep_logs = request.session.testsfailed > 0
    finally:
        plane.stop()
        if keep_logs:
            request.config.stash[_kept_logs_key] = plane.log_dir
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pod_network() -> Iterator[PodNetwork]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail(
            "stand-in pods need root and iproute2 (`ip`) for network namespaces",
            pytrace=False,
        )
    network = PodNetwork.create()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(
        config_file=str(control_plane.kubeconfig), persist_config=False
    )
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def kube_namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    core = client.CoreV1Api(kube_api)
    name = f"kf-{secrets.token_hex(4)}"
    await core.create_namespace(
        body({"metadata": {"name": name, "labels": {"kubeferry.test": "true"}}})
    )

    async def has_default_service_account() -> None:
        accounts = await core.list_namespaced_service_account(name)
        assert any(a.metadata.name == "default" for a in accounts.items), "no default SA yet"

    try:
        await eventually(has_default_service_account)
        yield name
    finally:
        # Not awaited to completion: the namespace controller finishes in the background.
        await core.delete_namespace(name)


@pytest.fixture
async def stand_in_pods(
    control_plane: ControlPlane, pod_network: PodNetwork, kube_api: client.ApiClient
) -> AsyncIterator[StandInPods]:
    pods = StandInPods(
        kube_api,
        pod_network,
        node_name=f"kf-node-{pod_network.sid}",
        log_dir=control_plane.log_dir,
    )
    try:
        yield pods
    finally:
        await pods.close()


@pytest.fixture
def sa_kubeconfig(
    control_plane: ControlPlane, kube_api: client.ApiClient, tmp_path: Path
) -> SaKubeconfig:
    async def make(namespace: str, name: str) -> Path:
        return await service_account_kubeconfig(
            kube_api,
            namespace=namespace,
            name=name,
            path=tmp_path / f"{namespace}-{name}.kubeconfig",
            server=control_plane.server,
            ca_pem=control_plane.ca_file.read_bytes(),
        )

    return make
