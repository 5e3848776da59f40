"""Kubeconfig files: the admin one, and one per ServiceAccount through the TokenRequest API.

A ServiceAccount kubeconfig lets a test run code with exactly the permissions that a Role or
ClusterRole bound to that account grants, which is how the controller runs in a real cluster.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from tests.kube.manifests import body


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, token: str, user: str) -> Path:
    """Writes a self-contained (CA embedded) bearer-token kubeconfig, readable by owner only."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubeferry-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": user, "context": {"cluster": "kubeferry-test", "user": user}},
        ],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file holds a credential: create it 0600 rather than chmod after the fact.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


async def service_account_kubeconfig(
    api: client.ApiClient,
    *,
    namespace: str,
    name: str,
    path: Path,
    server: str,
    ca_pem: bytes,
    expiration_seconds: int = 3600,
) -> Path:
    """Requests a bound token for ServiceAccount ``namespace/name`` (created if missing) with the
    admin client ``api`` and writes a kubeconfig that authenticates as that account.

    The token comes from the TokenRequest API, exactly what a projected token volume gives a pod,
    so RBAC decisions match what the controller would meet in a cluster.
    """
    core = client.CoreV1Api(api)
    try:
        await core.create_namespaced_service_account(namespace, body({"metadata": {"name": name}}))
    except client.ApiException as e:
        if e.status != 409:  # already exists: fine, we only need it to be there
            raise
    token_request = await core.create_namespaced_service_account_token(
        name,
        namespace,
        body({"spec": {"expirationSeconds": expiration_seconds}}),
    )
    return write_kubeconfig(
        path,
        server=server,
        ca_pem=ca_pem,
        token=str(token_request.status.token),
        user=f"system:serviceaccount:{namespace}:{name}",
    )
