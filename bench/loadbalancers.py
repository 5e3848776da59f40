"""The proxy section: nginx, HAProxy and kubeferry (access log off, then on) as load balancers
over the same three backends, one after another, each measured with the same wrk run.

Floor: kubeferry with its JSON access log on reaches `options.floor_ratio` of nginx's
requests/s in the same run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.backends import start_backends
from bench.options import Options
from bench.peers import Launch, haproxy_lb, kubeferry_lb, nginx_lb
from bench.processes import BenchError, ProcessGroup, free_port, wait_http_ok
from bench.report import Row, Section, markdown_table, text_table
from bench.wrk import run_wrk

NGINX = "nginx"
KUBEFERRY_ACCESS = "kubeferry + JSON access log"
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

    return [
        (NGINX, nginx_lb),
        ("haproxy", haproxy_lb),
        ("kubeferry (access log off)", kubeferry(False)),
        (KUBEFERRY_ACCESS, kubeferry(True)),
    ]


def run(options: Options) -> Section:
    workdir = Path(tempfile.mkdtemp(prefix="kubeferry-bench-"))
    try:
        with ProcessGroup() as processes:
            backends, _ = start_backends(processes, workdir)
            print(f"backends (nginx) on 127.0.0.1:{', '.join(map(str, backends))}", flush=True)
            rows: list[Row] = []
            notes: list[str] = []
            for name, factory in contenders(options):
                print(f"measuring {name} ...", flush=True)
                row, note = measure(processes, options, workdir, name, factory, backends)
                rows.append(row)
                if note:
                    notes.append(note)
    finally:
        if options.keep_temp:
            print(f"kept configs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return summarize(options, rows, notes)


def measure(
    processes: ProcessGroup,
    options: Options,
    workdir: Path,
    name: str,
    factory: Factory,
    backends: list[int],
) -> tuple[Row, str]:
    """Start one load balancer, warm it up, measure it, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    launch = factory(workdir, port, backends)
    if not Path(launch.argv[0]).exists() and shutil.which(launch.argv[0]) is None:
        return Row(name, problem=f"{launch.argv[0]} not found"), ""
    stdout = open(launch.stdout_path, "wb") if launch.stdout_path else None  # noqa: SIM115
    stderr = open(launch.log_path, "wb") if launch.log_path else None  # noqa: SIM115
    try:
        process = processes.start(
            name, launch.argv, env=launch.env, stdout=stdout or subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_http_ok(url, process=process, log=launch.log_path)
            if options.warmup_seconds:
                run_wrk(
                    processes,
                    url,
                    duration_seconds=options.warmup_seconds,
                    connections=options.connections,
                    threads=options.threads,
                )
            result = run_wrk(
                processes,
                url,
                duration_seconds=options.duration_seconds,
                connections=options.connections,
                threads=options.threads,
            )
        except BenchError as error:
            details = f"{name} failed:\n```\n{error}\n```"
            return Row(name, problem="failed, details below"), details
        finally:
            processes.stop(process)
    finally:
        for handle in (stdout, stderr):
            if handle is not None:
                handle.close()
    note = ""
    if launch.stdout_path is not None and name == KUBEFERRY_ACCESS:
        note = describe_access_log(launch.stdout_path, result.requests)
    return Row(name, result), note


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
        f"{access} access lines for {measured_requests} measured requests plus warm-up)."
    )


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
    print()
    print(text_table(rows, baseline))
    for note in notes:
        print(note)
    setup = (
        f"wrk -t{options.threads} -c{options.connections} -d{options.duration_seconds}s "
        f"--latency, after {options.warmup_seconds} s of warm-up; one worker per load balancer; "
        "three nginx backends on loopback."
    )
    markdown = (
        "## Proxy: kubeferry vs nginx and HAProxy\n\n"
        + setup
        + "\n\n"
        + markdown_table(rows, baseline)
        + "".join(f"\n{note}\n" for note in notes)
    )
    return Section("proxy", markdown, tuple(failures))
