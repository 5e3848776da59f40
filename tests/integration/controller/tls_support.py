"""TLS helpers of the controller's integration tests: kubernetes.io/tls Secret manifests made
from the test CA's leaves, and the serial a verified handshake with SNI gets."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from tests.integration.proxy.tls_client import TlsConnection
from tests.kube.manifests import body
from tests.support.tls_certs import Leaf


def tls_secret(name: str, chain: bytes, key: bytes, *, type_: str = "kubernetes.io/tls") -> Any:
    return body(
        {
            "metadata": {"name": name},
            "type": type_,
            "data": {
                "tls.crt": base64.b64encode(chain).decode(),
                "tls.key": base64.b64encode(key).decode(),
            },
        }
    )


async def put_secret(
    api: client.ApiClient, namespace: str, name: str, leaf: Leaf, *, key: bytes | None = None
) -> None:
    await client.CoreV1Api(api).replace_namespaced_secret(
        name, namespace, tls_secret(name, leaf.chain_pem, key or leaf.key_pem)
    )


async def handshake_serial(port: int, name: str, ca: Path) -> int | None:
    """The serial of the leaf a verified handshake with SNI `name` gets; None when the
    certificate does not verify (the default, self-signed one)."""
    try:
        connection = await TlsConnection.open(port, name, ca)
    except ssl.SSLCertVerificationError:
        return None
    try:
        return connection.peer_serial()
    finally:
        await connection.close()
