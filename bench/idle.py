"""The idle-connections section (issue 8): kubeferry holding 10,000 idle keep-alive client
connections while a few hundred busy ones keep it loaded.

kubeferry proxy with its default settings (JSON access log on, to a file) over the same three
nginx backends as the proxy section, pinned the same way:
  1. baseline: `wrk -c64` requests/s and p99 (after a warm-up); then, for comparison only,
     `wrk -c256` with nothing idle, so the table separates what 256 busy connections cost
     from what 10,000 idle ones do;
  2. `--idle-connections` (10,000) keep-alive connections opened by the harness, 100 at a
     time, one request each (so kubeferry has served them as HTTP, not just accepted them),
     then left idle;
  3. with them held: `wrk -c256` (`--idle-active`) for the same duration;
  4. kubeferry's RSS (VmRSS) after opening and after that load; which idle connections it
     closed; a sample of 200 of them asked one more request; every socket closed.

Failures: fewer connections opened than tried, held requests/s under 0.8x the baseline,
RSS at or over 300 MiB, an idle connection closed by kubeferry, a sample request not answered,
or more than 1% failed requests in either wrk run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.backends import start_backends
from bench.fdlimit import HEADROOM, raise_nofile, usable_connections
from bench.idle_client import Opened, Sampled, ask_sample, close_all, closed_by_peer, open_idle
from bench.loadbalancers import MAX_ERROR_SHARE
from bench.loadbalancers import start as start_balancer
from bench.machine import rss_bytes
from bench.options import Options
from bench.peers import kubeferry_lb
from bench.processes import BenchError, CpuPlan, ProcessGroup, free_port, group_cpu_seconds
from bench.report import Row, Section, markdown_table, text_table
from bench.wrk import WrkResult, run_wrk

NAME = "kubeferry + JSON access log"
BASELINE_CONNECTIONS = 64
MIN_HELD_RATIO = 0.8
MAX_RSS_BYTES = 300 * 1024 * 1024
SAMPLE_SIZE = 200
OPEN_DEADLINE_SECONDS = 120.0
SAMPLE_DEADLINE_SECONDS = 60.0
# kubeferry closes a client connection idle for timeouts.client_keepalive_seconds (75 s by
# default). The first connection opened stays idle through the opening, the held load and
# the checks, so the held load is kept well inside that.
MAX_HELD_LOAD_SECONDS = 30
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class IdleResult:
    """Everything the section measured; `judge` turns it into failures."""

    wanted: int  # --idle-connections
    attempted: int  # what the file-descriptor limit allowed
    opened: int
    open_seconds: float
    open_failures: Counter[str]
    baseline: WrkResult
    control: WrkResult  # the held run's wrk, before any idle connection: not judged
    held: WrkResult
    active_connections: int
    rss_before: int | None  # bytes, after the baseline, before opening
    rss_opened: int | None
    rss_after: int | None
    closed_by_server: int
    sample: Sampled

    @property
    def held_ratio(self) -> float:
        base = self.baseline.requests_per_second
        return self.held.requests_per_second / base if base > 0 else 0.0


def judge(result: IdleResult) -> list[str]:
    """The section's pass/fail rules; an empty list is a pass."""
    failures: list[str] = []
    if result.opened < result.attempted:
        failures.append(
            f"only {result.opened:,} of {result.attempted:,} idle connections opened "
            f"({reasons(result.open_failures)})"
        )
    for label, run in (("baseline", result.baseline), ("held", result.held)):
        if run.errors > MAX_ERROR_SHARE * max(run.requests, 1):
            failures.append(f"{label} run: {run.errors} of {run.requests} requests failed")
    if result.held_ratio < MIN_HELD_RATIO:
        failures.append(
            f"with {result.opened:,} idle connections held, requests/s fell to "
            f"{result.held_ratio:.2f}x the baseline (at least {MIN_HELD_RATIO:.2f}x required)"
        )
    for label, rss in (("after opening", result.rss_opened), ("after the load", result.rss_after)):
        if rss is None:
            failures.append(f"kubeferry's RSS {label} unknown: the process was gone")
        elif rss >= MAX_RSS_BYTES:
            failures.append(
                f"kubeferry's RSS {label} {rss / MIB:.0f} MiB, at or over "
                f"{MAX_RSS_BYTES // MIB} MiB"
            )
    if result.closed_by_server:
        failures.append(
            f"kubeferry closed {result.closed_by_server:,} of {result.opened:,} idle connections"
        )
    if result.sample.answered < result.sample.asked:
        failures.append(
            f"only {result.sample.answered} of {result.sample.asked} sampled idle connections "
            f"answered a second request ({reasons(result.sample.failures)})"
        )
    return failures


