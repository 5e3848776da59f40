"""`python -m proxy proxy ...` as a real child process, for what needs a separate process:
signals, exit codes, and the proxy's own memory (RSS from /proc/<pid>/status)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
START_LIMIT_SECONDS = 20.0


@dataclass
class ProxyProcess:
    process: asyncio.subprocess.Process
    port: int
    admin_port: int
    lines: list[dict[str, object]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def events(self, name: str) -> list[dict[str, object]]:
        return [line for line in self.lines if line.get("event") == name]

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.terminate()
        code = await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader
        return code


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", *args]


async def spawn_proxy(
    backend_urls: Sequence[str],
    *,
    port: int,
    admin_port: int,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> ProxyProcess:
    """Start the proxy and wait for its `listening` log line."""
    args = ["proxy", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port)]
    for url in backend_urls:
        args += ["--backend", url]
    args += extra_args
    process = await asyncio.create_subprocess_exec(
        *proxy_command(*args),
        cwd=ROOT,
        env={**os.environ, "KUBEFERRY_ADMIN_HOST": "127.0.0.1", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = ProxyProcess(process, port, admin_port)
    listening = asyncio.get_running_loop().create_future()
    running._reader = asyncio.create_task(_read_lines(running, listening))
    try:
        await asyncio.wait_for(listening, START_LIMIT_SECONDS)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return running


async def _read_lines(running: ProxyProcess, listening: asyncio.Future[None]) -> None:
    assert running.process.stdout is not None
    async for raw in running.process.stdout:
        try:
            line = json.loads(raw)
        except ValueError:
            line = {"event": "text", "message": raw.decode(errors="replace")}
        running.lines.append(line)
        if line.get("event") == "listening" and not listening.done():
            listening.set_result(None)
    if not listening.done():
        listening.set_exception(AssertionError(f"proxy exited before listening: {running.lines}"))
