"""The controller benchmark: `python -m bench --only controller [--quick]`.

Against a real control plane (etcd + kube-apiserver + kube-controller-manager from
tests/kube, on loopback) holding N enrolled headless Services with one EndpointSlice of ten
endpoints each (`--services N`, default 1,000 Services and 10,000 endpoints; --quick: 100
and 1,000), it runs `kubeferry controller` as a child process and measures:

- time to first full sync: from starting the process to its first `"event": "sync"` log line
  that reports every Service enrolled (includes interpreter start and imports);
- change-to-pool delay, p50 and p99: from just before the bench sends a PUT of one
  EndpointSlice to the moment it reads the controller's next `sync` line with
  `pushed_upstreams: true` on the child's stdout. Changes go one at a time, so each line
  answers exactly one change; the delay includes the API write, the watch delivery, the cache,
  the sync and the pipe. The controller's own histogram (from the cache noticing the change to
  the pool holding it) is reported too, as a mean;
- memory: the child's VmRSS (after the changes) and VmHWM (peak) from /proc;
- idle CPU: utime+stime from /proc/<pid>/stat over a quiet window, as a share of one core.

The slices are created directly through the API with `endpointslice.kubernetes.io/managed-by`
set to a custom value, so the real EndpointSlice controller leaves them alone. Every creation
must succeed (anything but 201 stops the run). Their addresses (consecutive ones from
10.64.0.1 on, inside 10.64.0.0/10, room for 4 million) are not reachable and must not be
contacted: the controller runs with active health checks off (KUBEFERRY_HEALTH__ENABLED=false)
and no request is ever sent through it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.machine import status_bytes
from bench.options import Options
from bench.processes import BenchError, ProcessGroup, free_port, group_cpu_seconds
from bench.report import Section, format_seconds

NAMESPACE = "kf-bench"
MANAGED_BY = "bench.kubeferry.io"
ENDPOINTS_PER_SLICE = 10
CREATE_CONCURRENCY = 32
# Issue 13's targets, for any size up to 10,000 Services / 100,000 endpoints.
TARGET_P50_SECONDS = 0.030
TARGET_P99_SECONDS = 0.100
TARGET_FIRST_SYNC_SECONDS = 10.0
TARGET_RSS_BYTES = 500 * 2**20
TARGET_IDLE_CPU = 0.02  # "near zero": under 2% of one core
ADDRESSES = ipaddress.IPv4Network("10.64.0.0/10")  # private, not loopback: the API accepts it
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Plan:
    services: int
    changes: int
    idle_seconds: float
    sync_timeout_seconds: float = 300.0
    change_timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Result:
    services: int
    endpoints: int
    create_seconds: float
    first_sync_seconds: float
    delays: tuple[float, ...]
    missed: int
    in_process: InProcess | None
    load_average: tuple[float, float]  # 1-min load average before / after the changes
    rss_bytes: int
    peak_rss_bytes: int
    idle_cpu_share: float
    idle_seconds: float


def run(options: Options) -> Section:
    plan = (
        Plan(services=100, changes=50, idle_seconds=5.0)
        if options.quick
        else Plan(services=1000, changes=200, idle_seconds=20.0)
    )
    if options.services is not None:
        plan = dataclasses.replace(plan, services=options.services)
    address(plan.services - 1, ENDPOINTS_PER_SLICE - 1)  # the whole range fits, or stop now
    print(f"controller: {plan.services} Services x {ENDPOINTS_PER_SLICE} endpoints", flush=True)
    result = measure(plan, options)
    return section(result, plan)


# -- the run --------------------------------------------------------------------------------


def measure(plan: Plan, options: Options) -> Result:
    # Imported here: the proxy-only bench must not need the control-plane helpers.
    from tests.kube.controlplane import AssetsError, ControlPlane, ControlPlaneError, resolve_assets

    try:
        assets = resolve_assets()
    except AssetsError as error:
        raise BenchError(f"no control-plane binaries: {error}") from None
    workdir = Path(tempfile.mkdtemp(prefix="kf-bench-controller-"))
    plane = ControlPlane(assets=assets, workdir=workdir)
    try:
        print("controller: starting etcd, kube-apiserver, kube-controller-manager", flush=True)
        try:
            plane.start()
        except ControlPlaneError as error:
            raise BenchError(f"control plane did not start: {error}") from None
        started = time.monotonic()
        asyncio.run(populate(plane.kubeconfig, plan.services))
        create_seconds = time.monotonic() - started
        print(f"controller: created the objects in {create_seconds:.1f} s", flush=True)
        with ProcessGroup() as group:
            return run_controller(plane.kubeconfig, plan, options, group, workdir, create_seconds)
    finally:
        plane.stop()
        if not options.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"controller: kept {workdir}", flush=True)


def run_controller(
    kubeconfig: Path,
    plan: Plan,
    options: Options,
    group: ProcessGroup,
    workdir: Path,
    create_seconds: float,
) -> Result:
    admin_port = free_port()
    argv = [
        str(options.kubeferry),
        "controller",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        NAMESPACE,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--admin-port",
        str(admin_port),
    ]
    env = {
        **os.environ,
        # The slice addresses are not ours: nothing may probe them (see the module docstring).
        "KUBEFERRY_HEALTH__ENABLED": "false",
        "KUBEFERRY_LOG__LEVEL": "info",
        "KUBEFERRY_LOG__ACCESS_LOG": "false",
    }
    stderr = (workdir / "controller.stderr").open("wb")
    started = time.monotonic()
    process = group.start(
        "kubeferry controller", argv, env=env, stdout=subprocess.PIPE, stderr=stderr
    )
    assert process.stdout is not None
    lines = LineReader(process.stdout)
    try:
        first = lines.wait_for(
            lambda e: e.get("event") == "sync" and e.get("upstreams") == plan.services,
            timeout_seconds=plan.sync_timeout_seconds,
            process=process,
        )
        first_sync = first[0] - started
        print(f"controller: first full sync after {first_sync:.2f} s", flush=True)
        load_before = os.getloadavg()[0]
        delays, missed = asyncio.run(change_slices(kubeconfig, plan, lines, process))
        load_after = os.getloadavg()[0]
        in_process = in_process_delays(admin_port)
        rss, peak = memory(process.pid)
        time.sleep(2.0)  # let the last change settle before the quiet window
        cpu = idle_cpu(process, plan.idle_seconds)
        if process.poll() is not None:
            raise BenchError(f"the controller exited with {process.returncode}")
    finally:
        group.stop(process)
        lines.close()
        stderr.close()
    return Result(
        services=plan.services,
        endpoints=plan.services * ENDPOINTS_PER_SLICE,
        create_seconds=create_seconds,
        first_sync_seconds=first_sync,
        delays=tuple(delays),
        missed=missed,
        in_process=in_process,
        load_average=(load_before, load_after),
        rss_bytes=rss,
        peak_rss_bytes=peak,
        idle_cpu_share=cpu,
        idle_seconds=plan.idle_seconds,
    )


# -- the objects ----------------------------------------------------------------------------


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


def service_body(i: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": service_name(i),
            "annotations": {
                "kubeferry.io/enabled": "true",
                "kubeferry.io/host": f"{service_name(i)}.bench.example",
            },
        },
        # Headless and selector-less: no ClusterIP to allocate (the test range is a /24), and
        # the EndpointSlice controller has nothing to manage.
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def address(i: int, j: int) -> str:
    """Endpoint j of Service i: consecutive addresses from 10.64.0.1, valid for any size."""
    k = i * ENDPOINTS_PER_SLICE + j + 1
    if k >= ADDRESSES.num_addresses - 1:
        raise BenchError(f"{i + 1} Services do not fit in {ADDRESSES}")
    return str(ADDRESSES.network_address + k)


def slice_body(i: int, *, ready: tuple[bool, ...] | None = None, shift: int = 0) -> dict[str, Any]:
    ready = ready or (True,) * ENDPOINTS_PER_SLICE
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name(i)}-bench",
            "labels": {
                "kubernetes.io/service-name": service_name(i),
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address(i, (j + shift) % ENDPOINTS_PER_SLICE)],
                "conditions": {"ready": ready[j]},
            }
            for j in range(ENDPOINTS_PER_SLICE)
        ],
    }


async def populate(kubeconfig: Path, services: int) -> None:
    from kubernetes_asyncio import client, config

    api = await config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    try:
        # Any: the client's stubs want generated models; these calls send plain dicts.
        core: Any = client.CoreV1Api(api)
        discovery: Any = client.DiscoveryV1Api(api)
        await core.create_namespace({"metadata": {"name": NAMESPACE}})
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(i: int) -> None:
            async with gate:
                await answered(
                    f"Service {service_name(i)}",
                    core.create_namespaced_service(
                        NAMESPACE, service_body(i), _preload_content=False
                    ),
                    201,
                )
                await answered(
                    f"EndpointSlice {service_name(i)}-bench",
                    discovery.create_namespaced_endpoint_slice(
                        NAMESPACE, slice_body(i), _preload_content=False
                    ),
                    201,
                )

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
                for i in range(services):
                    group.create_task(create(i))
        except* BenchError as failed:
            raise failed.exceptions[0] from None
    finally:
        await api.close()


async def answered(what: str, call: Awaitable[Any], expected: int) -> None:
    """Await a raw (`_preload_content=False`) API call, which does not check the status
    itself: anything but `expected` is an error that stops the run."""
    response = await call
    try:
        if response.status != expected:
            body = (await response.text())[:500]
            raise BenchError(f"{what}: the API answered {response.status}: {body}")
    finally:
        response.release()


async def change_slices(
    kubeconfig: Path, plan: Plan, lines: LineReader, process: subprocess.Popen[bytes]
) -> tuple[list[float], int]:
    """One EndpointSlice change at a time; the delay until the controller's next push."""
    from kubernetes_asyncio import client, config

    rng = random.Random(42)
    api = await config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    delays: list[float] = []
    missed = 0
    try:
        discovery: Any = client.DiscoveryV1Api(api)
        for n in range(plan.changes):
            i = rng.randrange(plan.services)
            # Alternate the kinds of change a cluster makes: readiness flips, pods replaced.
            if n % 2:
                down = rng.randrange(ENDPOINTS_PER_SLICE)
                body = slice_body(i, ready=tuple(j != down for j in range(ENDPOINTS_PER_SLICE)))
            else:
                body = slice_body(i, shift=rng.randrange(1, ENDPOINTS_PER_SLICE))
                body["endpoints"] = body["endpoints"][:-1]  # one endpoint fewer: a real change
            name = body["metadata"]["name"]
            lines.drain()
            sent = time.monotonic()
            await answered(
                f"PUT EndpointSlice {name}",
                discovery.replace_namespaced_endpoint_slice(
                    name, NAMESPACE, body, _preload_content=False
                ),
                200,
            )
            try:
                seen, _ = await asyncio.to_thread(
                    lines.wait_for,
                    pushed,
                    timeout_seconds=plan.change_timeout_seconds,
                    process=process,
                )
            except BenchError:
                missed += 1
                continue
            delays.append(seen - sent)
            # Put it back (not measured) so the next change starts from the full set.
            lines.drain()
            await answered(
                f"PUT EndpointSlice {name} (restoring it)",
                discovery.replace_namespaced_endpoint_slice(
                    name, NAMESPACE, slice_body(i), _preload_content=False
                ),
                200,
            )
            await asyncio.to_thread(
                lines.wait_for,
                pushed,
                timeout_seconds=plan.change_timeout_seconds,
                process=process,
            )
    finally:
        await api.close()
    return delays, missed


