"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Synchronous on purpose: the control plane lives for the whole pytest session, while each async test
gets its own event loop, so nothing here may belong to a loop. Processes are plain ``Popen``
children that die with the test process (see ``processes``), so even a ``kill -9`` of pytest
leaves no apiserver behind.

Lifecycle: ``start()`` brings up etcd, then the apiserver (secure port, RBAC, service-account
token signing), then the controller manager, and returns only when the controllers demonstrably
work; ``stop()`` ends them in reverse order. Everything lives under one work directory:
certificates, etcd data, kubeconfigs and one log file per component.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.kube import processes
from tests.kube.kubeconfig import write_kubeconfig
from tests.support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers a load balancer's tests lean on. endpointslice publishes what the controller
# reads; serviceaccount(-token) and root-ca-certificate-publisher make namespaces usable by pods and
# ServiceAccount kubeconfigs; clusterrole-aggregation fills the built-in view/edit/admin roles;
# namespace and garbage-collector make deletes behave as in a cluster.
CONTROLLERS = (
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "namespace-controller",
    "garbage-collector-controller",
)


class ControlPlaneError(RuntimeError):
    """A component did not start or did not become ready; the message carries its log tail."""


class AssetsError(RuntimeError):
    """The binaries could not be found or built."""


def holds_binaries(directory: str | Path | None) -> bool:
    if not directory:
        return False
    return all(os.access(Path(directory, b), os.X_OK) for b in BINARIES)