def reasons(failures: Counter[str]) -> str:
    return "; ".join(f"{n}x {reason}" for reason, n in failures.most_common(5)) or "no error"


def run(options: Options) -> Section:
    limit = raise_nofile(options.idle_connections + HEADROOM)
    attempted = usable_connections(limit.soft, wanted=options.idle_connections)
    notes = [
        f"RLIMIT_NOFILE of the harness (kubeferry and wrk inherit it): soft {limit.soft:,}, "
        f"hard {limit.hard:,}; {HEADROOM:,} kept for everything but the idle connections."
    ]
    if limit.problem:
        notes.append(f"File-descriptor limit: {limit.problem}.")
    if attempted < options.idle_connections:
        notes.append(
            f"The limit leaves room for {attempted:,} idle connections, not the "
            f"{options.idle_connections:,} asked for: this run holds {attempted:,}."
        )
    duration = min(options.duration_seconds, MAX_HELD_LOAD_SECONDS)
    if duration < options.duration_seconds:
        notes.append(
            f"wrk runs {duration} s here, not {options.duration_seconds} s: kubeferry closes "
            "client connections idle for 75 s (timeouts.client_keepalive_seconds)."
        )
    cpus = CpuPlan.split(pin=options.pin_cpus)
    workdir = Path(tempfile.mkdtemp(prefix="kubeferry-idle-"))
    try:
        with ProcessGroup() as processes, contextlib.ExitStack() as files:
            backends, _ = start_backends(processes, workdir, cpus=cpus.load)
            launch = kubeferry_lb(
                workdir, free_port(), backends, executable=options.kubeferry, access_log=True
            )
            contender = start_balancer(processes, files, NAME, launch, cpus=cpus.balancer)
            if isinstance(contender, str):
                return failed_section(options, contender, notes)
            try:
                result = measure(
                    processes,
                    options,
                    contender.process,
                    launch.port,
                    attempted=attempted,
                    duration=duration,
                    cpus=cpus.load,
                )
            except BenchError as error:
                return failed_section(options, f"{NAME} failed:\n```\n{error}\n```", notes)
            finally:
                processes.stop(contender.process)
    finally:
        if options.keep_temp:
            print(f"kept configs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    notes.append(f"CPU placement: {cpus.describe()}.")
    return summarize(options, result, duration, notes)


def measure(
    processes: ProcessGroup,
    options: Options,
    balancer: subprocess.Popen[bytes],
    port: int,
    *,
    attempted: int,
    duration: int,
    cpus: frozenset[int] | None,
) -> IdleResult:
    url = f"http://127.0.0.1:{port}/"

    def load(connections: int, seconds: int) -> WrkResult:
        cpu_before = group_cpu_seconds(balancer)
        result = run_wrk(
            processes,
            url,
            duration_seconds=seconds,
            connections=connections,
            threads=options.threads,
            cpus=cpus,
        )
        return dataclasses.replace(
            result, server_cpu_seconds=group_cpu_seconds(balancer) - cpu_before
        )

    if options.warmup_seconds:
        load(BASELINE_CONNECTIONS, options.warmup_seconds)
    print(f"idle: baseline, wrk -c{BASELINE_CONNECTIONS} ...", flush=True)
    baseline = load(BASELINE_CONNECTIONS, duration)
    print(f"idle: wrk -c{options.idle_active_connections}, nothing idle yet ...", flush=True)
    control = load(options.idle_active_connections, duration)
    rss_before = rss_bytes(balancer.pid)
    # One loop for the whole hold: the sockets belong to it while they are idle, and no loop
    # runs while wrk does (the harness only waits for wrk then).
    with asyncio.Runner() as runner:
        print(f"idle: opening {attempted:,} keep-alive connections ...", flush=True)
        opened: Opened = runner.run(
            open_idle(port, attempted, deadline_seconds=OPEN_DEADLINE_SECONDS)
        )
        try:
            print(
                f"idle: {len(opened.sockets):,} held (in {opened.seconds:.1f} s); "
                f"wrk -c{options.idle_active_connections} ...",
                flush=True,
            )
            rss_opened = rss_bytes(balancer.pid)
            held = load(options.idle_active_connections, duration)
            rss_after = rss_bytes(balancer.pid)
            closed = closed_by_peer(opened.sockets)
            sample = runner.run(
                ask_sample(opened.sockets, SAMPLE_SIZE, deadline_seconds=SAMPLE_DEADLINE_SECONDS)
            )
        finally:
            close_all(opened.sockets)
    return IdleResult(
        wanted=options.idle_connections,
        attempted=attempted,
        opened=len(opened.sockets),
        open_seconds=opened.seconds,
        open_failures=opened.failures,
        baseline=baseline,
        control=control,
        held=held,
        active_connections=options.idle_active_connections,
        rss_before=rss_before,
        rss_opened=rss_opened,
        rss_after=rss_after,
        closed_by_server=closed,
        sample=sample,
    )


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f} MiB"


