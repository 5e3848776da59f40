"""`python -m bench.upstream_alone`: the CPU per request of kubeferry's upstream client alone,
next to a minimal client, over one nginx on loopback.

It splits the bare proxy's cost (bench/bare_proxy.py): that row is aiohttp's server
(bench/aiohttp_floor.py) plus an upstream leg, and this measures the upstream leg without a
server in front. `--tasks` coroutines share one uvloop and send keep-alive GETs until
`--requests` were answered, through:

- `kubeferry`: proxy.upstream.UpstreamClient (pooled connections, the per-exchange state,
  the watchdog, the `poll()` that checks a reused connection was not closed);
- `minimal`: bench.minimal_upstream, one asyncio.Protocol per connection feeding httptools,
  a future per request, nothing else: about the least an asyncio HTTP/1.1 client can spend.

CPU per request is this process's user plus system time (getrusage) over the requests. The
backend (nginx, `bench.backends`) runs pinned to other CPUs than this process when the
machine has two or more (`CpuPlan`, as `make bench` places a load balancer and its load).
Every request is bounded: a run stops after `--requests` answers or `--seconds`, whichever
comes first, and any answer but 200 is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench.backends import start_backends
from bench.bare_proxy import kubeferry_client
from bench.minimal_upstream import MinimalPool
from bench.processes import CpuPlan, ProcessGroup
from proxy.model import Endpoint
from proxy.upstream import UpstreamClient

HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
CLIENTS = ("kubeferry", "minimal")


@dataclass(frozen=True, slots=True)
class Measured:
    client: str
    requests: int
    seconds: float
    user_seconds: float
    system_seconds: float

    @property
    def cpu_per_request(self) -> float:
        return (self.user_seconds + self.system_seconds) / max(1, self.requests)

    def line(self) -> str:
        per = 1e6 / max(1, self.requests)
        return (
            f"{self.client}: {self.requests} requests in {self.seconds:.2f} s, "
            f"CPU {self.cpu_per_request * 1e6:.1f} µs/request "
            f"(user {self.user_seconds * per:.1f}, system {self.system_seconds * per:.1f})"
        )


Worker = Callable[[Callable[[], bool]], Awaitable[int]]


def kubeferry_worker(client: UpstreamClient, port: int) -> Worker:
    endpoint = Endpoint("127.0.0.1", port)

    async def work(more: Callable[[], bool]) -> int:
        done = 0
        while more():
            answer = await client.send(endpoint, HEAD)
            while not answer.done:
                await answer.wait()
                answer.take()
            answer.take()
            answer.release()
            if answer.status != 200:
                raise RuntimeError(f"backend answered {answer.status}")
            done += 1
        return done

    return work


def minimal_worker(pool: MinimalPool, port: int) -> Worker:
    async def work(more: Callable[[], bool]) -> int:
        done = 0
        while more():
            conn = await pool.take(port)
            await conn.exchange(HEAD)
            if conn.status != 200:
                raise RuntimeError(f"backend answered {conn.status}")
            pool.give_back(port, conn)
            done += 1
        return done

    return work


async def measure(client: str, port: int, *, requests: int, tasks: int, seconds: float) -> Measured:
    upstream = kubeferry_client() if client == "kubeferry" else None
    minimal = MinimalPool()
    work = (
        kubeferry_worker(upstream, port) if upstream is not None else minimal_worker(minimal, port)
    )
    claimed = 0
    deadline = time.monotonic() + seconds

    def more() -> bool:
        nonlocal claimed
        if claimed >= requests or time.monotonic() > deadline:
            return False
        claimed += 1
        return True

    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        answered = sum(await asyncio.gather(*(work(more) for _ in range(tasks))))
    finally:
        if upstream is not None:
            await upstream.close()
        minimal.close()
    after, ended = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return Measured(
        client,
        answered,
        ended - started,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_alone", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000, help="per client and round")
    parser.add_argument("--tasks", type=int, default=32, help="concurrent coroutines")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per run")
    args = parser.parse_args(argv)
    # This process takes the load balancer's CPU, the backend the others (as make bench).
    plan = CpuPlan.split(pin=True)
    with ProcessGroup() as processes, tempfile.TemporaryDirectory() as workdir:
        [port], _ = start_backends(processes, Path(workdir), count=1, cpus=plan.load)
        if plan.balancer:
            os.sched_setaffinity(0, plan.balancer)
        for round_number in range(1, args.rounds + 1):
            for client in CLIENTS:
                result = uvloop.run(
                    measure(
                        client,
                        port,
                        requests=args.requests,
                        tasks=args.tasks,
                        seconds=args.seconds,
                    )
                )
                print(f"round {round_number}: {result.line()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