def pushed(line: dict[str, Any]) -> bool:
    return line.get("event") == "sync" and line.get("pushed_upstreams") is True


# -- reading the child ----------------------------------------------------------------------


class LineReader:
    """Reads the child's JSON log lines on a thread, stamping each with time.monotonic()."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            stamp = time.monotonic()
            try:
                parsed = json.loads(raw)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                self._lines.put((stamp, parsed))
        self._lines.put(None)

    def drain(self) -> None:
        """Forget the lines read so far (keeping the end-of-stream mark)."""
        while True:
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._lines.put(None)
                return

    def wait_for(
        self,
        match: Callable[[dict[str, Any]], bool],
        *,
        timeout_seconds: float,
        process: subprocess.Popen[bytes],
    ) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no matching controller log line within {timeout_seconds} s")
            try:
                item = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if process.poll() is not None:
                    raise BenchError(f"the controller exited with {process.returncode}") from None
                continue
            if item is None:
                raise BenchError(f"the controller closed its stdout ({process.poll()})")
            if match(item[1]):
                return item

    def close(self) -> None:
        self._thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class InProcess:
    """The controller's own kubeferry_controller_change_to_pool_seconds histogram: from the
    cache noticing a change to the pool holding it. Percentiles are bucket upper bounds."""

    count: int
    mean_seconds: float
    p50_bound_seconds: float
    p99_bound_seconds: float


def in_process_delays(admin_port: int) -> InProcess | None:
    url = f"http://127.0.0.1:{admin_port}/metrics"
    try:
        with _opener.open(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    name = "kubeferry_controller_change_to_pool_seconds"
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.split()[-1])))
        elif line.startswith(f"{name}_sum"):
            total = float(line.split()[-1])
        elif line.startswith(f"{name}_count"):
            count = float(line.split()[-1])
    if not count:
        return None

    def bound(q: float) -> float:
        return next(le for le, cumulative in sorted(buckets) if cumulative >= q * count)

    return InProcess(int(count), total / count, bound(0.5), bound(0.99))


def memory(pid: int) -> tuple[int, int]:
    """RSS and peak RSS (VmHWM) in bytes, 0 where /proc does not say."""
    status = Path(f"/proc/{pid}/status").read_text()
    return status_bytes(status, "VmRSS") or 0, status_bytes(status, "VmHWM") or 0


def idle_cpu(process: subprocess.Popen[bytes], seconds: float) -> float:
    before, start = group_cpu_seconds(process), time.monotonic()
    time.sleep(seconds)
    return (group_cpu_seconds(process) - before) / (time.monotonic() - start)


# -- the report -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def section(result: Result, plan: Plan) -> Section:
    delays = list(result.delays)
    p50 = statistics.median(delays) if delays else float("nan")
    p99 = percentile(delays, 0.99) if delays else float("nan")
    failures = []
    if not delays or p50 >= TARGET_P50_SECONDS:
        failures.append(f"change-to-pool p50 {format_seconds(p50)} (target < 30 ms)")
    if not delays or p99 >= TARGET_P99_SECONDS:
        failures.append(f"change-to-pool p99 {format_seconds(p99)} (target < 100 ms)")
    if result.first_sync_seconds >= TARGET_FIRST_SYNC_SECONDS:
        failures.append(
            f"first full sync {format_seconds(result.first_sync_seconds)} (target < 10 s)"
        )
    if result.missed:
        failures.append(f"{result.missed} of {plan.changes} changes never reached the pool")
    if result.peak_rss_bytes >= TARGET_RSS_BYTES:
        failures.append(f"peak RSS {result.peak_rss_bytes / 2**20:.0f} MiB (target < 500 MiB)")
    if result.idle_cpu_share >= TARGET_IDLE_CPU:
        failures.append(f"idle CPU {result.idle_cpu_share:.1%} of a core (target near zero)")
    own = result.in_process
    in_process = (
        f"mean {format_seconds(own.mean_seconds)}, p50 <= {format_seconds(own.p50_bound_seconds)}"
        f", p99 <= {format_seconds(own.p99_bound_seconds)} ({own.count} pushes)"
        if own is not None
        else "n/a"
    )
    rows = [
        ("Services / endpoints", f"{result.services:,} / {result.endpoints:,}"),
        ("creating them through the API", f"{result.create_seconds:.1f} s"),
        ("time to first full sync (process start)", format_seconds(result.first_sync_seconds)),
        ("change-to-pool p50 (PUT sent to sync logged)", format_seconds(p50)),
        ("change-to-pool p99", format_seconds(p99)),
        ("change-to-pool max", format_seconds(max(delays)) if delays else "-"),
        ("changes measured / missed", f"{len(delays)} / {result.missed}"),
        ("in process (cache noticed to pool, histogram)", in_process),
        ("RSS after the changes", f"{result.rss_bytes / 2**20:.0f} MiB"),
        ("peak RSS (VmHWM)", f"{result.peak_rss_bytes / 2**20:.0f} MiB"),
        (f"idle CPU over {result.idle_seconds:.0f} s", f"{result.idle_cpu_share:.2%} of a core"),
        (
            "machine load (1-min average, before / after the changes)",
            f"{result.load_average[0]:.1f} / {result.load_average[1]:.1f} on {os.cpu_count()} CPUs",
        ),
    ]
    table = ["| measure | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)]
    text = "\n".join(f"  {k:<58} {v}" for k, v in rows)
    print("\ncontroller\n" + text, flush=True)
    markdown = (
        "## Controller\n\n"
        f"{result.services:,} enrolled headless Services, one EndpointSlice of "
        f"{ENDPOINTS_PER_SLICE} endpoints each, in a real kube-apiserver on loopback; "
        f"`kubeferry controller` as a child process with active health checks off. "
        f"{plan.changes} EndpointSlice changes, one at a time. Targets: change-to-pool "
        "p50 < 30 ms and p99 < 100 ms, first full sync < 10 s, peak RSS < 500 MiB, idle CPU "
        "near zero.\n\n" + "\n".join(table) + "\n"
    )
    if failures:
        markdown += "\n" + "\n".join(f"- FAIL: {f}" for f in failures) + "\n"
    return Section("controller", markdown, tuple(failures))


if __name__ == "__main__":  # pragma: no cover - `python -m bench --only controller` is the way
    from bench.options import parse_options

    section_ = run(parse_options(["--only", "controller", *sys.argv[1:]]))
    print(section_.markdown)
    sys.exit(1 if section_.failures else 0)
