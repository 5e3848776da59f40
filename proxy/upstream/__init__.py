"""A lean HTTP/1.1 client for proxied requests (WebSocket upgrades and health probes keep
using aiohttp's): pooled keep-alive connections, raw heads, bodies streamed both ways."""

from proxy.upstream.client import UpstreamClient, UpstreamResponse
from proxy.upstream.failures import (
    BrokenResponse,
    ConnectFailed,
    ConnectTimeout,
    NoResponse,
    StaleConnection,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = [
    "BrokenResponse",
    "ConnectFailed",
    "ConnectTimeout",
    "NoResponse",
    "StaleConnection",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
]
