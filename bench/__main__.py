"""`python -m bench [--only proxy|tls|churn|idle|controller|all] [--quick] ...`: print the
machine, run the sections, print the tables, write them (under a header naming the machine and
the load average before and after) to bench/results/latest.md, exit non-zero if a section
failed."""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence

from bench import churn, idle, loadbalancers, machine, tls
from bench.options import Options, parse_options
from bench.processes import BenchError, sigterm_as_interrupt
from bench.report import Section

SectionRunner = Callable[[Options], Section]


def controller_section() -> SectionRunner | None:
    """bench/controller.py's `run`, or None while that module does not exist."""
    if importlib.util.find_spec("bench.controller") is None:
        return None
    module = importlib.import_module("bench.controller")
    runner: SectionRunner = module.run
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    measured_on = machine.current(options.kubeferry)
    print(f"machine: {measured_on.describe()}")
    print(f"load average (1 / 5 / 15 min) before: {machine.format_load(measured_on.load_before)}")
    sections: list[Section] = []
    try:
        with sigterm_as_interrupt():
            if options.only in ("proxy", "all"):
                sections.append(loadbalancers.run(options))
            if options.only in ("tls", "all"):
                sections.append(tls.run(options))
            if options.only in ("churn", "all"):
                sections.append(churn.run(options))
            if options.only in ("idle", "all"):
                sections.append(idle.run(options))
            if options.only in ("controller", "all"):
                runner = controller_section()
                if runner is not None:
                    sections.append(runner(options))
                elif options.only == "controller":
                    print("bench: bench/controller.py does not exist yet", file=sys.stderr)
                    return 2
                else:
                    print("(controller section skipped: bench/controller.py not written yet)")
    except KeyboardInterrupt:
        print("\nbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    load_after = machine.load_average()
    print(f"load average (1 / 5 / 15 min) after: {machine.format_load(load_after)}")
    write_results(options, sections, argv, measured_on, load_after)
    failures = [f"{s.title}: {f}" for s in sections for f in s.failures]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


def write_results(
    options: Options,
    sections: list[Section],
    argv: Sequence[str] | None,
    measured_on: machine.Machine,
    load_after: tuple[float, float, float],
) -> None:
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    header = (
        "# kubeferry benchmark\n\n"
        f"- when: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- command: `{command}`\n"
        f"- machine: {measured_on.describe()}\n"
        f"- load average (1 / 5 / 15 min): {machine.format_load(measured_on.load_before)} "
        f"before, {machine.format_load(load_after)} after; other work on the machine lowers "
        "every requests/s figure (CPU/request moves much less)\n"
        f"- tools: {tool_versions()}\n\n"
    )
    body = "\n".join(section.markdown for section in sections)
    options.results_path.parent.mkdir(parents=True, exist_ok=True)
    options.results_path.write_text(header + body)
    print(f"\nwrote {options.results_path}")


def tool_versions() -> str:
    found = []
    for argv in (["nginx", "-v"], ["haproxy", "-v"], ["wrk", "-v"]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        first = (done.stdout + done.stderr).strip().splitlines()
        if first:
            found.append(first[0].split(" - ")[0].split(" Copyright")[0].strip())
    return "; ".join(found) or "unknown"


if __name__ == "__main__":
    sys.exit(main())
