"""The request handler: route, pick a backend, forward, stream the answer back, fail over.

One `Forwarder` serves one listener. Per request it does, in order:
  reject what a reverse proxy must not forward (CONNECT, absolute-form targets, framing
  conflicts, bodies over the limit), route by Host and path, pick an endpoint, send the request
  (proxy.upstream) with the body streamed or (when small) held for replay, relay the response
  as it arrives, or in one write when it arrived whole (`send_whole`, most small answers).

Failover: an attempt that failed before any response is retried on another endpoint when that
cannot duplicate work (see `Failure.retryable`), within `retries.max_retries` and the shared
RetryBudget. The endpoint that failed leaves the rotation at once (`pool.report_failure`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from proxy import websocket
from proxy.admission import refusal
from proxy.body import StreamedBody
from proxy.errors import NO_HEALTHY_BACKENDS, NO_ROUTE, Failure, classify, error_response
from proxy.headers import (
    downstream_head_from_raw,
    downstream_headers_from_raw,
    request_id_for,
    upstream_request_head,
    upstream_request_headers,
)
from proxy.model import Endpoint, HashOn
from proxy.pool import Pool
from proxy.relay import RelayedResponse, RelayResult, SentResponse, relay_response, send_whole
from proxy.retry_budget import RetryBudget
from proxy.routing import Router
from proxy.settings import Settings
from proxy.upstream import UpstreamError, UpstreamResponse

log = logging.getLogger("kubeferry.forwarding")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_CLIENT_CLOSED = 499  # nginx's convention for "the client went away first"


class RequestMetrics(Protocol):
    """What the handler records (proxy.metrics.Metrics implements it)."""

    def observe_request(
        self, *, route: str, upstream: str, backend: str, status: int, duration_seconds: float
    ) -> None: ...

    def retry(self, *, upstream: str) -> None: ...

    def upstream_error(self, *, upstream: str, backend: str, kind: str) -> None: ...


class UpstreamSender(Protocol):
    """Sends one attempt to one endpoint (proxy.upstream.UpstreamClient implements it)."""

    async def send(
        self,
        endpoint: Endpoint,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        chunked: bool = False,
        head_only: bool = False,
        retry_stale: bool = False,
    ) -> UpstreamResponse: ...


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


def _whole_head(
    request: web.BaseRequest, upstream_response: UpstreamResponse, request_id: str
) -> bytes | None:
    """The client's response head if the answer can go out by `send_whole`: it arrived whole
    with a Content-Length, the client speaks HTTP/1.1, and the answer has a body of its own
    (not to HEAD, not 204 or 304)."""
    status = upstream_response.status
    if (
        not upstream_response.complete
        or request.version != aiohttp.HttpVersion11
        or request.method == "HEAD"
        or status in (204, 304)
    ):
        return None
    return downstream_head_from_raw(
        status,
        upstream_response.reason_bytes,
        upstream_response.headers,
        request_id=request_id,
        keep_alive=request.keep_alive,
    )


def hash_key_for(request: web.BaseRequest, hash_on: HashOn) -> str | None:
    if hash_on.source == "header":
        return request.headers.get(hash_on.name)
    if hash_on.source == "cookie":
        return request.cookies.get(hash_on.name)
    return request.remote


class Forwarder:
    """The aiohttp low-level handler for one listener (`await forwarder(request)`)."""

    __slots__ = (
        "_access",
        "_budget",
        "_client",
        "_max_body",
        "_max_retries",
        "_metrics",
        "_pool",
        "_replay_bytes",
        "_router",
        "_session",
        "_ws_timeout",
    )

    def __init__(
        self,
        *,
        settings: Settings,
        router: Router,
        pool: Pool,
        session: aiohttp.ClientSession,
        client: UpstreamSender,
        budget: RetryBudget,
        metrics: RequestMetrics,
        access_log: AccessSink,
    ) -> None:
        self._router = router
        self._pool = pool
        self._session = session  # WebSocket upgrades only
        self._client = client
        self._budget = budget
        self._metrics = metrics
        self._access = access_log
        self._max_retries = settings.retries.max_retries
        self._replay_bytes = settings.retries.replay_body_bytes
        self._max_body = settings.limits.max_body_bytes
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_close=settings.timeouts.connect_seconds)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds, which
        # would log most proxied requests as taking 0 ms.
        started = time.perf_counter()
        request_id = request_id_for(request.headers)
        outcome = Outcome()
        self._budget.request_started()
        try:
            response = await self._handle(request, request_id, outcome)
            if not outcome.status:
                outcome.status = response.status
            return response
        except asyncio.CancelledError:
            # The client disconnected (handler cancellation) or the server is shutting down.
            outcome.status = outcome.status or _CLIENT_CLOSED
            outcome.error = outcome.error or "cancelled: client went away or shutdown"
            raise
        finally:
            self._budget.request_finished()
            duration = time.perf_counter() - started
            self._metrics.observe_request(
                route=outcome.route,
                upstream=outcome.upstream,
                backend=outcome.backend,
                status=outcome.status,
                duration_seconds=duration,
            )
            extra = {"error": outcome.error} if outcome.error else {}
            self._access.log(
                method=request.method,
                path=request.raw_path,
                status=outcome.status,
                upstream=outcome.upstream,
                backend=outcome.backend,
                duration_ms=duration * 1000.0,
                bytes_sent=outcome.bytes_sent,
                request_id=request_id,
                client=request.remote or "",
                retries=outcome.retries,
                **extra,
            )

    async def _handle(
        self, request: web.BaseRequest, request_id: str, outcome: Outcome
    ) -> web.StreamResponse:
        refused = refusal(request, max_body_bytes=self._max_body)
        if refused is not None:
            outcome.error = refused[1]
            return error_response(*refused, request_id=request_id, close=True)
        headers = request.headers
        raw_path = request.raw_path
        length = request.content_length
        route = self._router.table.match(headers.get("Host", ""), raw_path.partition("?")[0])
        if route is None:
            return error_response(404, NO_ROUTE, request_id=request_id)
        upstream = route.upstream
        outcome.upstream = upstream
        outcome.route = f"{route.host}{route.path_prefix}" if route.host else route.path_prefix
        spec = self._pool.spec(upstream)
        if spec is None or not self._pool.has_candidates(upstream):
            return error_response(503, NO_HEALTHY_BACKENDS, request_id=request_id)
        hash_key = hash_key_for(request, spec.hash_on) if spec.hash_on is not None else None

        if websocket.is_websocket_upgrade(request):
            out_headers = upstream_request_headers(
                headers, client_ip=request.remote or "", scheme="http", request_id=request_id
            )
            return await self._websocket(request, upstream, hash_key, out_headers, outcome)

        held: bytes | None = None
        streamed: StreamedBody | None = None
        if request.body_exists:
            if headers.get("Expect", "").lower() == "100-continue":
                # The proxy answers Expect itself (the header is not forwarded): the limits
                # above already passed, so the client may send.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if length is not None and length <= self._replay_bytes:
                held = await request.read()
            else:
                streamed = StreamedBody(request.content, limit=self._max_body)
        return await self._attempts(
            request, upstream, hash_key, held, streamed, outcome, request_id
        )

    async def _attempts(
        self,
        request: web.BaseRequest,
        upstream: str,
        hash_key: str | None,
        held: bytes | None,
        streamed: StreamedBody | None,
        outcome: Outcome,
        request_id: str,
    ) -> web.StreamResponse:
        pool = self._pool
        method = request.method
        idempotent = method in IDEMPOTENT_METHODS
        # A chunked client body is relayed chunked; one with a Content-Length keeps it.
        chunked = streamed is not None and request.content_length is None
        head_only = method == "HEAD"
        tried: list[str] = []
        holding_retry = False
        failure: Failure | None = None
        try:
            while True:
                endpoint = pool.pick(upstream, hash_key=hash_key, exclude=tried)
                if endpoint is None:
                    break
                outcome.backend = endpoint.key
                head = upstream_request_head(
                    method,
                    request.raw_path,
                    request.headers,
                    client_ip=request.remote or "",
                    scheme="http",
                    request_id=request_id,
                    default_host=endpoint.key,
                    chunked=chunked,
                )
                pool.acquire(endpoint)
                try:
                    try:
                        upstream_response = await self._client.send(
                            endpoint,
                            head,
                            streamed.chunks() if streamed is not None else held,
                            chunked=chunked,
                            head_only=head_only,
                            # Safe to send again only when the backend cannot have acted on
                            # it twice and the body can be sent again.
                            retry_stale=idempotent and streamed is None,
                        )
                    except UpstreamError as exc:
                        failure = classify(exc)
                    else:
                        pool.report_status(upstream, endpoint, upstream_response.status)
                        outcome.status = upstream_response.status
                        whole = _whole_head(request, upstream_response, request_id)
                        if whole is not None:
                            body = upstream_response.take()
                            result = await send_whole(request, upstream_response, whole, body)
                            self._relayed(result, upstream, endpoint, outcome)
                            return SentResponse(outcome.status, keep_alive=request.keep_alive)
                        response = RelayedResponse(
                            status=upstream_response.status,
                            reason=upstream_response.reason,
                            headers=downstream_headers_from_raw(
                                upstream_response.headers, request_id=request_id
                            ),
                        )
                        result = await relay_response(request, upstream_response, response)
                        self._relayed(result, upstream, endpoint, outcome)
                        return response
                finally:
                    pool.release(endpoint)
                    if holding_retry:
                        self._budget.retry_finished()
                        holding_retry = False
                if streamed is not None and (streamed.too_large or streamed.client_failed):
                    return self._client_body_failed(streamed, outcome, request_id)
                self._note_failure(upstream, endpoint, failure, outcome)
                replayable = streamed is None or streamed.sent == 0
                if (
                    not failure.retryable(idempotent=idempotent, replayable=replayable)
                    or outcome.retries >= self._max_retries
                    or not self._budget.try_start_retry()
                ):
                    break
                holding_retry = True
                outcome.retries += 1
                tried.append(endpoint.key)
                self._metrics.retry(upstream=upstream)
        finally:
            if holding_retry:
                self._budget.retry_finished()
        if failure is None or (failure.status == 502 and not pool.has_candidates(upstream)):
            # Every endpoint failed and left the rotation (or none was left to begin with).
            return error_response(503, NO_HEALTHY_BACKENDS, request_id=request_id)
        outcome.error = failure.reason
        return error_response(failure.status, request_id=request_id, close=streamed is not None)

    def _note_failure(
        self, upstream: str, endpoint: Endpoint, failure: Failure, outcome: Outcome
    ) -> None:
        """Take the endpoint out of rotation now, before its next active check."""
        if failure.backend_fault:
            self._pool.report_failure(upstream, endpoint, failure.reason)
        self._metrics.upstream_error(upstream=upstream, backend=endpoint.key, kind=failure.kind)
        outcome.error = failure.reason
        log.warning(
            "attempt on %s failed: %s",
            endpoint.key,
            failure.reason,
            extra={
                "event": "upstream_failure",
                "upstream": upstream,
                "backend": endpoint.key,
                "kind": failure.kind,
            },
        )

    @staticmethod
    def _client_body_failed(
        streamed: StreamedBody, outcome: Outcome, request_id: str
    ) -> web.StreamResponse:
        # The client's side failed, not the backend's: no report_failure, no retry.
        if streamed.too_large:
            outcome.error = "request body over limit"
            return error_response(413, request_id=request_id, close=True)
        outcome.error = "client request body broken or cut short"
        return error_response(
            400, "Request body could not be read", request_id=request_id, close=True
        )

    def _relayed(
        self, result: RelayResult, upstream: str, endpoint: Endpoint, outcome: Outcome
    ) -> None:
        outcome.bytes_sent = result.bytes_sent
        if result.upstream_error is not None:
            outcome.error = result.upstream_error
            self._pool.report_failure(upstream, endpoint, result.upstream_error)
            self._metrics.upstream_error(
                upstream=upstream, backend=endpoint.key, kind="mid_response"
            )
        elif result.client_error is not None:
            outcome.error = result.client_error

    async def _websocket(
        self,
        request: web.BaseRequest,
        upstream: str,
        hash_key: str | None,
        out_headers: CIMultiDict[str],
        outcome: Outcome,
    ) -> web.StreamResponse:
        endpoint = self._pool.pick(upstream, hash_key=hash_key)
        if endpoint is None:
            return error_response(503, NO_HEALTHY_BACKENDS)
        outcome.backend = endpoint.key
        url = URL(endpoint.base_url + request.raw_path, encoded=True)
        self._pool.acquire(endpoint)
        try:
            try:
                upstream_ws = await self._session.ws_connect(
                    url,
                    headers=websocket.upstream_handshake_headers(out_headers),
                    protocols=websocket.requested_protocols(request),
                    autoping=False,
                    compress=0,
                    max_msg_size=0,
                    timeout=self._ws_timeout,
                )
            except aiohttp.WSServerHandshakeError as exc:
                outcome.error = f"upstream refused the websocket handshake: {exc.status}"
                return error_response(502)
            except (TimeoutError, aiohttp.ClientError) as exc:
                failure = classify(exc)
                self._note_failure(upstream, endpoint, failure, outcome)
                return error_response(failure.status)
            outcome.status = 101
            return await websocket.relay(request, upstream_ws)
        finally:
            self._pool.release(endpoint)
