"""The data plane's commands, `proxy` and `demo`, and the dispatch they share with the
control plane's. The `kubeferry` command itself is assembled in `kubeferry.cli`, which adds
`controller.cli.COMMAND`: this module never imports the control plane (`python -m proxy`
offers only the data plane's commands).

Exit status: 0 after a clean shutdown, 1 on a runtime failure (a port already taken, a crashed
task), 2 for bad usage or an invalid setting, reported before anything listens.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.model import UpstreamSpec
from proxy.settings import Settings, SettingsError, TlsSettings, load_settings

if TYPE_CHECKING:
    from proxy.tls.files import FileReloader
    from proxy.tls.store import CertificateStore

EXIT_USAGE = 2
SELF_SIGNED = "self-signed"

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


@dataclass(frozen=True)
class Command:
    """One subcommand: `add_arguments` fills its parser, `run` gets the parsed flags and
    returns the exit status. The control plane contributes its own (controller.cli.COMMAND)."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str | None = None


def build_parser(
    commands: Sequence[Command] | None = None, *, prog: str = "kubeferry"
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A Kubernetes-aware HTTP (L7) load balancer.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in DATA_PLANE_COMMANDS if commands is None else commands:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    commands: Sequence[Command] | None = None,
    prog: str = "kubeferry",
) -> int:
    """Parse `argv` and run the chosen command (by default the data plane's only)."""
    args = build_parser(commands, prog=prog).parse_args(argv)
    return int(args._run(args))


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
    tls = parser.add_argument_group(
        "HTTPS",
        # Hand-wrapped: the raw formatter keeps the epilog's layout and this one's alike.
        "HTTPS on --tls-port, routed as plain HTTP. The files are re-read every\n"
        "tls.reload_interval_seconds and on SIGHUP; a broken pair is logged and the last\n"
        "good certificate kept. Without files (KUBEFERRY_TLS__ENABLED=true) the certificate\n"
        "is self-signed.",
    )
    tls.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="PEM certificate chain, leaf first (env KUBEFERRY_TLS__CERT_FILE); turns HTTPS on",
    )
    tls.add_argument(
        "--tls-key",
        type=Path,
        metavar="FILE",
        help="its PEM private key, unencrypted (env KUBEFERRY_TLS__KEY_FILE)",
    )
    tls.add_argument(
        "--tls-port",
        type=int,
        metavar="PORT",
        help="HTTPS port (env KUBEFERRY_TLS_PORT, default 3443)",
    )
    tls.add_argument(
        "--https-redirect",
        action="store_true",
        default=None,
        help="answer plain-HTTP requests with 308 to https (env KUBEFERRY_TLS__REDIRECT_HTTP)",
    )
    tls.add_argument(
        "--hsts-max-age",
        type=int,
        metavar="SECONDS",
        help="Strict-Transport-Security max-age on HTTPS answers "
        "(env KUBEFERRY_TLS__HSTS_MAX_AGE_SECONDS)",
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
    if args.tls_port is not None:
        overrides["tls_port"] = args.tls_port
    tls = {
        "cert_file": args.tls_cert,
        "key_file": args.tls_key,
        "redirect_http": args.https_redirect,
        "hsts_max_age_seconds": args.hsts_max_age,
    }
    if any(value is not None for value in tls.values()):
        overrides["tls"] = {key: value for key, value in tls.items() if value is not None}
    return overrides


def _run_proxy_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(config_file=args.config, overrides=_overrides(args))
        if not settings.backends:
            raise SettingsError(
                "backends: at least one is required (--backend or KUBEFERRY_BACKENDS)"
            )
        certificates = standalone_certificates(settings.tls)
    except SettingsError as error:
        print(f"kubeferry: {error}", file=sys.stderr)
        return EXIT_USAGE
    return run_proxy(settings, certificates=certificates)


def standalone_certificates(tls: TlsSettings) -> CertificateStore | None:
    """The HTTPS listener's store: the certificate files, or a self-signed certificate when
    HTTPS is on without files; None when HTTPS is off. SettingsError names the bad field."""
    from proxy.tls.certificate import CertificateError, load_certificate, self_signed
    from proxy.tls.files import CertificateFiles, utc_now
    from proxy.tls.store import CertificateSet, CertificateStore

    if not tls.serving:
        return None
    now = utc_now()
    if tls.cert_file is None or tls.key_file is None:
        chain, key = self_signed(now=now)
        certificate = load_certificate(chain, key, source=SELF_SIGNED, now=now)
    else:
        files = CertificateFiles(tls.cert_file, tls.key_file)
        try:
            certificate = files.load(now=now)
        except CertificateError as error:
            raise SettingsError(files.explain(error)) from None
    return CertificateStore(CertificateSet.build(certificate))


def _add_demo_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=3000, help="load balancer port (default 3000)")
    parser.add_argument("--admin-port", type=int, default=9000, help="admin port (default 9000)")


