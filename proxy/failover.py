"""The attempt loop: send one request to an upstream's endpoints until one answers or failing
over is no longer safe.

An attempt that failed before any response is retried on another endpoint when that cannot
duplicate work (see `Failure.retryable`), within `retries.max_retries` and while an untried
endpoint is in rotation. A retry of a request that nothing received (connect refused or timed
out, connection closed before a byte was written: `Failure.nothing_sent`) needs nothing more:
it costs the backends no extra work. A retry that re-sends a request a backend may have seen
also needs a slot of the shared RetryBudget; a refusal is written into the access line's
`error` and counted (`kubeferry_retries_total{outcome="budget_refused"}`). The endpoint that
failed leaves the rotation at once (`pool.report_failure`).
An answer is relayed as it arrives, or in one write when it arrived whole (`send_whole`, most
small answers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from typing import Protocol

import aiohttp
from aiohttp import web

from proxy.body import StreamedBody
from proxy.errors import NO_HEALTHY_BACKENDS, Failure, classify, error_response
from proxy.headers import (
    ResponseEdit,
    ResponseFields,
    downstream_head_from_raw,
    downstream_headers_from_raw,
    upstream_request_head_raw,
)
from proxy.model import Endpoint
from proxy.outcome import Outcome, RequestMetrics
from proxy.pool import Pool
from proxy.relay import (
    RelayedResponse,
    RelayResult,
    SentResponse,
    interim_relay,
    relay_response,
    send_whole,
)
from proxy.retry_budget import RetryBudget
from proxy.upstream import InterimSink, UpstreamError, UpstreamResponse

# The handler's logger: operators filter attempt failures by it, wherever the code lives.
log = logging.getLogger("kubeferry.forwarding")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


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
        interim: InterimSink | None = None,
    ) -> UpstreamResponse: ...


def _whole_head(
    request: web.BaseRequest,
    upstream_response: UpstreamResponse,
    request_id: str,
    added: ResponseFields,
    edit: ResponseEdit | None,
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
        added=added,
        edit=edit,
    )


class Failover:
    """Sends one request to an upstream's endpoints, one attempt each, failing over when safe."""

    __slots__ = ("_budget", "_client", "_max_retries", "_metrics", "_pool")

    def __init__(
        self,
        *,
        pool: Pool,
        client: UpstreamSender,
        budget: RetryBudget,
        metrics: RequestMetrics,
        max_retries: int,
    ) -> None:
        self._pool = pool
        self._client = client
        self._budget = budget
        self._metrics = metrics
        self._max_retries = max_retries

    async def forward(
        self,
        request: web.BaseRequest,
        outcome: Outcome,
        *,
        upstream: str,
        hash_key: str | None,
        held: bytes | None,
        streamed: StreamedBody | None,
        request_id: str,
        scheme: str = "http",
        added: ResponseFields = (),
        edit: ResponseEdit | None = None,
        forwarded_host: str | None = None,
    ) -> web.StreamResponse:
        """Forward the request with its body held (replayable) or streamed (at most once
        past its first byte); answer with an error response when no attempt succeeded.
        `scheme` is the client's (X-Forwarded-Proto); `added` are response fields the proxy
        sets on every relayed answer (HSTS on HTTPS); `edit` the route's changes to the answer
        and `forwarded_host` the client's Host when the route rewrote it (both None on the
        common path: proxy.headers)."""
        pool = self._pool
        method = request.method
        idempotent = method in IDEMPOTENT_METHODS
        # A chunked client body is relayed chunked; one with a Content-Length keeps it.
        chunked = streamed is not None and request.content_length is None
        head_only = method == "HEAD"
        interim = interim_relay(request)  # the upstream's 1xx answers, as they arrive
        tried: list[str] = []
        holding_retry = False
        failure: Failure | None = None
        retry: str | None = None  # a retry waiting for its endpoint: "not_sent" or "resent"
        refusal: str | None = None
        try:
            while True:
                endpoint = pool.pick(upstream, hash_key=hash_key, exclude=tried)
                if endpoint is None:
                    break
                if retry is not None:
                    # Decided only now that an untried endpoint is there to take it.
                    if retry == "resent":
                        if not self._budget.try_start_retry():
                            refusal = f"retry refused by the retry budget ({self._budget})"
                            self._metrics.retry(upstream=upstream, outcome="budget_refused")
                            break
                        holding_retry = True
                    outcome.retries += 1
                    self._metrics.retry(upstream=upstream, outcome=retry)
                    retry = None
                outcome.backend = endpoint.key
                head = upstream_request_head_raw(
                    method,
                    request.raw_path,
                    request.raw_headers,
                    client_ip=request.remote or "",
                    scheme=scheme,
                    request_id=request_id,
                    default_host=endpoint.key,
                    chunked=chunked,
                    forwarded_host=forwarded_host,
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
                            interim=interim,
                        )
                    except UpstreamError as exc:
                        failure = classify(exc)
                    else:
                        pool.report_status(upstream, endpoint, upstream_response.status)
                        outcome.status = upstream_response.status
                        whole = _whole_head(request, upstream_response, request_id, added, edit)
                        if whole is not None:
                            body = upstream_response.take()
                            result = await send_whole(request, upstream_response, whole, body)
                            self._relayed(result, upstream, endpoint, outcome)
                            return SentResponse(outcome.status, keep_alive=request.keep_alive)
                        response = RelayedResponse(
                            status=upstream_response.status,
                            reason=upstream_response.reason,
                            headers=downstream_headers_from_raw(
                                upstream_response.headers,
                                request_id=request_id,
                                added=added,
                                edit=edit,
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
                self.note_failure(upstream, endpoint, failure, outcome)
                replayable = streamed is None or streamed.sent == 0
                if (
                    not failure.retryable(idempotent=idempotent, replayable=replayable)
                    or outcome.retries >= self._max_retries
                ):
                    break
                retry = "not_sent" if failure.nothing_sent else "resent"
                tried.append(endpoint.key)
        finally:
            if holding_retry:
                self._budget.retry_finished()
        if failure is None or (failure.status == 502 and not pool.has_candidates(upstream)):
            # Every endpoint failed and left the rotation (or none was left to begin with).
            return error_response(503, NO_HEALTHY_BACKENDS, request_id=request_id)
        outcome.error = failure.reason if refusal is None else f"{failure.reason}; {refusal}"
        return error_response(failure.status, request_id=request_id, close=streamed is not None)

    def note_failure(
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
        if streamed.idle:
            outcome.error = "client request body idle timeout"
            return error_response(408, request_id=request_id, close=True)
        outcome.error = "client request body broken or cut short"
        return error_response(
            400, "Request body could not be read", request_id=request_id, close=True
        )

    def _relayed(
        self, result: RelayResult, upstream: str, endpoint: Endpoint, outcome: Outcome
    ) -> None:
        outcome.bytes_sent = result.bytes_sent
        if result.upstream_error is not None:
            # Too late to fail over (the head went out), but the backend is at fault like any
            # failed attempt: same rotation, metric and log as note_failure gives them.
            failure = Failure("mid_response", 502, False, result.upstream_error)
            self.note_failure(upstream, endpoint, failure, outcome)
        elif result.client_error is not None:
            outcome.error = result.client_error
