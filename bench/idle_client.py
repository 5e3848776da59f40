"""The idle section's client: many keep-alive HTTP/1.1 connections to one loopback port, each
made real by one request, then left idle; later checked (did the server close any?), a
sample asked a second request, and every socket closed.

Plain non-blocking sockets on an asyncio loop, a few KiB each, so 10,000 cost the harness
little. Every loop is bounded in count and in time; a connection that fails is counted with
its reason, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from dataclasses import dataclass

MAX_RESPONSE_BYTES = 64 * 1024
READ_CHUNK = 16 * 1024
OPEN_CONCURRENCY = 100  # under the listener's backlog of 1024: no SYN is dropped and resent
SAMPLE_CONCURRENCY = 50


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP response found in a buffer."""

    status: int
    keep_alive: bool
    length: int  # bytes of the buffer the response took, head and body


@dataclass(frozen=True, slots=True)
class Opened:
    """The outcome of opening: the sockets held idle, and why the others failed."""

    sockets: tuple[socket.socket, ...]
    failures: Counter[str]
    seconds: float


@dataclass(frozen=True, slots=True)
class Sampled:
    """A sample of the held connections asked one more request each."""

    asked: int
    answered: int
    failures: Counter[str]


def request_bytes(number: int) -> bytes:
    return (
        f"GET /idle/{number} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kubeferry-bench\r\n\r\n"
    ).encode("ascii")


def parse_answer(buffer: bytes) -> Answer | None:
    """The response at the start of `buffer`, or None while it is incomplete. ValueError
    for what is not an HTTP/1.1 response with a Content-Length or chunked body."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_RESPONSE_BYTES:
            raise ValueError("response head too long")
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version != "HTTP/1.1" or not code.isdigit():
        raise ValueError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"malformed header line: {line[:80]!r}")
        fields[name.strip().lower()] = value.strip()
    keep_alive = "close" not in fields.get("connection", "").lower()
    body_start = end + 4
    if "chunked" in fields.get("transfer-encoding", "").lower():
        last = buffer.find(b"0\r\n\r\n", body_start)
        if last < 0:
            return None
        return Answer(int(code), keep_alive, last + 5)
    if "content-length" not in fields:
        raise ValueError("response without Content-Length or chunked body")
    total = body_start + int(fields["content-length"])
    if len(buffer) < total:
        return None
    return Answer(int(code), keep_alive, total)


async def exchange(sock: socket.socket, number: int, *, timeout_seconds: float) -> Answer:
    """One request and its whole response on `sock`; OSError, TimeoutError or ValueError."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_seconds):
        await loop.sock_sendall(sock, request_bytes(number))
        buffer = b""
        while True:
            chunk = await loop.sock_recv(sock, READ_CHUNK)
            if not chunk:
                raise ConnectionResetError("closed by the server before a whole response")
            buffer += chunk
            answer = parse_answer(buffer)
            if answer is not None:
                return answer


async def _open_one(port: int, number: int, timeout_seconds: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout_seconds):
            await loop.sock_connect(sock, ("127.0.0.1", port))
        answer = await exchange(sock, number, timeout_seconds=timeout_seconds)
        if answer.status != 200 or not answer.keep_alive:
            raise ValueError(f"status {answer.status}, keep-alive {answer.keep_alive}")
    except BaseException:
        sock.close()
        raise
    return sock


def describe_error(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.errno is not None:
        return f"{type(error).__name__} [Errno {error.errno}]"
    return f"{type(error).__name__}: {error}"[:120]


async def open_idle(
    port: int, count: int, *, deadline_seconds: float, timeout_seconds: float = 10.0
) -> Opened:
    """Open `count` connections, `OPEN_CONCURRENCY` at a time, each answering one request.
    Stops at `deadline_seconds` with what it has."""
    sockets: list[socket.socket] = []
    failures: Counter[str] = Counter()
    numbers = iter(range(count))
    started = time.monotonic()

    async def worker() -> None:
        for number in numbers:  # shared: each number is taken by one worker
            try:
                sockets.append(await _open_one(port, number, timeout_seconds))
            except (OSError, TimeoutError, ValueError) as error:
                failures[describe_error(error)] += 1

    try:
        async with asyncio.timeout(deadline_seconds), asyncio.TaskGroup() as group:
            for _ in range(min(OPEN_CONCURRENCY, count)):
                group.create_task(worker())
    except TimeoutError:
        unfinished = count - len(sockets) - sum(failures.values())
        failures[f"not opened within {deadline_seconds:.0f} s"] += unfinished
    except BaseException:
        close_all(sockets)
        raise
    return Opened(tuple(sockets), failures, time.monotonic() - started)


def closed_by_peer(sockets: tuple[socket.socket, ...]) -> int:
    """How many of the (idle, non-blocking) sockets the server has closed or reset: a read
    that would block means the connection is still there; b"" or an error means it is not."""
    closed = 0
    for sock in sockets:
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            continue  # nothing to read: still open, still idle
        except OSError:
            pass  # reset
        # b"" (an orderly close), or bytes the server sent unasked (a 408 before closing).
        closed += 1
    return closed


def sample_indices(total: int, size: int) -> list[int]:
    """`size` indices spread evenly over 0..total-1, the first-opened (longest idle) first."""
    size = min(size, total)
    return [i * total // size for i in range(size)]


async def ask_sample(
    sockets: tuple[socket.socket, ...],
    size: int,
    *,
    deadline_seconds: float,
    timeout_seconds: float = 10.0,
) -> Sampled:
    """A second request on `size` of the held connections, spread over the opening order."""
    chosen = [sockets[i] for i in sample_indices(len(sockets), size)]
    failures: Counter[str] = Counter()
    answered = 0
    limit = asyncio.Semaphore(SAMPLE_CONCURRENCY)

    async def ask(number: int, sock: socket.socket) -> None:
        nonlocal answered
        async with limit:
            try:
                answer = await exchange(sock, number, timeout_seconds=timeout_seconds)
            except (OSError, TimeoutError, ValueError) as error:
                failures[describe_error(error)] += 1
                return
        if answer.status == 200:
            answered += 1
        else:
            failures[f"status {answer.status}"] += 1

    try:
        async with asyncio.timeout(deadline_seconds), asyncio.TaskGroup() as group:
            for number, sock in enumerate(chosen):
                group.create_task(ask(number, sock))
    except TimeoutError:
        failures[f"no answer within {deadline_seconds:.0f} s"] += (
            len(chosen) - answered - sum(failures.values())
        )
    return Sampled(len(chosen), answered, failures)


def close_all(sockets: list[socket.socket] | tuple[socket.socket, ...]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
