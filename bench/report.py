"""Result rows, the table (plain text for the terminal, Markdown for the file) and sections."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.wrk import WrkResult


@dataclass(frozen=True, slots=True)
class Row:
    """One load balancer's measured run, or why it has none. `rounds` holds the requests/s
    of every round the row's result was picked from (empty: a single run)."""

    name: str
    result: WrkResult | None = None
    problem: str = ""
    rounds: tuple[float, ...] = ()

    @property
    def spread(self) -> float | None:
        return spread(self.rounds)


def spread(values: Sequence[float]) -> float | None:
    """Run-to-run spread: (max - min) / median, 0.12 for 12%. None for fewer than two values
    or a zero median (nothing to compare against)."""
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    if middle <= 0:
        return None
    return (max(values) - min(values)) / middle


def format_spread(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def describe_rounds(row: Row) -> str:
    """The rounds' values and their spread, for the note under a table."""
    values = ", ".join(f"{value:,.0f}" for value in row.rounds)
    return f"{row.name}: requests/s per round {values} (spread {format_spread(row.spread)})."


@dataclass(frozen=True, slots=True)
class Section:
    """What a benchmark section hands back: Markdown for the results file, and the reasons
    (if any) it failed; any failure makes `python -m bench` exit non-zero."""

    title: str
    markdown: str
    failures: tuple[str, ...] = ()


def format_seconds(seconds: float) -> str:
    if seconds < 1e-5:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


HEADERS = ("load balancer", "requests/s", "p50", "p99", "CPU/request", "errors", "vs nginx")
SPREAD = "spread"


def headers(
    rows: list[Row], *, first: str = HEADERS[0], ratio: str = HEADERS[-1]
) -> tuple[str, ...]:
    """The columns: a spread column after requests/s when some row has rounds to compare."""
    spread_column = (SPREAD,) if any(len(row.rounds) > 1 for row in rows) else ()
    return (first, HEADERS[1], *spread_column, *HEADERS[2:-1], ratio)


def table_cells(rows: list[Row], baseline: float | None) -> list[tuple[str, ...]]:
    with_spread = SPREAD in headers(rows)
    cells: list[tuple[str, ...]] = []
    for row in rows:
        r = row.result
        spread_cell = (format_spread(row.spread),) if with_spread else ()
        if r is None:
            dashes = ("-",) * (5 + len(spread_cell))
            cells.append((row.name, *dashes, f"not run: {row.problem}"))
            continue
        ratio = f"{r.requests_per_second / baseline:.2f}x" if baseline else "-"
        cells.append(
            (
                row.name,
                f"{r.requests_per_second:,.0f}",
                *spread_cell,
                format_seconds(r.p50_seconds),
                format_seconds(r.p99_seconds),
                "-"
                if r.cpu_per_request_seconds is None
                else format_seconds(r.cpu_per_request_seconds),
                str(r.errors),
                ratio,
            )
        )
    return cells


def markdown_table(
    rows: list[Row],
    baseline: float | None,
    *,
    first: str = HEADERS[0],
    ratio: str = HEADERS[-1],
) -> str:
    names = headers(rows, first=first, ratio=ratio)
    lines = [
        "| " + " | ".join(names) + " |",
        "|" + "|".join(("---", *("---:",) * (len(names) - 1))) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(rows, baseline)]
    return "\n".join(lines) + "\n"


def text_table(
    rows: list[Row],
    baseline: float | None,
    *,
    first: str = HEADERS[0],
    ratio: str = HEADERS[-1],
) -> str:
    names = headers(rows, first=first, ratio=ratio)
    cells = [names, *table_cells(rows, baseline)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    out = []
    for line in cells:
        # Name column left-aligned, numbers right-aligned.
        parts = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"
