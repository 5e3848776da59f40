"""Real nginx processes as backends, one process each, to be stopped the way backends die.

`master_process off`: the process started is the one serving, so a signal reaches exactly it.
SIGTERM is nginx's fast shutdown (the listener and every connection closed at once, pooled
keep-alive ones included); SIGKILL leaves it to the kernel. `start()` again binds the same
port. Every request it read is in `requests()` as (method, X-Test-Id, status), from nginx's
access log, so a test can tell whether a request was executed twice. `/fail` reads the
request and closes the connection without an answer (nginx's 444).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

from bench.backends import nginx_http_preamble

START_LIMIT_SECONDS = 10.0
STOP_LIMIT_SECONDS = 10.0


def _config(workdir: Path, name: str, port: int) -> str:
    # Every request read, as (method, X-Test-Id, status): how a test sees double execution.
    http_preamble = nginx_http_preamble(workdir, access_log=f"{workdir}/access.log ids")
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format ids '$request_method $http_x_test_id $status';{http_preamble}  default_type text/plain;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "{name}\\n"; }}
    # Reads the request, then closes the connection without a word: a backend failing
    # after it may have acted on the request.
    location /fail {{ return 444; }}
  }}
}}
"""


class NginxBackend:
    """One nginx serving `name` on 127.0.0.1:`port` (answers every path, /healthz too)."""

    def __init__(self, name: str, *, port: int, workdir: Path) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NginxBackend {self.name} :{self.port} {state}, started {self.starts}x>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "nginx.conf"
        config.write_text(_config(self.workdir, self.name, self.port))
        self._process = await asyncio.create_subprocess_exec(
            "nginx",
            "-p",
            str(self.workdir),
            "-e",
            str(self.workdir / "error.log"),
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.starts += 1
        deadline = time.monotonic() + START_LIMIT_SECONDS
        while True:
            if self._process.returncode is not None:
                raise AssertionError(f"{self!r} exited at start: {self._error_tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self!r} not listening: {self._error_tail()}") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def terminate(self) -> None:
        """nginx's fast shutdown: listener and connections closed at once."""
        await self._signal(signal.SIGTERM)

    async def kill(self) -> None:
        await self._signal(signal.SIGKILL)

    async def _signal(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), STOP_LIMIT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"{self!r} ignored signal {signum}") from None

    async def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.kill()

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, X-Test-Id or "-", status) of every request this backend read, in every
        run; health probes included (they carry no X-Test-Id)."""
        log = self.workdir / "access.log"
        if not log.exists():
            return []
        lines = log.read_text().splitlines()
        return [(p[0], p[1], p[2]) for p in (line.split() for line in lines) if len(p) == 3]

    def _error_tail(self) -> str:
        log = self.workdir / "error.log"
        return log.read_text()[-2000:] if log.exists() else "(no error log)"
