"""Child processes that cannot outlive the test run.

Every process the fixtures start (etcd, kube-apiserver, kube-controller-manager, pod backends) is
asked, between fork and exec, to receive SIGKILL when its parent goes away (PR_SET_PDEATHSIG), so a
``kill -9`` of pytest leaves nothing running. The kernel ties that signal to the *thread* that
forked, not the process: a child forked from an ``asyncio.to_thread`` worker would die when that
worker retires. So all forks happen on one long-lived thread, which ends only with the interpreter.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_forker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kf-forker")


def _die_with_parent() -> None:
    # Runs in the child after fork: only async-signal-safe work, a single prctl call.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _popen(argv: list[str], log_path: Path, cwd: Path | None) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


def spawn(argv: list[str], *, log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Starts ``argv`` with stdout and stderr appended to ``log_path``; blocks only for the fork."""
    return _forker.submit(_popen, argv, log_path, cwd).result()


def stop(process: subprocess.Popen[bytes], *, timeout_seconds: float = 15) -> None:
    """SIGTERM, then SIGKILL after the timeout; always reaps (no zombie, no ResourceWarning)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
