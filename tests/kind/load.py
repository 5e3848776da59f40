"""Steady, bounded load while something disruptive happens, and what it saw.

Two sources, as users have them: a client pod inside the cluster calling the kubeferry Service
(``echo load``), and a client on the host calling through ``kubectl port-forward``. Each is
bounded in count and in time, and stops by itself.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.kind.cluster import Cluster, wait_for
from tests.kind.workloads import APPS, CONTROL_PORT, load_args, load_pod_manifest

_names = itertools.count(1)


@dataclass(slots=True)
class LoadResult:
    requests: int = 0
    failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    max_seconds: float = 0.0
    p99_seconds: float = 0.0
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.requests} requests, {self.failures} failed {self.failure_kinds}, "
            f"max {self.max_seconds:.3f} s, p99 {self.p99_seconds:.3f} s, "
            f"over {self.seconds:.0f} s, answers {self.answers}"
        )


@contextmanager
def in_cluster_load(
    cluster: Cluster,
    *,
    url: str,
    host: str,
    concurrency: int = 8,
    duration_seconds: int = 300,
) -> Iterator[LoadResult]:
    """Runs ``echo load`` in a pod for the body of the ``with``; fills the result on exit."""
    name = f"load-{int(time.time())}-{next(_names)}"
    args = load_args(url=url, host=host, concurrency=concurrency, duration_seconds=duration_seconds)
    cluster.apply(load_pod_manifest(name, cluster.echo_image, args), APPS)
    result = LoadResult()
    try:
        cluster.kubectl("-n", APPS, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
        with cluster.port_forward(APPS, f"pod/{name}", CONTROL_PORT) as port:
            # Traffic flows before the disruption starts.
            wait_for(lambda: _progress(port)["requests"] > 100, timeout_seconds=30)
            yield result
            summary = _post_stop(port)
        for key, value in summary.items():
            setattr(result, key, value)
    finally:
        cluster.kubectl("-n", APPS, "delete", "pod", name, "--wait=false", check=False)


@contextmanager
def host_load(port: int, *, host: str, path: str = "/", threads: int = 2) -> Iterator[LoadResult]:
    """Keep-alive GETs from the host through a port-forward, for the body of the ``with``."""
    result = LoadResult()
    stop = threading.Event()
    lock = threading.Lock()
    failures: Counter[str] = Counter()
    answers: Counter[str] = Counter()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        # Bounded: at most 50,000 requests or 15 minutes per thread, whichever comes first.
        deadline = time.monotonic() + 900
        for _ in range(50_000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            started = time.monotonic()
            try:
                conn.request("GET", path, headers={"Host": host})
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                outcome = body if response.status == 200 else f"status {response.status}: {body}"
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as error:
                outcome, ok = f"{type(error).__name__}: {error}", False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            seconds = time.monotonic() - started
            with lock:
                result.requests += 1
                result.max_seconds = max(result.max_seconds, seconds)
                if ok:
                    answers[outcome] += 1
                else:
                    result.failures += 1
                    failures[outcome[:120]] += 1
        conn.close()

    with ExitStack() as stack:
        workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        for thread in workers:
            thread.start()
        stack.callback(lambda: [thread.join(timeout=30) for thread in workers])
        stack.callback(stop.set)
        yield result
    result.failure_kinds = dict(failures)
    result.answers = dict(answers)


def _progress(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=5) as response:
        progress: dict[str, Any] = json.load(response)
    return progress


def _post_stop(port: int) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/stop", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        summary: dict[str, Any] = json.load(response)
    return summary
