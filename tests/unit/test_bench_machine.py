"""The machine header's pure parts: /proc/cpuinfo, /proc/loadavg, /proc/PID/status, the
versions kubeferry's interpreter prints, and finding that interpreter from a script's #! line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.machine import (
    _VERSIONS_PROGRAM,
    Machine,
    cpu_model,
    format_load,
    interpreter_of,
    parse_loadavg,
    parse_versions,
    status_bytes,
)

X86 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
stepping\t: 1

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
"""

ARM = """\
processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_cpu_model_from_x86_cpuinfo() -> None:
    assert cpu_model(X86) == "AMD EPYC 7B13 64-Core Processor"


def test_cpu_model_prefers_the_board_model_over_the_soc_on_arm() -> None:
    assert cpu_model(ARM) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_model(ARM.replace("Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "")) == "BCM2835"


def test_cpu_model_unknown_without_a_naming_line() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t:\n") == "unknown"
    assert cpu_model("") == "unknown"


def test_loadavg() -> None:
    load = parse_loadavg("2.45 4.23 4.00 3/812 123456\n")
    assert load == (2.45, 4.23, 4.0)
    assert format_load(load) == "2.45 / 4.23 / 4.00"
    with pytest.raises(ValueError, match="loadavg"):
        parse_loadavg("2.45\n")


def test_status_field_in_bytes() -> None:
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n"
    assert status_bytes(status, "VmRSS") == 100 * 1024 * 1024
    assert status_bytes(status, "VmHWM") == 200 * 1024 * 1024
    assert status_bytes(status, "Threads") is None  # not a kB field
    assert status_bytes(status, "VmSwap") is None
    assert status_bytes("", "VmRSS") is None  # the process is gone


def test_versions_lines() -> None:
    text = "python=3.11.7\naiohttp=3.14.5\nuvloop=not installed\nnoise\n=x\n"
    assert parse_versions(text) == {
        "python": "3.11.7",
        "aiohttp": "3.14.5",
        "uvloop": "not installed",
    }


def test_the_versions_program_is_valid_python() -> None:
    compile(_VERSIONS_PROGRAM, "<versions>", "exec")


def test_interpreter_from_a_venv_console_script(tmp_path: Path) -> None:
    python = tmp_path / "python3.11"
    python.write_text("")
    script = tmp_path / "kubeferry"
    script.write_text(f"#!{python}\n# -*- coding: utf-8 -*-\nimport sys\n")
    assert interpreter_of(script) == python


def test_interpreter_through_env(tmp_path: Path) -> None:
    script = tmp_path / "kubeferry"
    script.write_text("#!/usr/bin/env python3\nimport sys\n")
    found = interpreter_of(script)
    assert found is not None and found.name.startswith("python3")


def test_no_interpreter_for_binaries_shell_scripts_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF\x02\x01\x01")
    shell = tmp_path / "shell"
    shell.write_text("#!/bin/sh\nexec true\n")
    assert interpreter_of(binary) is None
    assert interpreter_of(shell) is None
    assert interpreter_of(tmp_path / "missing") is None


def test_machine_line() -> None:
    machine = Machine(
        cpu_model="AMD EPYC",
        cpu_count=4,
        usable_cpus=2,
        kernel="Linux 6.1",
        python="3.11.7",
        aiohttp="3.14.5",
        uvloop="0.23.0",
        interpreter="/venv/bin/python",
        load_before=(1.0, 2.0, 3.0),
    )
    assert machine.describe() == (
        "AMD EPYC, 4 CPUs (2 usable), Linux 6.1; Python 3.11.7, aiohttp 3.14.5, "
        "uvloop 0.23.0 (/venv/bin/python)"
    )
