"""Mutation score per module, from the last `mutmut run` (what `make mutation` prints).

    .venv/bin/python hack/mutation_score.py [--min PERCENT] [--survivors | --alive-names]

The table goes to stdout and to mutants/scores.txt.
Reads `mutmut results --all true`; a mutant counts as killed when a test failed or timed out.
Mutants listed in tests/unit/equivalent_mutants.toml cannot change behaviour (each entry says
why) and are left out of the score, but only while the mutant still makes the recorded change:
mutmut numbers mutants per function, so an edit to the function renumbers them, and a stale
entry is reported (and the mutant counted) instead of silently excusing a different mutant.

Scope: of proxy/health.py only the pure decision logic is scored (PURE_PARTS); its probe loop
does I/O and is tested against real servers in tests/integration, not by the unit tests that
mutmut runs. Exit status 1 when --min is given and a module scores below it.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tests" / "unit" / "equivalent_mutants.toml"
MUTANTS = ROOT / "mutants"
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
# mutmut's names: module.x_function__mutmut_N or module.xǁClassǁmethod__mutmut_N.
NAME = re.compile(r"^(?P<module>[\w.]+)\.(?P<function>x(?:ǁ\w+ǁ|_)\w+?)__mutmut_(?P<n>\d+)$")
PURE_PARTS = {
    "proxy.health": (
        "xǁProbeStreakǁ",
        "xǁProbeTargetǁ",
        "x_desired_targets",
        "x_plan",
        "x_connect_failure",
    ),
}


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    function: str
    status: str


def results() -> list[Mutant]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mutants = []
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        match = NAME.match(name)
        if sep and match:
            mutants.append(Mutant(name, match["module"], match["function"], status))
    return mutants


def scope(mutant: Mutant) -> str | None:
    """The row a mutant is scored in, or None when it is outside the scored logic."""
    parts = PURE_PARTS.get(mutant.module)
    if parts is None:
        return mutant.module
    if mutant.function.startswith(parts):
        return f"{mutant.module} (pure parts)"
    return None


def mutant_change(mutant: Mutant) -> set[str] | None:
    """The lines the mutant has and the original function lacks (stripped), from mutants/."""
    base = MUTANTS / mutant.module.replace(".", "/")
    for source_file in (base.with_suffix(".py"), base / "__init__.py"):
        if source_file.is_file():
            source = source_file.read_text()
            break
    else:
        return None
    number = mutant.name.rsplit("__mutmut_", 1)[1]
    wanted = {f"{mutant.function}__mutmut_{number}", f"{mutant.function}__mutmut_orig"}
    bodies: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in wanted:
            segment = ast.get_source_segment(source, node) or ""
            bodies[node.name] = [line.strip() for line in segment.splitlines()[1:]]
    if len(bodies) != 2:
        return None
    original = set(bodies[f"{mutant.function}__mutmut_orig"])
    return {line for line in bodies[f"{mutant.function}__mutmut_{number}"] if line not in original}


def equivalents(mutants: dict[str, Mutant]) -> tuple[set[str], list[str]]:
    """Names whose entry still matches the mutant, and a complaint for each stale entry."""
    table = tomllib.loads(EQUIVALENT_FILE.read_text())
    accepted, stale = set(), []
    for name, entry in table.items():
        if not entry.get("reason") or not entry.get("change"):
            stale.append(f"{name}: needs both `change` and `reason`")
            continue
        mutant = mutants.get(name)
        if mutant is None:
            stale.append(f"{name}: no such mutant any more")
            continue
        change = mutant_change(mutant)
        if change is None or entry["change"].strip() not in change:
            stale.append(f"{name}: the mutant no longer changes `{entry['change']}` (renumbered?)")
            continue
        accepted.add(name)
    return accepted, stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, help="fail when a module scores below this percent")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    parser.add_argument(
        "--alive-names", action="store_true", help="print only the names of scored survivors"
    )
    args = parser.parse_args()

    mutants = {m.name: m for m in results()}
    if not mutants:
        print("no mutmut results; run `make mutation` (or mutmut run) first", file=sys.stderr)
        return 1
    accepted, stale = equivalents(mutants)
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for mutant in mutants.values():
        row = scope(mutant)
        if row is None:
            continue
        if mutant.name in accepted:
            rows[row]["equivalent"] += 1
        elif mutant.status in KILLED:
            rows[row]["killed"] += 1
        else:
            rows[row]["alive"] += 1
            survivors.append(f"{mutant.name}: {mutant.status}")
    if args.alive_names:
        print("\n".join(sorted(s.rsplit(": ", 1)[0] for s in survivors)))
        return 0

    width = max(len(row) for row in rows)
    table = [f"{'module':<{width}}  killed / scored  score  (equivalent, left out)"]
    below = []
    total = Counter[str]()
    for row in sorted(rows):
        counts = rows[row]
        total.update(counts)
        scored = counts["killed"] + counts["alive"]
        score = 100.0 * counts["killed"] / scored if scored else 100.0
        table.append(
            f"{row:<{width}}  {counts['killed']:6} / {scored:6}  {score:5.1f}%"
            f"  ({counts['equivalent']})"
        )
        if args.min is not None and score < args.min:
            below.append(row)
    scored = total["killed"] + total["alive"]
    table.append(
        f"{'all':<{width}}  {total['killed']:6} / {scored:6}"
        f"  {100.0 * total['killed'] / max(scored, 1):5.1f}%  ({total['equivalent']})"
    )
    print("\n".join(table))
    (MUTANTS / "scores.txt").write_text("\n".join(table) + "\n")
    for complaint in stale:
        print(f"stale equivalence entry: {complaint}", file=sys.stderr)
    if args.survivors:
        print("\n".join(["", "alive (`mutmut show NAME` shows the change):", *sorted(survivors)]))
    if below:
        print(f"below {args.min}%: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
