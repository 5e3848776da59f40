"""Plain-dict manifests for the generated ``kubernetes_asyncio`` client."""

from __future__ import annotations

from typing import Any


def body(manifest: dict[str, Any]) -> Any:
    """Passes a manifest dict where the client's annotations ask for a model (``V1Pod`` ...).

    The client serializes dicts as they are; a manifest reads like the YAML everyone knows, and
    that is worth more in a test than the model classes' type checks.
    """
    return manifest
