"""Running wrk and reading its `--latency` report."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.processes import BenchError, ProcessGroup

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = r"([0-9.]+)(us|ms|s|m|h)"
_PERCENTILE = re.compile(rf"^\s*(50|75|90|99)(?:\.0+)?%\s+{_DURATION}\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(rf"^\s*(\d+) requests in {_DURATION},", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run. Latencies in seconds; `errors` sums socket errors and non-2xx/3xx answers."""

    requests_per_second: float
    p50_seconds: float
    p99_seconds: float
    requests: int
    duration_seconds: float
    socket_errors: int = 0
    non_2xx: int = 0
    # Filled in by the harness, not wrk: CPU seconds the load balancer used during the run.
    server_cpu_seconds: float | None = None

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def cpu_per_request_seconds(self) -> float | None:
        if self.server_cpu_seconds is None or not self.requests:
            return None
        return self.server_cpu_seconds / self.requests


def parse_duration(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's report as printed with `--latency`; BenchError if a required part is missing."""
    percentiles = {int(m[1]): parse_duration(m[2], m[3]) for m in _PERCENTILE.finditer(text)}
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchError("unexpected wrk output (was --latency given?):\n" + text)
    socket_errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests_per_second=float(rps[1]),
        p50_seconds=percentiles[50],
        p99_seconds=percentiles[99],
        requests=int(total[1]),
        duration_seconds=parse_duration(total[2], total[3]),
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
    )


def run_wrk(
    processes: ProcessGroup,
    url: str,
    *,
    duration_seconds: int,
    connections: int,
    threads: int,
    cpus: frozenset[int] | None = None,
) -> WrkResult:
    """One bounded wrk run against a loopback URL."""
    argv = wrk_argv(
        url, duration_seconds=duration_seconds, connections=connections, threads=threads
    )
    # wrk stops itself after -d; the timeout only guards against a hang.
    output = processes.run("wrk", argv, timeout_seconds=duration_seconds + 30, cpus=cpus)
    return parse_wrk(output)


def wrk_argv(url: str, *, duration_seconds: int, connections: int, threads: int) -> list[str]:
    """The wrk command line every section uses; BenchError for anything but loopback."""
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise BenchError(f"{url}: the benchmark only loads loopback addresses")
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_seconds}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
