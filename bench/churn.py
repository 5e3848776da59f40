"""The churn section (issue 14): requests/s and failed requests while one of three backends is
stopped and started again every period (20 s; --quick: 4 s), under the same wrk load as the
proxy section, kubeferry with its JSON access log against nginx as the load balancer.

Each backend is an nginx of its own here (the proxy section's share one master), so one can be
stopped alone: SIGTERM, nginx's fast shutdown, closes its listener and every connection at
once, pooled keep-alive ones included, as a rolling restart does. It stays down for a quarter
of the period (at most 2 s), then starts on the same port. Each load balancer gets its own
run of `churn_cycles` periods with a stop in the middle of each.

A failed request fails the section: a request that nothing received must be retried, whatever
the retry budget says. kubeferry's access log tells how its requests were saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.backends import BODY, nginx_argv, nginx_http_preamble, nginx_preamble
from bench.loadbalancers import start as start_balancer
from bench.options import Options
from bench.peers import Launch, kubeferry_lb, nginx_lb
from bench.processes import BenchError, CpuPlan, ProcessGroup, free_port, group_cpu_seconds
from bench.processes import wait_http_ok as wait_ok
from bench.report import Row, Section, markdown_table, text_table
from bench.wrk import WrkResult, parse_wrk, wrk_argv

NGINX = "nginx"
KUBEFERRY = "kubeferry + JSON access log"
BACKENDS = 3
MAX_DOWN_SECONDS = 2.0


@dataclass(slots=True)
class _Backend:
    """One nginx backend; `process` is None while it is stopped."""

    name: str
    port: int
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, processes: ProcessGroup, cpus: frozenset[int] | None) -> None:
        self.process = processes.start(self.name, self.argv, cpus=cpus)
        wait_ok(f"http://127.0.0.1:{self.port}/healthz", process=self.process, log=self.log)

    def stop(self, processes: ProcessGroup) -> None:
        if self.process is not None:
            processes.stop(self.process)  # SIGTERM to its group: nginx's fast shutdown
            self.process = None


def _backend(workdir: Path, n: int) -> _Backend:
    name = f"churn-backend-{n}"
    port = free_port()
    config = workdir / f"{name}.conf"
    config.write_text(
        nginx_preamble(workdir, name)
        + "http {"
        + nginx_http_preamble(workdir)
        + "  default_type text/plain;\n"
        + f"  server {{ listen 127.0.0.1:{port}; "
        + f'location / {{ return 200 "{BODY.format(n=n)}"; }} }}'
        + "\n}\n"
    )
    return _Backend(name, port, nginx_argv(workdir, config, name), workdir / f"{name}-error.log")


def run(options: Options) -> Section:
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="kubeferry-churn-"))
    rows: list[Row] = []
    notes: list[str] = []
    failures: list[str] = []
    cpus = CpuPlan.split(pin=options.pin_cpus)
    try:
        with ProcessGroup() as processes, contextlib.ExitStack() as files:
            backends = [_backend(workdir, n) for n in range(1, BACKENDS + 1)]
            for backend in backends:
                backend.start(processes, cpus.load)
            ports = [b.port for b in backends]
            launches: list[tuple[str, Launch]] = [
                (NGINX, nginx_lb(workdir, free_port(), ports)),
                (
                    KUBEFERRY,
                    kubeferry_lb(
                        workdir, free_port(), ports, executable=options.kubeferry, access_log=True
                    ),
                ),
            ]
            for name, launch in launches:
                contender = start_balancer(processes, files, name, launch, cpus=cpus.balancer)
                if isinstance(contender, str):
                    rows.append(Row(name, problem="failed, details below"))
                    notes.append(contender)
                    failures.append(f"{name} did not start")
                    continue
                print(f"churn: {name} ...", flush=True)
                try:
                    result, stops = measure(
                        processes, options, contender.url, contender.process, backends[1], cpus
                    )
                except BenchError as error:
                    rows.append(Row(name, problem="failed, details below"))
                    notes.append(f"{name} failed:\n```\n{error}\n```")
                    failures.append(f"{name}: {error}")
                    continue
                finally:
                    processes.stop(contender.process)
                rows.append(Row(name, result))
                notes.append(f"{name}: {stops} stops; {result.errors} failed requests.")
                if result.errors:
                    failures.append(
                        f"{name}: {result.errors} of {result.requests} requests failed "
                        "while a backend restarted"
                    )
                if name == KUBEFERRY and launch.stdout_path is not None:
                    notes.append(describe_access_log(launch.stdout_path))
    finally:
        if options.keep_temp:
            print(f"kept configs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    notes.append(
        f"Machine load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} "
        f"after, on {os.cpu_count()} CPUs. CPU placement: {cpus.describe()}."
    )
    baseline = next((r.result for r in rows if r.name == NGINX and r.result), None)
    baseline_rps = baseline.requests_per_second if baseline else None
    print()
    print(text_table(rows, baseline_rps))
    for note in notes:
        print(note)
    period = options.churn_period_seconds
    setup = (
        f"`wrk -t{options.threads} -c{options.connections} -d{period * options.churn_cycles}s` "
        f"per load balancer; one of the three nginx backends stopped (SIGTERM) in the middle "
        f"of every {period} s and started again {down_seconds(period):g} s later. A failed "
        "request fails the section."
    )
    markdown = (
        f"## Churn: one backend restarted every {period} s\n\n"
        + setup
        + "\n\n"
        + markdown_table(rows, baseline_rps)
        + "".join(f"\n{note}\n" for note in notes)
    )
    return Section("churn", markdown, tuple(failures))


def down_seconds(period: int) -> float:
    return min(MAX_DOWN_SECONDS, period / 4)


def measure(
    processes: ProcessGroup,
    options: Options,
    url: str,
    balancer: subprocess.Popen[bytes],
    victim: _Backend,
    cpus: CpuPlan,
) -> tuple[WrkResult, int]:
    """One wrk run over `churn_cycles` periods, the victim stopped mid-period each time."""
    period = options.churn_period_seconds
    duration = period * options.churn_cycles
    argv = wrk_argv(
        url, duration_seconds=duration, connections=options.connections, threads=options.threads
    )
    cpu_before = group_cpu_seconds(balancer)
    started = time.monotonic()
    wrk = processes.start(
        "wrk", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cpus=cpus.load
    )
    stops = 0
    try:
        for cycle in range(options.churn_cycles):
            _sleep_until(started + cycle * period + period / 2)
            victim.stop(processes)
            stops += 1
            time.sleep(down_seconds(period))
            victim.start(processes, cpus.load)
        # wrk stops itself after -d; the timeout only guards against a hang.
        out, err = wrk.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 30} s") from None
    finally:
        processes.stop(wrk)
        if victim.process is None:
            victim.start(processes, cpus.load)
    if wrk.returncode != 0:
        raise BenchError(f"wrk exited with {wrk.returncode}: {err.decode(errors='replace')}")
    result = parse_wrk(out.decode(errors="replace"))
    cpu = group_cpu_seconds(balancer) - cpu_before
    return dataclasses.replace(result, server_cpu_seconds=cpu), stops


def _sleep_until(deadline: float) -> None:
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)


def describe_access_log(path: Path) -> str:
    """How kubeferry's requests fared, from its access lines: retried ones and failed ones."""
    retried: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    with path.open("rb") as log:
        for raw in log:
            if b'"event": "access"' not in raw:
                continue
            line = json.loads(raw)
            if line.get("retries"):
                retried[_kind(str(line.get("error", "")))] += 1
            if int(line.get("status", 0)) >= 500:
                failed[str(line.get("error", ""))] += 1
    saved = ", ".join(f"{n} after {kind}" for kind, n in retried.most_common()) or "none"
    lost = "; ".join(f"{n}x {error}" for error, n in failed.most_common()) or "none"
    return f"{KUBEFERRY}: requests saved by a retry: {saved}. Failed: {lost}."


def _kind(error: str) -> str:
    # The error of a retried request is its last failed attempt's.
    text = error.split(";")[0]
    if text.startswith("connect failed"):
        return "a refused connect"
    if text.startswith("connect timed out"):
        return "a connect timeout"
    if text.startswith("connection to") and "before the request was written" in text:
        return "a connection reset before the request was written"
    if text.startswith("no response"):
        return "a broken connection (re-sent)"
    return text[:60] or "?"
