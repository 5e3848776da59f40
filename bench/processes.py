"""Child processes the benchmark owns, and waiting for them to serve.

Each child starts in its own session (its own process group), so a terminal's Ctrl-C reaches
only us and we stop the children in order; stopping signals the whole group, so an nginx
master takes its workers along. `ProcessGroup.close()` runs on every way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

STOP_GRACE_SECONDS = 5.0

# Talk to loopback directly, ignoring any http_proxy in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


class ProcessGroup:
    """Starts children and guarantees they are stopped when the `with` block ends."""

    def __init__(self) -> None:
        # (name, process) in start order; stopped in reverse.
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: IO[bytes] | int | None = subprocess.DEVNULL,
        stderr: IO[bytes] | int | None = None,
        cpus: frozenset[int] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a child; `cpus` pins it (and whatever it forks, like nginx workers) there."""

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        process = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=pin if cpus else None,
        )
        self._children.append((name, process))
        return process

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout_seconds: float,
        cpus: frozenset[int] | None = None,
    ) -> str:
        """Run a bounded command to completion and return its stdout; stop it if it overruns."""
        process = self.start(name, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cpus=cpus)
        try:
            out, err = process.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.stop(process)
            raise BenchError(f"{name} did not finish within {timeout_seconds:.0f} s") from None
        except BaseException:  # Ctrl-C: stop and reap it before going on
            self.stop(process)
            raise
        self._forget(process)
        if process.returncode != 0:
            raise BenchError(
                f"{name} exited with {process.returncode}: {err.decode(errors='replace').strip()}"
            )
        return out.decode(errors="replace")

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it is still there."""
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=STOP_GRACE_SECONDS)
        # Signals go to the group only while its leader is unreaped, so the group id cannot
        # have been reused by some other process.
        self._forget(process)

    def close(self) -> None:
        while self._children:
            _, process = self._children[-1]
            self.stop(process)

    def _forget(self, process: subprocess.Popen[bytes]) -> None:
        self._children = [(n, p) for n, p in self._children if p is not process]


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)  # start_new_session: the group id is the child's pid


def free_port() -> int:
    """An unused loopback port (the kernel's pick; a small race until the child binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_http_ok(
    url: str,
    *,
    process: subprocess.Popen[bytes],
    timeout_seconds: float = 15.0,
    log: Path | None = None,
) -> None:
    """Poll `url` until it answers 200, or fail early if `process` has exited."""
    assert url.startswith("http://127.0.0.1:"), "the benchmark talks to loopback only"
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{url}: process exited with {process.returncode}{_tail(log)}")
        try:
            with _opener.open(url, timeout=1.0) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as error:
            last = f"status {error.code}"
        except OSError as error:
            last = str(error)
        time.sleep(0.1)
    raise BenchError(f"{url} not ready after {timeout_seconds:.0f} s ({last}){_tail(log)}")


def _tail(log: Path | None, lines: int = 10) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return "\n  " + "\n  ".join(text) if text else ""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C for the duration, so the same cleanup and message follow."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def group_cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User plus system CPU time used so far by every live process in the child's process
    group (an nginx master and its worker, say), from /proc; 0.0 where /proc is missing.

    CPU per request is the comparison that survives a busy machine: requests/s drops for
    everyone when other work takes the CPUs, CPU time spent per request much less so.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after the parenthesised command name, which may itself hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == process.pid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """Which CPUs the load balancer under test gets, and which the load (wrk and the backends)
    gets. Separate CPUs keep the two from taking turns on one core, which would measure the
    scheduler as much as the load balancer; None leaves placement to the kernel."""

    balancer: frozenset[int] | None = None
    load: frozenset[int] | None = None

    @classmethod
    def split(cls, *, pin: bool) -> CpuPlan:
        available = sorted(os.sched_getaffinity(0))
        if not pin or len(available) < 2:
            return cls()
        return cls(balancer=frozenset(available[-1:]), load=frozenset(available[:-1]))

    def describe(self) -> str:
        if self.balancer is None or self.load is None:
            return "no CPU pinning"
        return (
            f"load balancer pinned to CPU {_cpu_list(self.balancer)}, wrk and backends to "
            f"CPU {_cpu_list(self.load)}"
        )


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))
