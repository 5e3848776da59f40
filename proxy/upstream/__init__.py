"""A lean HTTP/1.1 client for proxied requests (WebSocket upgrades and health probes keep
using aiohttp's): pooled keep-alive connections, raw heads, bodies streamed both ways."""

from proxy.upstream.client import UpstreamClient, UpstreamResponse
from proxy.upstream.connection import InterimSink
from proxy.upstream.failures import (
    BrokenResponse,
    ConnectFailed,
    ConnectTimeout,
    FirstByteTimeout,
    NoResponse,
    RequestNotSent,
    StaleConnection,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.upstream.limits import HeadLimits, HeadTooLarge
from proxy.upstream.sockets import SocketOptions

__all__ = [
    "BrokenResponse",
    "ConnectFailed",
    "ConnectTimeout",
    "FirstByteTimeout",
    "HeadLimits",
    "HeadTooLarge",
    "InterimSink",
    "NoResponse",
    "RequestNotSent",
    "SocketOptions",
    "StaleConnection",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
]