def verdict(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def checks_table(result: IdleResult) -> str:
    """The measured checks against their limits, as Markdown."""
    sample = result.sample
    rows = [
        (
            "idle keep-alive connections opened",
            f"{result.opened:,} of {result.attempted:,} in {result.open_seconds:.1f} s",
            "all",
            result.opened >= result.attempted,
        ),
        (
            f"requests/s with them held (wrk -c{result.active_connections}) vs baseline",
            f"{result.held_ratio:.2f}x",
            f">= {MIN_HELD_RATIO:.2f}x",
            result.held_ratio >= MIN_HELD_RATIO,
        ),
        (
            "kubeferry RSS after opening (before it)",
            f"{mib(result.rss_opened)} ({mib(result.rss_before)})",
            f"< {MAX_RSS_BYTES // MIB} MiB",
            result.rss_opened is not None and result.rss_opened < MAX_RSS_BYTES,
        ),
        (
            "kubeferry RSS after the load",
            mib(result.rss_after),
            f"< {MAX_RSS_BYTES // MIB} MiB",
            result.rss_after is not None and result.rss_after < MAX_RSS_BYTES,
        ),
        (
            "idle connections closed by kubeferry",
            f"{result.closed_by_server:,}",
            "0",
            result.closed_by_server == 0,
        ),
        (
            "sampled idle connections answering a second request",
            f"{sample.answered} of {sample.asked}",
            "all",
            sample.answered >= sample.asked,
        ),
    ]
    lines = ["| check | measured | limit | result |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {got} | {bound} | {verdict(ok)} |" for name, got, bound, ok in rows]
    return "\n".join(lines) + "\n"


def summarize(options: Options, result: IdleResult, duration: int, notes: list[str]) -> Section:
    runs = [
        Row(f"{NAME}, wrk -c{BASELINE_CONNECTIONS} (baseline)", result.baseline),
        Row(f"{NAME}, wrk -c{result.active_connections}, nothing idle", result.control),
        Row(
            f"{NAME}, {result.opened:,} idle held, wrk -c{result.active_connections}",
            result.held,
        ),
    ]
    baseline = result.baseline.requests_per_second
    failures = judge(result)
    if result.open_failures:
        notes.append(f"Opening failures: {reasons(result.open_failures)}.")
    if result.rss_before is not None and result.rss_opened is not None and result.opened:
        per = (result.rss_opened - result.rss_before) / result.opened
        notes.append(
            f"kubeferry's RSS grew {mib(result.rss_opened - result.rss_before)} for "
            f"{result.opened:,} idle connections: about {per / 1024:.1f} KiB each."
        )
    control = result.control.requests_per_second
    if control > 0:
        notes.append(
            f"With the idle connections held, requests/s is "
            f"{result.held.requests_per_second / control:.2f}x that of the same "
            f"wrk -c{result.active_connections} with nothing idle (not judged: the rule is "
            f"against the -c{BASELINE_CONNECTIONS} baseline)."
        )
    print()
    print(text_table(runs, baseline, first="run", ratio="vs baseline"))
    print(checks_table(result))
    for note in notes:
        print(note)
    setup = (
        f"kubeferry proxy, default settings (JSON access log on, to a file), over the three "
        f"nginx backends, pinned as in the proxy section. Baseline: `wrk -t{options.threads} "
        f"-c{BASELINE_CONNECTIONS} -d{duration}s --latency` after {options.warmup_seconds} s "
        f"of warm-up, then the same with `-c{result.active_connections}` for comparison. "
        f"Then {result.attempted:,} keep-alive connections opened by the harness "
        f"(100 at a time, one request each, then idle) and, while they are held, "
        f"`wrk -c{result.active_connections}` for the same {duration} s. Afterwards: which "
        f"idle connections kubeferry closed, and {SAMPLE_SIZE} of them (spread over the "
        "opening order, the longest idle first) asked one more request."
    )
    markdown = (
        f"## Idle connections: {result.opened:,} held during the load\n\n"
        + setup
        + "\n\n"
        + markdown_table(runs, baseline, first="run", ratio="vs baseline")
        + "\n"
        + checks_table(result)
        + "".join(f"\n{note}\n" for note in notes)
    )
    return Section("idle", markdown, tuple(failures))


def failed_section(options: Options, problem: str, notes: list[str]) -> Section:
    print(problem)
    markdown = (
        f"## Idle connections: {options.idle_connections:,} held during the load\n\n"
        f"Not measured:\n\n{problem}\n" + "".join(f"\n{note}\n" for note in notes)
    )
    return Section("idle", markdown, (problem.splitlines()[0],))
