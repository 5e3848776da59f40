"""An HTTPS listening site whose TLS handshakes have a deadline.

aiohttp's TCPSite passes no handshake timeout to `loop.create_server`, so asyncio's default
(60 s) applies: a client that opens a connection and stalls its handshake holds it that
long, out of reach of the request-head deadline (proxy.protocol), which only starts once
the handshake is done. `TlsSite` is TCPSite with `ssl_handshake_timeout` passed through; it
uses TCPSite's private fields (`_host`, `_port`, `_backlog`, ...), stable across aiohttp
3.x (pinned <4), and tests/integration/proxy/test_tls.py catches a change.
"""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import web


class TlsSite(web.TCPSite):
    """web.TCPSite for `ssl_context` whose handshakes must finish within
    `handshake_timeout_seconds`."""

    __slots__ = ("_handshake_timeout",)

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        handshake_timeout_seconds: float,
        backlog: int,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=backlog)
        self._handshake_timeout = handshake_timeout_seconds

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._handshake_timeout,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