def resolve_assets() -> Path:
    """KUBEBUILDER_ASSETS when it holds the binaries, else whatever hack/envtest.sh provides
    (its cache, or a build on a miss: many minutes, so call this outside any test timeout)."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if holds_binaries(env):
        return Path(str(env))
    script = REPO_ROOT / "hack" / "envtest.sh"
    # A cold build runs for many minutes: bound it, and forward its progress as it comes
    # while keeping the last lines for the error message.
    tail: deque[str] = deque(maxlen=15)
    with subprocess.Popen(
        [str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        watchdog = threading.Timer(3 * 3600, process.kill)
        watchdog.start()
        try:
            assert process.stderr is not None and process.stdout is not None
            for line in process.stderr:
                sys.stderr.write(line)
                tail.append(line.rstrip())
            out = process.stdout.read().strip()
            returncode = process.wait()
        finally:
            watchdog.cancel()
    path = out.splitlines()[-1] if out else ""
    if returncode != 0 or not holds_binaries(path):
        raise AssetsError(f"{script} failed (exit {returncode}):\n" + "\n".join(tail))
    return Path(path)


def _http_status(
    url: str, *, token: str | None = None, context: ssl.SSLContext | None = None
) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0  # not listening yet


class Component:
    """One control-plane process with its own append-only log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<Component {self.name} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        with self.log_path.open("a") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n")
        self._popen = processes.spawn(self.argv, log_path=self.log_path)

    def stop(self, timeout_seconds: float = 15) -> None:
        """SIGTERM, then SIGKILL after the timeout; always reaps the process."""
        popen, self._popen = self._popen, None
        if popen is not None:
            processes.stop(popen, timeout_seconds=timeout_seconds)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout_seconds: float) -> None:
        """Polls ``ready`` until it holds; fails early with the log tail if the process exits."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if not self.running:
                raise ControlPlaneError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{self.name}: no {what} after {timeout_seconds:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.2)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, admin access by token.

    ``kubeconfig`` is an admin (system:masters) kubeconfig; ``server`` the apiserver URL;
    ``ca_file`` the bundle that verifies the apiserver's self-signed serving certificate.
    """

    def __init__(self, *, assets: Path, workdir: Path) -> None:
        self.assets = assets
        self.workdir = workdir
        self.log_dir = workdir / "logs"
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.ca_file = workdir / "apiserver-certs" / "apiserver.crt"
        self.admin_token = secrets.token_urlsafe(32)
        # Mutable state: the lazily built TLS context and the count of controller-manager restarts.
        self._ssl: ssl.SSLContext | None = None
        self._restarts = 0
        etcd_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.etcd = self._component("etcd", self._etcd_argv(etcd_port, peer_port))
        self.apiserver = self._component("kube-apiserver", self._apiserver_argv())
        self.controller_manager = self._component(
            "kube-controller-manager", self._controller_manager_argv()
        )

    def __repr__(self) -> str:
        states = " ".join(
            f"{c.name}={'up' if c.running else 'down'}"
            for c in (self.etcd, self.apiserver, self.controller_manager)
        )
        return f"<ControlPlane {self.server} {states}>"

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._make_service_account_key()
        (self.workdir / "tokens.csv").write_text(
            f"{self.admin_token},kubeferry-admin,kubeferry-admin,system:masters\n"
        )
        self.etcd.start()
        self.etcd.wait_until(
            lambda: _http_status(f"{self.etcd_url}/health") == 200,
            what="healthy etcd",
            timeout_seconds=30,
        )
        self._start_apiserver()
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_pem=self.ca_file.read_bytes(),
            token=self.admin_token,
            user="kubeferry-admin",
        )
        self.controller_manager.start()
        self._wait_controllers("default")

    def stop(self) -> None:
        for component in (self.controller_manager, self.apiserver, self.etcd):
            component.stop()

    def restart_apiserver(self, *, restart_controller_manager: bool = True) -> None:
        """Stops kube-apiserver gracefully and starts it again on the same port, data and
        certificates. API clients see what they see in a real upgrade: their watches end, then
        connections are refused, then the same objects and resource versions come back from etcd.

        The controller manager is restarted after it by default, as a control-plane upgrade does.
        Kept running, it survives, but every refused reconnect grows each informer's backoff
        (client-go: 0.8 s doubling to 30 s, with up to 100 % jitter, reset only after two quiet
        minutes), so after a few restarts in one session its controllers would lag by up to a
        minute and make every later test slow. Pass ``restart_controller_manager=False`` to watch
        exactly that.
        """
        self.apiserver.stop()
        self._start_apiserver()
        if restart_controller_manager:
            self.controller_manager.stop()
            self.controller_manager.start()
            self._restarts += 1
            self._wait_controllers(self._create_namespace(f"kf-restart-{self._restarts}"))

    def get(self, path: str) -> int:
        """Status code of an admin GET against the apiserver (0 when it does not answer)."""
        return _http_status(
            f"{self.server}{path}", token=self.admin_token, context=self.ssl_context()
        )

    def version(self) -> dict[str, str]:
        """The apiserver's /version document."""
        request = urllib.request.Request(f"{self.server}/version")
        request.add_header("Authorization", f"Bearer {self.admin_token}")
        with urllib.request.urlopen(request, timeout=5, context=self.ssl_context()) as response:
            return {str(k): str(v) for k, v in json.loads(response.read()).items()}

    # --- internals ------------------------------------------------------------------------------

    def _component(self, name: str, argv: list[str]) -> Component:
        return Component(name, argv, self.log_dir / f"{name}.log")

    def _start_apiserver(self) -> None:
        self.apiserver.start()
        # It writes its self-signed serving certificate (leaf + CA) before it listens.
        self.apiserver.wait_until(
            self.ca_file.exists, what="a serving certificate", timeout_seconds=60
        )
        self.apiserver.wait_until(
            lambda: self.get("/readyz") == 200, what="/readyz", timeout_seconds=120
        )

    def _wait_controllers(self, namespace: str) -> None:
        # The controllers work when the serviceaccount controller has made the namespace's default
        # ServiceAccount: that needs a running, authorized controller manager whose shared
        # informers have synced, not just a healthy process.
        self.controller_manager.wait_until(
            lambda: self.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default") == 200,
            what=f"the default ServiceAccount of {namespace} (controllers running)",
            timeout_seconds=90,
        )

    def _create_namespace(self, name: str) -> str:
        request = urllib.request.Request(
            f"{self.server}/api/v1/namespaces",
            method="POST",
            data=json.dumps({"metadata": {"name": name}}).encode(),
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10, context=self.ssl_context()):
            return name

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the apiserver's serving certificate (for plain urllib/aiohttp callers)."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        return self._ssl

    def _make_service_account_key(self) -> None:
        # One RSA key signs tokens (apiserver: TokenRequest; controller manager: legacy token
        # secrets) and verifies them; the apiserver derives the public half from the private key.
        subprocess.run(
            ["openssl", "genrsa", "-out", str(self.workdir / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )

    def _etcd_argv(self, port: int, peer_port: int) -> list[str]:
        peer = f"http://127.0.0.1:{peer_port}"
        return [
            str(self.assets / "etcd"),
            "--name=kubeferry",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kubeferry={peer}",
            # Test data is disposable; fsync only makes a 2-core CI box slower.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        sa_key = self.workdir / "sa.key"
        return [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.ca_file.parent}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # With a loopback advertise address the apiserver must not publish itself as the
            # endpoints of the `kubernetes` Service: loopback endpoints are invalid.
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            # On SIGTERM, end open watches within 2 s instead of leaving them open; otherwise a
            # stop waits out the HTTP server's 60 s shutdown timeout on long-lived watches.
            "--shutdown-watch-termination-grace-period=2s",
            "--allow-privileged=true",
            "--v=1",
        ]

    def _controller_manager_argv(self) -> list[str]:
        return [
            str(self.assets / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            # Delegated authn/z for its own /healthz; without them it logs warnings per request.
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={self.workdir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            # One identity (admin) for all controllers: RBAC on controllers is not under test.
            "--use-service-account-credentials=false",
            "--v=1",
        ]


def version_of(binary: Path) -> str:
    """What a binary says about itself, e.g. 'Kubernetes v1.36.3'."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    return (out.stdout or out.stderr).strip().splitlines()[0]


def pinned_versions() -> dict[str, str]:
    """KUBERNETES_VERSION and ETCD_VERSION as pinned in hack/envtest/versions.env."""
    lines = (REPO_ROOT / "hack" / "envtest" / "versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}
