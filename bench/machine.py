"""What the benchmark ran on: CPU model, CPU count, kernel, the interpreter kubeferry runs on
(Python, aiohttp and uvloop versions) and the load average, printed at the start of a run and
written into the results header. Every number in a results file means little without them.

The /proc readers are split into a pure parser (tested on canned text) and a thin reader.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The keys /proc/cpuinfo names the CPU model by: x86, then the usual ARM and POWER spellings.
_MODEL_KEYS = ("model name", "Model", "cpu model", "Hardware", "cpu")
# Asked of kubeferry's own interpreter: the versions that serve its requests, which need not
# be the harness's when --kubeferry points at another checkout.
_VERSIONS_PROGRAM = """\
import platform
print("python=" + platform.python_version())
for name in ("aiohttp", "uvloop"):
    try:
        module = __import__(name)
        print(name + "=" + getattr(module, "__version__", "?"))
    except ImportError:
        print(name + "=not installed")
"""


@dataclass(frozen=True, slots=True)
class Machine:
    """The machine and interpreter a run measured. `load_before` is the load average (1, 5
    and 15 min) when the run began."""

    cpu_model: str
    cpu_count: int
    usable_cpus: int
    kernel: str
    python: str
    aiohttp: str
    uvloop: str
    interpreter: str
    load_before: tuple[float, float, float]

    def describe(self) -> str:
        """One line for the terminal and the results header."""
        usable = "" if self.usable_cpus == self.cpu_count else f" ({self.usable_cpus} usable)"
        return (
            f"{self.cpu_model}, {self.cpu_count} CPUs{usable}, {self.kernel}; "
            f"Python {self.python}, aiohttp {self.aiohttp}, uvloop {self.uvloop} "
            f"({self.interpreter})"
        )


def cpu_model(cpuinfo: str) -> str:
    """The CPU model from /proc/cpuinfo's text; "unknown" when no line names it."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if colon and value and key in _MODEL_KEYS and key not in found:
            found[key] = value
    return next((found[key] for key in _MODEL_KEYS if key in found), "unknown")


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages from /proc/loadavg's text."""
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"unexpected /proc/loadavg: {text!r}")
    return float(fields[0]), float(fields[1]), float(fields[2])


def format_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def parse_versions(text: str) -> dict[str, str]:
    """`name=version` lines (what _VERSIONS_PROGRAM prints) into a dict."""
    versions: dict[str, str] = {}
    for line in text.splitlines():
        name, equals, version = line.partition("=")
        if equals and name.strip():
            versions[name.strip()] = version.strip()
    return versions


def interpreter_of(executable: Path) -> Path | None:
    """The Python a console script runs on, from its `#!` line: the venv's interpreter for
    `.venv/bin/kubeferry`. None when the script cannot be found or has no Python shebang."""
    found = executable if executable.parent != Path() else Path(shutil.which(executable) or "")
    try:
        with found.open("rb") as script:
            first = script.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    # `#!/usr/bin/env python3` names the interpreter in its second word.
    program = words[1] if Path(words[0]).name == "env" and len(words) > 1 else words[0]
    if not Path(program).name.startswith("python"):
        return None
    resolved = shutil.which(program) if "/" not in program else program
    return Path(resolved) if resolved else None


def read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def load_average() -> tuple[float, float, float]:
    text = read_text("/proc/loadavg")
    return parse_loadavg(text) if text else os.getloadavg()


def runtime_versions(python: Path | None) -> Mapping[str, str]:
    """Python, aiohttp and uvloop versions as `python` sees them (this interpreter if None)."""
    argv = [str(python or sys.executable), "-c", _VERSIONS_PROGRAM]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_versions(done.stdout)


def current(kubeferry: Path) -> Machine:
    """The machine now, with the versions of the interpreter `kubeferry` runs on."""
    python = interpreter_of(kubeferry)
    versions = runtime_versions(python)
    return Machine(
        cpu_model=cpu_model(read_text("/proc/cpuinfo")),
        cpu_count=os.cpu_count() or 0,
        usable_cpus=len(os.sched_getaffinity(0)),
        kernel=f"{platform.system()} {platform.release()}",
        python=versions.get("python", "unknown"),
        aiohttp=versions.get("aiohttp", "unknown"),
        uvloop=versions.get("uvloop", "unknown"),
        interpreter=str(python) if python else f"{sys.executable}, kubeferry's not found",
        load_before=load_average(),
    )


def status_bytes(status: str, key: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...) in bytes; None when absent."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if name == key and len(parts) == 2 and parts[1] == "kB":
            return int(parts[0]) * 1024
    return None


def rss_bytes(pid: int) -> int | None:
    """The process's resident set size now, from /proc; None once it has exited."""
    return status_bytes(read_text(f"/proc/{pid}/status"), "VmRSS")