def _run_demo_command(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(port=args.port, admin_port=args.admin_port)


def run_proxy(settings: Settings, *, certificates: CertificateStore | None = None) -> int:
    """The standalone load balancer until SIGTERM/SIGINT; returns the exit status. With
    `certificates`, HTTPS on tls_port too, over the same route."""
    from proxy.app import DataPlane, Listener
    from proxy.logging import configure_logging
    from proxy.routing import Router, RouteTable

    configure_logging(settings.log)
    tls = settings.tls
    router = Router(
        RouteTable.single(
            "default",
            https_redirect=tls.redirect_http,
            hsts_max_age_seconds=tls.hsts_max_age_seconds,
        )
    )
    listeners = [Listener(settings.host, settings.port, router)]
    if certificates is not None:
        listeners.append(Listener(settings.host, settings.tls_port, router, tls=certificates))
    reloader = certificate_reloader(tls, certificates) if certificates is not None else None

    async def serve() -> int:
        plane = DataPlane(settings, listeners=listeners)
        plane.apply({"default": standalone_upstream(settings)})
        if reloader is None:
            return await plane.serve()
        undo = reloader.handle_sighup()
        try:
            return await plane.serve(tasks=[reloader.run])
        finally:
            undo()

    return run_event_loop(serve())


def certificate_reloader(tls: TlsSettings, certificates: CertificateStore) -> FileReloader | None:
    """Log what HTTPS serves; the reloader of the certificate files, if there are any."""
    import logging

    from proxy.tls.files import CertificateFiles, FileReloader

    serving = certificates.current.default
    log = logging.getLogger("kubeferry.tls")
    if tls.cert_file is None or tls.key_file is None:
        log.warning(
            "no TLS certificate configured: serving a self-signed one (clients cannot verify "
            "it); set tls.cert_file and tls.key_file",
            extra={"event": "tls_self_signed", **serving.describe()},
        )
        return None
    log.info(
        "TLS certificate loaded from %s (serial %x)",
        serving.source,
        serving.serial,
        extra={"event": "tls_certificate_loaded", **serving.describe()},
    )
    files = CertificateFiles(tls.cert_file, tls.key_file)
    return FileReloader(files, certificates, interval_seconds=tls.reload_interval_seconds)


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


DATA_PLANE_COMMANDS = (
    Command(
        "proxy",
        help="balance HTTP over static backends",
        description="Run the load balancer over a fixed list of backends.",
        epilog=_PROXY_EPILOG,
        add_arguments=_add_setting_flags,
        run=_run_proxy_command,
    ),
    Command(
        "demo",
        help="three local demo backends behind the load balancer on :3000",
        description="Start demo backends on 127.0.0.1:3001-3003 and the load balancer on "
        "127.0.0.1:3000, and print how to watch it fail over and recover.",
        add_arguments=_add_demo_flags,
        run=_run_demo_command,
    ),
)
