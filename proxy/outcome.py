"""What one request came to, and the two sinks it ends up in: metrics and the access log.

The handler (proxy.forwarding) fills in an `Outcome` as the request goes (route, backend,
status, retries, error) and records it in both sinks once, at the end, whatever path the
request took.
"""

from __future__ import annotations

from typing import Protocol


class RequestMetrics(Protocol):
    """What the handler records (proxy.metrics.Metrics implements it)."""

    def observe_request(
        self, *, route: str, upstream: str, backend: str, status: int, duration_seconds: float
    ) -> None: ...

    def retry(self, *, upstream: str, outcome: str) -> None: ...

    def upstream_error(self, *, upstream: str, backend: str, kind: str) -> None: ...


class AccessSink(Protocol):
    """One line per request (proxy.logging.AccessLog implements it)."""

    def log(
        self,
        *,
        method: str,
        path: str,
        status: int,
        upstream: str,
        backend: str,
        duration_ms: float,
        bytes_sent: int,
        request_id: str,
        client: str,
        retries: int,
        **extra: object,
    ) -> None: ...


class Outcome:
    """What happened to one request, filled in as it goes and logged at the end."""

    __slots__ = ("backend", "bytes_sent", "error", "retries", "route", "status", "upstream")

    def __init__(self) -> None:
        self.route = ""
        self.upstream = ""
        self.backend = ""
        self.status = 0
        self.bytes_sent = 0
        self.retries = 0
        self.error = ""
