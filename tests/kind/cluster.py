"""The kind cluster of `make kind-test`, driven the way a user drives one: kubectl and helm.

``Cluster.up()`` runs hack/kind-up.sh (node image, images, cluster; idempotent) and reads the
KEY=VALUE lines it prints. Every call goes through the cluster's own kubeconfig context, and the
host reaches the cluster only through 127.0.0.1: the API server port mapping and
``kubectl port-forward``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack"
CHART = ROOT / "deploy" / "helm" / "kubeferry"


class CommandFailed(AssertionError):
    """A kubectl/helm call failed; the message carries its output."""


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    context: str
    kubectl_path: str
    helm_path: str
    kubeferry_image: str
    echo_image: str
    echo_image_v2: str
    node_image: str

    @classmethod
    def up(cls, name: str) -> Cluster:
        env = {**os.environ, "KIND_CLUSTER": name, "KIND_OWNER_PID": str(os.getpid())}
        # Cold, this builds the node image (tens of minutes); warm, it takes about a minute.
        done = subprocess.run(
            [str(HACK / "kind-up.sh")],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode != 0:
            raise CommandFailed(f"hack/kind-up.sh exited {done.returncode} (its log is above)")
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return cls(
            name=name,
            context=values["CONTEXT"],
            kubectl_path=values["KUBECTL"],
            helm_path=values["HELM"],
            kubeferry_image=values["KUBEFERRY_IMAGE"],
            echo_image=values["ECHO_IMAGE"],
            echo_image_v2=values["ECHO_IMAGE_V2"],
            node_image=values["NODE_IMAGE"],
        )

    def down(self) -> None:
        env = {**os.environ, "KIND_CLUSTER": self.name}
        subprocess.run([str(HACK / "kind-down.sh")], env=env, check=False, timeout=300)

    # --- kubectl and helm ------------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> str:
        return _run(
            [self.kubectl_path, "--context", self.context, *args],
            input=input,
            timeout=timeout,
            check=check,
        )

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifest: str, namespace: str) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def helm(self, *args: str, timeout: float = 300) -> str:
        return _run(
            [self.helm_path, "--kube-context", self.context, *args],
            input=None,
            timeout=timeout,
            check=True,
        )

    def rollout_status(self, namespace: str, deployment: str, timeout_seconds: int = 180) -> None:
        self.kubectl(
            "-n",
            namespace,
            "rollout",
            "status",
            f"deployment/{deployment}",
            f"--timeout={timeout_seconds}s",
            timeout=timeout_seconds + 30,
        )

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl_json(
            "-n", namespace, "get", "pods", "-l", selector
        )["items"]
        return items

    def ready_pod_names(self, namespace: str, selector: str) -> set[str]:
        return {
            pod["metadata"]["name"]
            for pod in self.pods(namespace, selector)
            if pod["metadata"].get("deletionTimestamp") is None
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
        }

    def diagnostics(self, namespace: str) -> str:
        """What a failing test prints: pods, events and kubeferry's last log lines."""
        parts = []
        for args in (
            ("get", "pods", "-o", "wide"),
            ("get", "events", "--sort-by=.lastTimestamp"),
        ):
            parts.append(self.kubectl("-n", namespace, *args, check=False))
        parts.append(
            self.kubectl(
                "-n",
                "kubeferry",
                "logs",
                "-l",
                "app.kubernetes.io/name=kubeferry",
                "--tail=40",
                "--prefix",
                check=False,
            )
        )
        return "\n".join(parts)

    @contextmanager
    def port_forward(self, namespace: str, target: str, remote_port: int) -> Iterator[int]:
        """``kubectl port-forward`` on 127.0.0.1 and a free port; yields the local port."""
        proc = subprocess.Popen(
            [
                self.kubectl_path,
                "--context",
                self.context,
                "-n",
                namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                target,
                f":{remote_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            if match is None:
                proc.kill()
                raise CommandFailed(f"kubectl port-forward {target}: {line}{proc.stdout.read()}")
            yield int(match.group(1))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _run(argv: Sequence[str], *, input: str | None, timeout: float, check: bool) -> str:
    done = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise CommandFailed(
            f"{' '.join(argv[:1] + list(argv[3:]))} exited {done.returncode}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def wait_for(predicate: Any, *, timeout_seconds: float, interval_seconds: float = 1.0) -> Any:
    """Polls until ``predicate()`` is truthy and returns it; fails with the last value."""
    deadline = time.monotonic() + timeout_seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_seconds)
    raise AssertionError(f"not true within {timeout_seconds} s; last value: {last!r}")
