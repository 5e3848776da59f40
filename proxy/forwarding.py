"""The request handler: route, pick a backend, forward, stream the answer back, fail over.

One `Forwarder` serves one listener. Per request it does, in order:
  reject what a reverse proxy must not forward (CONNECT, absolute-form targets, framing
  conflicts, bodies over the limit), route by Host, path, method, headers and query
  (proxy.routing), apply the route's actions when it has any (proxy.filters: a redirect
  answered here, a weighted choice of upstream, request header and URL rewrites on a copy of
  the request, response fields to change), then hand the request with its
  body, streamed or (when small) held for replay, to the attempt loop (proxy.failover: pick
  an endpoint, send through proxy.upstream, relay the answer, fail over when safe), or a
  WebSocket upgrade to proxy.websocket. Whatever happened is recorded once, at the end, in
  metrics and the access log (proxy.outcome).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.admission import refusal
from proxy.body import StreamedBody
from proxy.errors import NO_HEALTHY_BACKENDS, NO_ROUTE, error_response
from proxy.failover import Failover, UpstreamSender
from proxy.filters import Actions, modified_headers, new_path, redirect_location
from proxy.headers import REQUEST_ID, request_id_for
from proxy.model import HashOn
from proxy.outcome import AccessSink, Outcome, RequestMetrics
from proxy.pool import Pool
from proxy.retry_budget import RetryBudget
from proxy.routing import Router, normalize_host
from proxy.settings import Settings
from proxy.tls.redirect import hsts_fields, https_redirect
from proxy.websocket import WebSocketForwarder, is_websocket_upgrade

_CLIENT_CLOSED = 499  # nginx's convention for "the client went away first"
INVALID_BACKEND = "No valid backend for this route"


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
        "_body_idle",
        "_budget",
        "_failover",
        "_https",
        "_max_body",
        "_metrics",
        "_pool",
        "_public_port",
        "_redirect_port",
        "_replay_bytes",
        "_rng",
        "_router",
        "_scheme",
        "_websocket",
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
        https: bool = False,
        public_port: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        # `https`: this listener terminates TLS (X-Forwarded-Proto https, HSTS); on a plain
        # listener, routes with https_redirect answer 308 to `_redirect_port`.
        # `public_port`: the port clients reach this listener on (RequestRedirect keeps it).
        # `rng`: weighted backend choice; seeded from the OS unless a test passes its own.
        self._https = https
        self._public_port = public_port
        self._rng = rng if rng is not None else random.Random(os.urandom(16))
        self._scheme = "https" if https else "http"
        self._redirect_port = settings.tls.redirect_port or settings.tls_port
        self._router = router
        self._pool = pool
        self._budget = budget
        self._metrics = metrics
        self._access = access_log
        self._replay_bytes = settings.retries.replay_body_bytes
        self._max_body = settings.limits.max_body_bytes
        self._body_idle = settings.timeouts.client_body_idle_seconds
        self._failover = Failover(
            pool=pool,
            client=client,
            budget=budget,
            metrics=metrics,
            max_retries=settings.retries.max_retries,
        )
        self._websocket = WebSocketForwarder(
            pool=pool,
            session=session,  # WebSocket upgrades only
            connect_seconds=settings.timeouts.connect_seconds,
            note_failure=self._failover.note_failure,
        )

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
        path, _, query = raw_path.partition("?")
        table = self._router.table
        route = table.catch_all
        if route is None:
            route = table.match(
                headers.get("Host", ""), path, method=request.method, headers=headers, query=query
            )
        if route is None:
            return error_response(404, NO_ROUTE, request_id=request_id)
        outcome.route = route.label
        outcome.upstream = upstream = route.target
        if route.https_redirect and not self._https:
            return https_redirect(request, port=self._redirect_port, request_id=request_id)
        added = hsts_fields(route.hsts_max_age_seconds) if self._https else ()
        actions = route.actions
        edit = forwarded_host = None
        if actions is not None:  # filters or several backends: never on the common path
            if actions.rewrite is not None and actions.rewrite.hostname is not None:
                # X-Forwarded-Host keeps what the client asked for, not the rewrite.
                forwarded_host = headers.get("Host", "")
            acted = self._act(request, actions, upstream, path, query, request_id, outcome)
            if isinstance(acted, web.StreamResponse):
                return acted
            request, upstream = acted
            headers = request.headers
            edit = actions.response_edit
            outcome.upstream = upstream
        spec = self._pool.spec(upstream)
        if spec is None or not self._pool.has_candidates(upstream):
            return error_response(503, NO_HEALTHY_BACKENDS, request_id=request_id)
        hash_key = hash_key_for(request, spec.hash_on) if spec.hash_on is not None else None

        if is_websocket_upgrade(request):
            return await self._websocket.forward(
                request, outcome, upstream=upstream, hash_key=hash_key, request_id=request_id
            )

        held: bytes | None = None
        streamed: StreamedBody | None = None
        if request.body_exists:
            if headers.get("Expect", "").lower() == "100-continue":
                # The proxy answers Expect itself (the header is not forwarded): the limits
                # above already passed, so the client may send.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if length is not None and length <= self._replay_bytes:
                try:
                    # Small enough to hold: the whole body within one idle period.
                    async with asyncio.timeout(self._body_idle):
                        held = await request.read()
                except TimeoutError:
                    outcome.error = "client request body idle timeout"
                    return error_response(408, request_id=request_id, close=True)
            else:
                streamed = StreamedBody(
                    request.content, limit=self._max_body, idle_seconds=self._body_idle
                )
        return await self._failover.forward(
            request,
            outcome,
            upstream=upstream,
            hash_key=hash_key,
            held=held,
            streamed=streamed,
            request_id=request_id,
            scheme=self._scheme,
            added=added,
            edit=edit,
            forwarded_host=forwarded_host,
        )

    def _act(
        self,
        request: web.BaseRequest,
        actions: Actions,
        upstream: str,
        path: str,
        query: str,
        request_id: str,
        outcome: Outcome,
    ) -> web.StreamResponse | tuple[web.BaseRequest, str]:
        """Apply a route's actions: an answer (redirect, 500 for no valid backend, 400), or
        the request to forward (a rewritten copy, or the same) and its upstream."""
        if actions.redirect is not None:
            return self._redirect(request, actions, path, query, request_id, outcome)
        if actions.choice is not None:
            chosen = actions.choice.choose(self._rng)
            if chosen is None:
                outcome.error = "the route's chosen backend is invalid or every weight is 0"
                return error_response(500, INVALID_BACKEND, request_id=request_id)
            upstream = chosen
        if actions.changes_request:
            rewritten = self._rewritten(request, actions, path, query)
            if rewritten is None:
                outcome.error = "request header not encodable after the route's modifiers"
                return error_response(400, request_id=request_id, close=True)
            request = rewritten
        return request, upstream

    def _redirect(
        self,
        request: web.BaseRequest,
        actions: Actions,
        path: str,
        query: str,
        request_id: str,
        outcome: Outcome,
    ) -> web.StreamResponse:
        redirect = actions.redirect
        assert redirect is not None
        location = redirect_location(
            redirect,
            scheme=self._scheme,
            host=normalize_host(request.headers.get("Host", "")),
            path=path,
            query=query,
            matched_prefix=actions.matched_prefix,
            listener_port=self._public_port,
        )
        if location is None:
            outcome.error = "redirect: the Host header is no host name"
            response = error_response(400, "A Host header is required (to redirect)\n")
        else:
            response = web.Response(status=redirect.status_code, headers={"Location": location})
        response.headers[REQUEST_ID] = request_id
        if request.body_exists:
            # The body is not read here; closing spares draining it for the next request.
            response.force_close()
        return response

    @staticmethod
    def _rewritten(
        request: web.BaseRequest, actions: Actions, path: str, query: str
    ) -> web.BaseRequest | None:
        """A copy of `request` with the route's header modifier and URL rewrite applied
        (None if a field cannot be encoded). Made before the body is read: aiohttp copies a
        request only then; the copy shares the body and the connection."""
        rewrite = actions.rewrite
        changes: dict[str, object] = {}
        if rewrite is not None and rewrite.path is not None:
            target = new_path(rewrite.path, path, actions.matched_prefix)
            changes["rel_url"] = URL(f"{target}?{query}" if query else target, encoded=True)
        hostname = rewrite.hostname if rewrite is not None else None
        if hostname is not None or actions.request_headers is not None:
            changes["headers"] = modified_headers(
                request.headers, actions.request_headers, host=hostname
            )
        try:
            return request.clone(**changes)  # type: ignore[arg-type]
        except UnicodeEncodeError:
            return None
