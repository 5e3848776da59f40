"""Command-line options of `python -m bench`, parsed once into a frozen value."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"
# The checkout's own CLI, wherever the harness is started from; else whatever is on PATH.
_VENV_KUBEFERRY = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "kubeferry"
DEFAULT_KUBEFERRY = _VENV_KUBEFERRY if _VENV_KUBEFERRY.exists() else Path("kubeferry")
MAX_SERVICES = 100_000  # 1,000,000 endpoints: far past what one API server on loopback holds
# Idle section: every idle connection takes a loopback ephemeral port (32768-60999 by default,
# shared with wrk and the upstream pools), so well under 28,000.
MAX_IDLE_CONNECTIONS = 25_000
SECTIONS = ("proxy", "tls", "churn", "idle", "controller", "all")


@dataclass(frozen=True, slots=True)
class Options:
    """What every section gets. Durations are per load balancer; every wrk run is bounded."""

    only: str = "all"
    duration_seconds: int = 10
    warmup_seconds: int = 2
    rounds: int = 3
    connections: int = 32
    threads: int = 1
    floor_ratio: float = 0.2
    quick: bool = False
    results_path: Path = DEFAULT_RESULTS
    keep_temp: bool = False
    kubeferry: Path = DEFAULT_KUBEFERRY
    pin_cpus: bool = True
    # Controller section: enrolled Services, ten endpoints each (None: 1,000; --quick: 100).
    services: int | None = None
    # Churn section: one backend restarted every period, for this many periods.
    churn_period_seconds: int = 20
    churn_cycles: int = 3
    # Idle section: keep-alive connections held idle, and wrk's connections while they are.
    idle_connections: int = 10_000
    idle_active_connections: int = 256


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="kubeferry vs nginx and HAProxy over the same loopback backends, with wrk.",
    )
    parser.add_argument("--only", choices=SECTIONS, default="all")
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        help="seconds of load per run (idle section: at most 30)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measured runs per load balancer, interleaved; the median is reported",
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument(
        "--floor", type=float, default=0.2, help="minimum kubeferry+access-log / nginx ratio"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: one round of 3 s, 1 s warm-up"
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="Markdown output")
    parser.add_argument("--keep-temp", action="store_true", help="keep configs and logs")
    parser.add_argument(
        "--kubeferry",
        type=Path,
        default=DEFAULT_KUBEFERRY,
        help="the CLI to run; the aiohttp reference row runs on the Python of its #! line",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not give the load balancer a CPU of its own apart from wrk and the backends",
    )
    parser.add_argument(
        "--services",
        type=int,
        metavar="N",
        help="controller section: enrolled Services, 10 endpoints each (default 1000; "
        "--quick: 100)",
    )
    parser.add_argument(
        "--churn-period",
        type=int,
        default=20,
        metavar="S",
        help="churn section: a backend restarts every S seconds (--quick: 4)",
    )
    parser.add_argument(
        "--churn-cycles",
        type=int,
        default=3,
        metavar="N",
        help="churn section: restarts per load balancer (--quick: 2)",
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=10_000,
        metavar="N",
        help="idle section: keep-alive connections held idle during the load (default 10000)",
    )
    parser.add_argument(
        "--idle-active",
        type=int,
        default=256,
        metavar="C",
        help="idle section: wrk -c while the idle connections are held (default 256)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.idle_connections <= MAX_IDLE_CONNECTIONS:
        parser.error(f"--idle-connections must be 1-{MAX_IDLE_CONNECTIONS}")
    if not args.threads <= args.idle_active <= 4096:
        parser.error("--idle-active must be at least --threads and at most 4096")
    if not 4 <= args.churn_period <= 120 or not 1 <= args.churn_cycles <= 20:
        parser.error("--churn-period must be 4-120 s and --churn-cycles 1-20")
    if args.services is not None and not 1 <= args.services <= MAX_SERVICES:
        parser.error(f"--services {args.services} is out of range 1-{MAX_SERVICES}")
    for name in ("duration", "warmup", "rounds", "connections", "threads"):
        value = getattr(args, name)
        if value < (0 if name == "warmup" else 1) or value > (20 if name == "rounds" else 600):
            parser.error(f"--{name} {value} is out of range")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk needs a connection each)")
    return Options(
        only=args.only,
        duration_seconds=3 if args.quick else args.duration,
        warmup_seconds=1 if args.quick else args.warmup,
        rounds=1 if args.quick else args.rounds,
        connections=args.connections,
        threads=args.threads,
        floor_ratio=args.floor,
        quick=args.quick,
        results_path=args.results,
        keep_temp=args.keep_temp,
        kubeferry=args.kubeferry,
        pin_cpus=not args.no_pin,
        services=args.services,
        churn_period_seconds=4 if args.quick else args.churn_period,
        churn_cycles=2 if args.quick else args.churn_cycles,
        idle_connections=args.idle_connections,
        idle_active_connections=args.idle_active,
    )
