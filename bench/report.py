"""Result rows, the table (plain text for the terminal, Markdown for the file) and sections."""

from __future__ import annotations

from dataclasses import dataclass

from bench.wrk import WrkResult


@dataclass(frozen=True, slots=True)
class Row:
    """One load balancer's measured run, or why it has none."""

    name: str
    result: WrkResult | None = None
    problem: str = ""


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


def table_cells(rows: list[Row], baseline: float | None) -> list[tuple[str, ...]]:
    cells: list[tuple[str, ...]] = []
    for row in rows:
        r = row.result
        if r is None:
            cells.append((row.name, "-", "-", "-", "-", "-", f"not run: {row.problem}"))
            continue
        ratio = f"{r.requests_per_second / baseline:.2f}x" if baseline else "-"
        cells.append(
            (
                row.name,
                f"{r.requests_per_second:,.0f}",
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


def markdown_table(rows: list[Row], baseline: float | None) -> str:
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(("---", *("---:",) * (len(HEADERS) - 1))) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(rows, baseline)]
    return "\n".join(lines) + "\n"


def text_table(rows: list[Row], baseline: float | None) -> str:
    cells = [HEADERS, *table_cells(rows, baseline)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    out = []
    for line in cells:
        # Name column left-aligned, numbers right-aligned.
        parts = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"
