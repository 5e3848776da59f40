"""Raising RLIMIT_NOFILE in the harness so that its children (kubeferry, wrk) inherit room for
the idle section's connections: the soft limit up to the hard one, and, as root, the hard
limit up to what is wanted (never past fs.nr_open, never lowered).

Root may still be refused: a container or VM without CAP_SYS_RESOURCE cannot raise a hard
limit. Then the section uses what the limit allows and says so.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

# File descriptors the idle connections leave for everything else in one process: wrk's or
# the harness's other sockets, kubeferry's upstream pool, listeners, logs, pipes.
HEADROOM = 1024
DEFAULT_NR_OPEN = 1_048_576  # Linux's default fs.nr_open


@dataclass(frozen=True, slots=True)
class NofileLimit:
    """RLIMIT_NOFILE after the attempt, and what stood in the way, if anything."""

    soft: int
    hard: int
    problem: str = ""


def _finite(value: int, ceiling: int) -> int:
    return ceiling if value == resource.RLIM_INFINITY else value


def plan(soft: int, hard: int, *, wanted: int, is_root: bool, ceiling: int) -> tuple[int, int]:
    """The (soft, hard) pair to ask for: soft to the hard limit; as root, a hard limit below
    `wanted` raised to it (at most `ceiling`). Nothing is ever lowered."""
    new_hard = hard
    if is_root and _finite(hard, ceiling) < wanted:
        new_hard = min(wanted, ceiling)
    new_soft = max(_finite(soft, ceiling), min(_finite(new_hard, ceiling), ceiling))
    return new_soft, new_hard


def usable_connections(soft: int, *, wanted: int, headroom: int = HEADROOM) -> int:
    """How many idle connections a process with this soft limit can hold, at most `wanted`."""
    return max(0, min(wanted, soft - headroom))


def nr_open() -> int:
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return DEFAULT_NR_OPEN


def raise_nofile(wanted: int) -> NofileLimit:
    """Raise this process's limit (children inherit it) as `plan` says, as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = nr_open()
    target = plan(soft, hard, wanted=wanted, is_root=os.geteuid() == 0, ceiling=ceiling)
    problem = ""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, target)
    except (OSError, ValueError) as error:
        problem = f"raising the hard limit from {hard} to {target[1]} was refused ({error})"
        # The soft limit can always go up to the hard one.
        fallback = (_finite(hard, ceiling), hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, fallback)
        except (OSError, ValueError) as second:
            problem += f"; so was the soft limit to {fallback[0]} ({second})"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NofileLimit(_finite(soft, ceiling), _finite(hard, ceiling), problem)
