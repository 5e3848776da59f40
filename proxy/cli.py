"""`kubeferry`: the command line. `proxy` and `demo` live here; `controller` is contributed by
`controller.cli` when that package is installed.

Exit status: 0 after a clean shutdown, 1 on a runtime failure (a port already taken, a crashed
task), 2 for bad usage or an invalid setting, reported before anything listens.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from proxy.model import UpstreamSpec
from proxy.settings import Settings, SettingsError, load_settings

EXIT_USAGE = 2

_PROXY_EPILOG = """\
Every setting can also come from the environment (KUBEFERRY_<FIELD>, nested fields joined
with "__", e.g. KUBEFERRY_HEALTH__INTERVAL_SECONDS=2, KUBEFERRY_TIMEOUTS__DRAIN_SECONDS=10,
KUBEFERRY_RETRIES__MAX_RETRIES=1, KUBEFERRY_LIMITS__MAX_BODY_BYTES=10485760,
KUBEFERRY_LOG__LEVEL=debug) or from the YAML file given with --config (same names, nested
as mappings). Flags win over the environment, the environment over the file.

The admin port serves /healthz, /readyz, /metrics (Prometheus) and /backends (JSON).
On SIGTERM the proxy turns /readyz false, stops accepting, lets in-flight requests finish
for up to timeouts.drain_seconds and exits 0. A second SIGTERM or SIGINT (Ctrl-C again)
during shutdown ends the drain at once: requests still in flight are cut off, cleanup
finishes and the exit status is still 0.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeferry",
        description="A Kubernetes-aware HTTP (L7) load balancer.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    proxy = commands.add_parser(
        "proxy",
        help="balance HTTP over static backends",
        description="Run the load balancer over a fixed list of backends.",
        epilog=_PROXY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_setting_flags(proxy)

    demo = commands.add_parser(
        "demo",
        help="three local demo backends behind the load balancer on :3000",
        description="Start demo backends on 127.0.0.1:3001-3003 and the load balancer on "
        "127.0.0.1:3000, and print how to watch it fail over and recover.",
    )
    demo.add_argument("--port", type=int, default=3000, help="load balancer port (default 3000)")
    demo.add_argument("--admin-port", type=int, default=9000, help="admin port (default 9000)")

    _add_controller(commands)
    return parser


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    # Defaults are None so an absent flag leaves the environment and the file in charge.
    parser.add_argument(
        "--backend",
        dest="backends",
        action="append",
        metavar="URL",
        help="a backend as http://host:port; repeat for more (env KUBEFERRY_BACKENDS, "
        "comma-separated)",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file")
    parser.add_argument("--host", help="listen address (env KUBEFERRY_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="listen port (env KUBEFERRY_PORT, default 3000)")
    parser.add_argument(
        "--admin-port",
        type=int,
        help="admin port for /healthz /readyz /metrics /backends; 0 turns it off "
        "(env KUBEFERRY_ADMIN_PORT, default 9000)",
    )
    parser.add_argument(
        "--strategy",
        help="round-robin, weighted-round-robin, least-request, random or consistent-hash "
        "(env KUBEFERRY_STRATEGY, default round-robin)",
    )
    parser.add_argument(
        "--hash-on",
        help="for consistent-hash: header:NAME, cookie:NAME or client (env KUBEFERRY_HASH_ON)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log level (env KUBEFERRY_LOG__LEVEL, default info)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flat = {
        "backends": tuple(args.backends) if args.backends else None,
        "host": args.host,
        "port": args.port,
        "admin_port": args.admin_port,
        "strategy": args.strategy,
        "hash_on": args.hash_on,
    }
    overrides: dict[str, Any] = {key: value for key, value in flat.items() if value is not None}
    if args.log_level is not None:
        overrides["log"] = {"level": args.log_level}
    return overrides


def _add_controller(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    try:
        from controller import cli as controller_cli  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return  # the control plane is not installed: proxy and demo still work
    controller = commands.add_parser(
        "controller",
        help="run the Kubernetes controller (ingress or sidecar mode)",
        description="Watch Services and EndpointSlices and balance over them.",
    )
    controller_cli.add_arguments(controller)
    controller.set_defaults(_run=controller_cli.run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "proxy":
        try:
            settings = load_settings(config_file=args.config, overrides=_overrides(args))
            if not settings.backends:
                raise SettingsError(
                    "backends: at least one is required (--backend or KUBEFERRY_BACKENDS)"
                )
        except SettingsError as error:
            print(f"kubeferry: {error}", file=sys.stderr)
            return EXIT_USAGE
        return run_proxy(settings)
    if args.command == "demo":
        from proxy.demo import run_demo

        return run_demo(port=args.port, admin_port=args.admin_port)
    run = args._run
    return int(run(args))


def run_proxy(settings: Settings) -> int:
    """The standalone load balancer until SIGTERM/SIGINT; returns the exit status."""
    from proxy.app import DataPlane, Listener
    from proxy.logging import configure_logging
    from proxy.routing import Router, RouteTable

    configure_logging(settings.log)

    async def serve() -> int:
        plane = DataPlane(
            settings,
            listeners=[
                Listener(settings.host, settings.port, Router(RouteTable.single("default")))
            ],
        )
        plane.apply({"default": standalone_upstream(settings)})
        return await plane.serve()

    return run_event_loop(serve())


def standalone_upstream(settings: Settings) -> UpstreamSpec:
    """The static backends as upstream "default"."""
    return UpstreamSpec(
        name="default",
        endpoints=settings.backend_endpoints(),
        strategy=settings.strategy,
        hash_on=settings.hash_key_source(),
        health=settings.health.to_spec(),
        outlier=settings.outlier.to_spec(),
    )


def run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop when it is installed (faster sockets), else on asyncio's loop.
    A port that cannot be bound ends with status 1 and a one-line reason."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        try:
            return runner.run(main)
        except OSError as error:
            print(f"kubeferry: cannot listen: {error}", file=sys.stderr)
            return 1
