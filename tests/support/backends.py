"""Real HTTP backends on loopback for integration tests.

`Backend` is an aiohttp low-level server (no router, so encoded paths arrive byte for byte)
that answers by path:
  /healthz          200 "ok" while `healthy`, else 503
  /slow?seconds=S   waits S seconds (capped), then answers its name
  /stream?bytes=N   N bytes generated on the fly (Content-Length set; `&chunked=1` for chunked)
  /upload           counts the request body's bytes, answers {"bytes": N, "name": ...}
  /status/N         answers status N
  /headers[/...]    the request as JSON: method, raw path, headers as [name, value] pairs
  /drop             closes the connection without answering
  /break-mid        sends a head and part of the body, then aborts the connection
  /gzip             a gzip-encoded body with `Content-Encoding: gzip`
  /cookie           sets a cookie; echoes the Cookie header it received
  /ws               websocket echo (autoping off: pongs are sent by hand; "close:CODE" closes)
  anything else     its name, with `X-Backend: <name>`

`stop()` closes the listener and every connection (as a dead process would); `start()` again
binds the same port.
"""

from __future__ import annotations

import asyncio
import gzip
import json

from aiohttp import WSMsgType, web

_CHUNK = b"x" * 65536
MAX_SLOW_SECONDS = 30.0


class Backend:
    def __init__(self, name: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.healthy = True
        self.requests = 0  # requests answered, health checks excluded
        self.pings: list[bytes] = []
        self.close_codes: list[int | None] = []  # websocket close codes, per connection
        self.close_replies: list[int | None] = []  # the peer's answers to "close:CODE"
        self._runner: web.ServerRunner | None = None

    def __repr__(self) -> str:
        return f"<Backend {self.name} {self.url} requests={self.requests}>"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        server = web.Server(self._handle, auto_decompress=False, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=0.5, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/healthz":
            return web.Response(status=200 if self.healthy else 503, text="ok")
        self.requests += 1
        handler = _ROUTES.get("/headers" if path.startswith("/headers/") else path)
        if handler is None and path.startswith("/status/"):
            return web.Response(status=int(path.removeprefix("/status/")), text=self.name)
        if handler is None:
            return web.Response(text=self.name, headers={"X-Backend": self.name})
        return await handler(self, request)

    async def _slow(self, request: web.BaseRequest) -> web.StreamResponse:
        await asyncio.sleep(min(float(request.query.get("seconds", "1")), MAX_SLOW_SECONDS))
        return web.Response(text=self.name, headers={"X-Backend": self.name})

    async def _stream(self, request: web.BaseRequest) -> web.StreamResponse:
        total = int(request.query["bytes"])
        response = web.StreamResponse(headers={"X-Backend": self.name})
        if request.query.get("chunked"):
            response.enable_chunked_encoding()
        else:
            response.content_length = total
        await response.prepare(request)
        left = total if request.method != "HEAD" else 0
        while left > 0:
            piece = _CHUNK if left >= len(_CHUNK) else _CHUNK[:left]
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
        return response

    async def _upload(self, request: web.BaseRequest) -> web.StreamResponse:
        count = 0
        while chunk := await request.content.readany():
            count += len(chunk)
        return web.json_response({"bytes": count, "name": self.name})

    async def _headers(self, request: web.BaseRequest) -> web.StreamResponse:
        body = {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_bytes": len(await request.read()),
        }
        return web.json_response(body, headers={"X-Backend": self.name})

    async def _drop(self, request: web.BaseRequest) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        raise ConnectionResetError("dropped on purpose")

    async def _break_mid(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1_000_000
        await response.prepare(request)
        await response.write(b"y" * 1000)
        await asyncio.sleep(0.05)  # let the partial body reach the proxy first
        assert request.transport is not None
        request.transport.abort()
        return response

    async def _gzip(self, request: web.BaseRequest) -> web.StreamResponse:
        body = gzip.compress(b"compressed hello " * 100)
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}
        )

    async def _cookie(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.Response(text=json.dumps({"cookie": request.headers.get("Cookie")}))
        response.headers["Set-Cookie"] = f"backend={self.name}; Path=/"
        return response

    async def _ws(self, request: web.BaseRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, protocols=("chat", "echo"))
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data.removeprefix("close:")), message=b"bye")
                    self.close_replies.append(ws.close_code)
                    break
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                self.pings.append(msg.data)
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                self.close_codes.append(msg.data)  # the code the peer sent
                break
            else:
                break
        return ws


_ROUTES = {
    "/slow": Backend._slow,
    "/stream": Backend._stream,
    "/upload": Backend._upload,
    "/headers": Backend._headers,
    "/drop": Backend._drop,
    "/break-mid": Backend._break_mid,
    "/gzip": Backend._gzip,
    "/cookie": Backend._cookie,
    "/ws": Backend._ws,
}
