"""The proxy section: nginx, HAProxy and kubeferry (access log off, then on) as load balancers
over the same three backends, all started up front, then measured one at a time with the same
wrk run, in interleaved rounds; each row is the median round.

Floor: kubeferry with its JSON access log on reaches `options.floor_ratio` of nginx's
requests/s in the same run.

The last row is a reference, not a load balancer: aiohttp's low-level server answering by
itself (bench/aiohttp_floor.py), the ceiling of any aiohttp-served proxy on this machine. It
never counts for the floor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.backends import body, start_backends
from bench.options import Options
from bench.peers import Launch, aiohttp_floor, bare_proxy, haproxy_lb, kubeferry_lb, nginx_lb
from bench.processes import (
    BenchError,
    CpuPlan,
    ProcessGroup,
    free_port,
    group_cpu_seconds,
    wait_http_ok,
)
from bench.report import (
    Row,
    Section,
    describe_rounds,
    format_seconds,
    markdown_table,
    text_table,
)
from bench.wrk import WrkResult, run_wrk

NGINX = "nginx"
KUBEFERRY_ACCESS = "kubeferry + JSON access log"
FRAMEWORK_FLOOR = "reference: aiohttp low-level server, fixed answer (no proxying)"
BARE_PROXY = "reference: bare proxy, aiohttp server + kubeferry's upstream client, no features"
LEANEST = "reference: leanest aiohttp-served proxy, minimal upstream client, no features"
# A run with more failed requests than this share is not a result.
MAX_ERROR_SHARE = 0.01

Factory = Callable[[Path, int, list[int]], Launch]


def contenders(options: Options) -> list[tuple[str, Factory]]:
    def kubeferry(access_log: bool) -> Factory:
        def launch(workdir: Path, port: int, backends: list[int]) -> Launch:
            return kubeferry_lb(
                workdir, port, backends, executable=options.kubeferry, access_log=access_log
            )

        return launch

    def framework_floor(workdir: Path, port: int, backends: list[int]) -> Launch:
        return aiohttp_floor(workdir, port, backends, kubeferry=options.kubeferry)

    def bare(workdir: Path, port: int, backends: list[int]) -> Launch:
        return bare_proxy(workdir, port, backends, kubeferry=options.kubeferry)

    def leanest(workdir: Path, port: int, backends: list[int]) -> Launch:
        return bare_proxy(workdir, port, backends, kubeferry=options.kubeferry, client="minimal")

    return [
        (NGINX, nginx_lb),
        ("haproxy", haproxy_lb),
        ("kubeferry (access log off)", kubeferry(False)),
        (KUBEFERRY_ACCESS, kubeferry(True)),
        (BARE_PROXY, bare),
        (LEANEST, leanest),
        (FRAMEWORK_FLOOR, framework_floor),
    ]


@dataclass(slots=True)
class _Contender:
    """A started load balancer and the runs measured against it so far."""

    name: str
    url: str
    launch: Launch
    process: subprocess.Popen[bytes]
    runs: list[WrkResult] = field(default_factory=list)


def run(options: Options) -> Section:
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="kubeferry-bench-"))
    try:
        with ProcessGroup() as processes, contextlib.ExitStack() as files:
            cpus = CpuPlan.split(pin=options.pin_cpus)
            backends, _ = start_backends(processes, workdir, cpus=cpus.load)
            print(f"backends (nginx) on 127.0.0.1:{', '.join(map(str, backends))}", flush=True)
            started: list[_Contender] = []
            failed: dict[str, str] = {}
            for name, factory in contenders(options):
                launch = factory(workdir, free_port(), backends)
                outcome = start(processes, files, name, launch, cpus=cpus.balancer)
                if isinstance(outcome, str):
                    failed[name] = outcome
                else:
                    started.append(outcome)
            # Rounds interleave the contenders, so a burst of load from elsewhere on the
            # machine hits all of them rather than whichever happened to run then.
            for round_number in range(options.rounds):
                for contender in list(started):
                    print(
                        f"round {round_number + 1}/{options.rounds}: {contender.name} ...",
                        flush=True,
                    )
                    try:
                        contender.runs.append(
                            measure(
                                processes,
                                options,
                                contender,
                                warm_up=round_number == 0,
                                cpus=cpus.load,
                            )
                        )
                    except BenchError as error:
                        failed[contender.name] = f"{contender.name} failed:\n```\n{error}\n```"
                        started.remove(contender)
            for contender in started:
                processes.stop(contender.process)
            rows, notes = collect(options, contenders(options), started, failed)
    finally:
        if options.keep_temp:
            print(f"kept configs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    notes.append(
        f"Machine load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} "
        f"after, on {os.cpu_count()} CPUs; other work on the machine lowers every row."
    )
    notes.append(f"CPU placement: {cpus.describe()}.")
    return summarize(options, rows, notes)


def start(
    processes: ProcessGroup,
    files: contextlib.ExitStack,
    name: str,
    launch: Launch,
    *,
    cpus: frozenset[int] | None,
) -> _Contender | str:
    """Start one load balancer and wait until it proxies; a problem comes back as text."""
    if not Path(launch.argv[0]).exists() and shutil.which(launch.argv[0]) is None:
        return f"{name}: {launch.argv[0]} not found"
    port = launch.port
    url = f"http://127.0.0.1:{port}/"
    # The ExitStack owns the handles: they stay open while the process writes to them.
    stdout = files.enter_context(launch.stdout_path.open("wb")) if launch.stdout_path else None
    stderr = files.enter_context(launch.log_path.open("wb")) if launch.log_path else None
    process = processes.start(
        name,
        launch.argv,
        env=launch.env,
        stdout=stdout or subprocess.DEVNULL,
        stderr=stderr,
        cpus=cpus,
    )
    try:
        wait_http_ok(url, process=process, log=launch.log_path)
    except BenchError as error:
        processes.stop(process)
        return f"{name} failed to start:\n```\n{error}\n```"
    return _Contender(name, url, launch, process)


def measure(
    processes: ProcessGroup,
    options: Options,
    contender: _Contender,
    *,
    warm_up: bool,
    cpus: frozenset[int] | None,
) -> WrkResult:
    if warm_up and options.warmup_seconds:
        run_wrk(
            processes,
            contender.url,
            duration_seconds=options.warmup_seconds,
            connections=options.connections,
            threads=options.threads,
            cpus=cpus,
        )
    cpu_before = group_cpu_seconds(contender.process)
    result = run_wrk(
        processes,
        contender.url,
        duration_seconds=options.duration_seconds,
        connections=options.connections,
        threads=options.threads,
        cpus=cpus,
    )
    cpu = group_cpu_seconds(contender.process) - cpu_before
    return dataclasses.replace(result, server_cpu_seconds=cpu)


def median_run(runs: list[WrkResult]) -> WrkResult:
    """The run with the median requests/s (its own latencies come with it, unmixed)."""
    ordered = sorted(runs, key=lambda r: r.requests_per_second)
    return ordered[(len(ordered) - 1) // 2]


def collect(
    options: Options,
    order: list[tuple[str, Factory]],
    started: list[_Contender],
    failed: dict[str, str],
) -> tuple[list[Row], list[str]]:
    by_name = {c.name: c for c in started}
    rows: list[Row] = []
    notes: list[str] = []
    for name, _ in order:
        contender = by_name.get(name)
        if contender is None or not contender.runs:
            rows.append(Row(name, problem="failed, details below"))
            notes.append(failed.get(name, f"{name}: no runs"))
            continue
        rounds = tuple(r.requests_per_second for r in contender.runs)
        row = Row(name, median_run(contender.runs), rounds=rounds if len(rounds) > 1 else ())
        rows.append(row)
        if row.rounds:
            notes.append(describe_rounds(row))
        if name == KUBEFERRY_ACCESS and contender.launch.stdout_path is not None:
            measured = sum(r.requests for r in contender.runs)
            notes.append(describe_access_log(contender.launch.stdout_path, measured))
    return rows, notes


def describe_access_log(path: Path, measured_requests: int) -> str:
    lines = 0
    access = 0
    with path.open("rb") as log:
        for line in log:
            lines += 1
            if b'"event": "access"' in line:
                access += 1
    size_mb = path.stat().st_size / 1e6
    return (
        f"{KUBEFERRY_ACCESS}: stdout went to a file ({size_mb:.1f} MB, {lines} lines, "
        f"{access} access lines for {measured_requests} measured requests, plus warm-up "
        "and readiness checks)."
    )


def _half_nginx_budget(result: WrkResult, nginx: WrkResult | None) -> float | None:
    """The CPU per request that 0.5x nginx's requests/s allows, when both rows measured it:
    one worker saturated, requests/s is the inverse of CPU per request, so half of nginx's
    requests/s allows twice its CPU per request."""
    if not result.cpu_per_request_seconds or nginx is None or not nginx.cpu_per_request_seconds:
        return None
    return 2 * nginx.cpu_per_request_seconds


def framework_notes(rows: list[Row]) -> list[str]:
    """What the reference row says: it is no load balancer, and how close kubeferry gets."""
    by_name = {row.name: row.result for row in rows if row.result is not None}
    reference = by_name.get(FRAMEWORK_FLOOR)
    if reference is None:
        return []
    notes = [
        f"{FRAMEWORK_FLOOR}: a reference, not a load balancer (it does not count for the "
        "floor): bench/aiohttp_floor.py, aiohttp.web.Server on uvloop with access_log=None on "
        f"kubeferry's interpreter, answering every request with the backends' {len(body(1))}-byte "
        "body in one write, as kubeferry's fast path answers (no aiohttp response head). Its "
        "requests/s is the ceiling of any aiohttp-served proxy on this machine."
    ]
    ours = by_name.get(KUBEFERRY_ACCESS)
    if ours is not None and reference.requests_per_second > 0:
        share = ours.requests_per_second / reference.requests_per_second
        text = f"{KUBEFERRY_ACCESS} reaches {share:.2f}x the reference's requests/s"
        framework = reference.cpu_per_request_seconds
        total = ours.cpu_per_request_seconds
        if framework and total:
            # On a busy machine requests/s moves for every row; CPU per request much less.
            text += (
                f"; of its {format_seconds(total)} of CPU per request, the framework alone "
                f"spends {format_seconds(framework)} ({framework / total:.0%})"
            )
        notes.append(text + ".")
    bare = by_name.get(BARE_PROXY)
    nginx = by_name.get(NGINX)
    if bare is not None:
        text = (
            f"{BARE_PROXY}: a reference too (bench/bare_proxy.py): aiohttp's server, kubeferry's "
            "upstream client, the request's raw head passed on and the answer written in one "
            "write, and nothing else (no log, metrics, request id, header rules, routing, "
            "failover). The least an aiohttp-served proxy spends per request"
        )
        budget = _half_nginx_budget(bare, nginx)
        if budget is not None and nginx is not None:
            text += (
                f": {format_seconds(bare.cpu_per_request_seconds)} of CPU per request, against "
                f"the {format_seconds(budget)} that 0.5x nginx's requests/s allows (twice "
                f"nginx's {format_seconds(nginx.cpu_per_request_seconds)})"
            )
        notes.append(text + ".")
    leanest = by_name.get(LEANEST)
    if leanest is not None:
        text = (
            f"{LEANEST}: a reference too (bench/bare_proxy.py --client minimal): the bare proxy "
            "with bench.minimal_upstream (a protocol, httptools and a future per exchange) in "
            "place of kubeferry's upstream client; about the least any proxy served by "
            "aiohttp's server spends per request, with no feature at all"
        )
        budget = _half_nginx_budget(leanest, nginx)
        if budget is not None:
            text += (
                f": {format_seconds(leanest.cpu_per_request_seconds)} of CPU per request "
                f"against the {format_seconds(budget)} budget of 0.5x nginx"
            )
        notes.append(text + ".")
    return notes


def summarize(options: Options, rows: list[Row], notes: list[str]) -> Section:
    baseline_row = next((r for r in rows if r.name == NGINX), None)
    baseline = (
        baseline_row.result.requests_per_second if baseline_row and baseline_row.result else None
    )
    failures = [
        f"{row.name}: {row.result.errors} of {row.result.requests} requests failed"
        for row in rows
        if row.result and row.result.errors > MAX_ERROR_SHARE * max(row.result.requests, 1)
    ]
    floor_row = next((r for r in rows if r.name == KUBEFERRY_ACCESS), None)
    if baseline is None:
        failures.append("nginx did not run, so there is no baseline for the floor")
    elif floor_row is None or floor_row.result is None:
        problem = floor_row.problem if floor_row else "missing"
        failures.append(f"{KUBEFERRY_ACCESS} did not run ({problem}): floor not checked")
    else:
        ratio = floor_row.result.requests_per_second / baseline
        if ratio < options.floor_ratio:
            failures.append(
                f"floor missed: {KUBEFERRY_ACCESS} reached {ratio:.2f}x nginx's requests/s, "
                f"below the {options.floor_ratio:.2f}x floor"
            )
        else:
            notes.append(
                f"Floor met: {KUBEFERRY_ACCESS} at {ratio:.2f}x nginx "
                f"(floor {options.floor_ratio:.2f}x)."
            )
    notes.extend(framework_notes(rows))
    print()
    print(text_table(rows, baseline))
    for note in notes:
        print(note)
    setup = (
        f"`wrk -t{options.threads} -c{options.connections} -d{options.duration_seconds}s "
        f"--latency` per run, {options.warmup_seconds} s of warm-up first; the median of "
        f"{options.rounds} interleaved round(s) per row. One worker per load balancer, three "
        "nginx backends, all on loopback."
    )
    markdown = (
        "## Proxy: kubeferry vs nginx and HAProxy\n\n"
        + setup
        + "\n\n"
        + markdown_table(rows, baseline)
        + "".join(f"\n{note}\n" for note in notes)
    )
    return Section("proxy", markdown, tuple(failures))
