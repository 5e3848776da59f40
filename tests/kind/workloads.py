"""What the kind tests deploy: echo backends behind annotated Services, and load clients.

The echo image (hack/kind/echo) answers every request with its pod name and shuts down as real
apps do: on SIGTERM it stops listening and finishes in-flight requests. The same binary is the
in-cluster load client (``echo load``), stopped through its control port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

APPS = "demo"
RELEASE = "e2e"
KUBEFERRY_NAMESPACE = "kubeferry"
KUBEFERRY = f"{RELEASE}-kubeferry"
# In-cluster address of the kubeferry Service (what an in-cluster client or a cloud load
# balancer in front of it would use).
KUBEFERRY_URL = f"http://{KUBEFERRY}.{KUBEFERRY_NAMESPACE}.svc.cluster.local/"
CONTROL_PORT = 9090


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    replicas: int
    annotations: dict[str, str]

    @property
    def selector(self) -> str:
        return f"app={self.name}"


HELLO = Backend(
    "hello",
    3,
    {
        "kubeferry.io/enabled": "true",
        "kubeferry.io/host": "hello.test",
        "kubeferry.io/health-path": "/healthz",
    },
)
WORLD = Backend(
    "world",
    2,
    {
        "kubeferry.io/enabled": "true",
        "kubeferry.io/host": "world.test",
        "kubeferry.io/path-prefix": "/api",
        "kubeferry.io/strategy": "least-request",
        "kubeferry.io/health-path": "/healthz",
    },
)


def backend_manifest(backend: Backend, image: str) -> str:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": backend.name},
        "spec": {
            "replicas": backend.replicas,
            "selector": {"matchLabels": {"app": backend.name}},
            "template": {
                "metadata": {"labels": {"app": backend.name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [echo_container(image, ["serve"])],
                },
            },
        },
    }
    deployment["spec"]["template"]["spec"]["containers"][0].update(
        {
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {
                "httpGet": {"path": "/healthz", "port": "http"},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        }
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": backend.name, "annotations": backend.annotations},
        "spec": {
            "selector": {"app": backend.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    return "\n---\n".join(json.dumps(doc) for doc in (deployment, service))


def echo_container(image: str, args: list[str], name: str = "echo") -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "args": args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def load_args(*, url: str, host: str, concurrency: int, duration_seconds: int) -> list[str]:
    """Half the clients keep their connections alive, half open one per request: the second
    half meets every routing change at connect time (a listener closed too early, a pod kube-proxy
    still routes to)."""
    return [
        "load",
        f"-url={url}",
        f"-host={host}",
        f"-concurrency={concurrency}",
        f"-fresh={concurrency // 2}",
        f"-duration={duration_seconds}s",
        "-timeout=15s",
        f"-control=:{CONTROL_PORT}",
    ]


def load_pod_manifest(name: str, image: str, args: list[str]) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "load"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [echo_container(image, args, name="load")],
        },
    }
    return json.dumps(pod)
