"""`kubeferry controller` (also `python -m controller`): flags, credentials, then `Controller`.
`COMMAND` is what `kubeferry.cli` adds to the data plane's commands.

The environment the controller depends on (POD_NAMESPACE, the service account files,
KUBERNETES_SERVICE_HOST) is read here and nowhere else in the package; proxy settings come
from `proxy.settings.load_settings` as for the standalone proxy.

Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 for bad usage or an invalid
setting, reported before anything listens or connects.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.app import ControllerOptions, SidecarUpstream
from proxy.cli import Command, run_event_loop, standalone_certificates
from proxy.settings import Settings, SettingsError, load_settings
from proxy.tls.store import CertificateStore

EXIT_USAGE = 2
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label
_SERVICE_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035 label

_EPILOG = """\
ingress mode (default): listens on --port (3000) on all addresses and balances every Service
with the annotation kubeferry.io/enabled: "true" in the watched namespaces, routed by its
kubeferry.io/host and kubeferry.io/path-prefix annotations.

sidecar mode (--upstream NAME=PORT): listens on 127.0.0.1 only, one port per Service, and
watches only those Services; names without a namespace are in the pod's own namespace
(POD_NAMESPACE, else the service account's namespace, else --namespace, else "default").

HTTPS (ingress mode): with tls.enabled (or tls.cert_file) a second listener on tls_port
(3443) serves the same routes; Services pick their certificate with kubeferry.io/tls-secret.

Credentials: in-cluster when running in a pod, else --kubeconfig, KUBECONFIG or
~/.kube/config. Annotations: docs/annotations.md. Proxy settings (health checks, timeouts,
retries) come from --config and KUBEFERRY_* variables as for `kubeferry proxy`.
"""


class UsageError(Exception):
    """A flag is invalid; the message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE", help="kubeconfig file")
    parser.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="namespace(s) to watch, repeatable or comma-separated, or 'all' (default); in "
        "sidecar mode, the pod's namespace when neither POD_NAMESPACE nor the service "
        "account says",
    )
    parser.add_argument(
        "--mode",
        choices=("ingress", "sidecar"),
        help="ingress (default) or sidecar (the default when --upstream is given)",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="[NS/]NAME=PORT",
        help="sidecar mode: serve Service NAME on 127.0.0.1:PORT; repeatable",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file")
    parser.add_argument("--host", help="ingress listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="ingress listen port (default 3000)")
    parser.add_argument(
        "--admin-port", type=int, help="/healthz /readyz /metrics /backends port (default 9000)"
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="default info"
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(config_file=args.config, overrides=_overrides(args))
        options = parse_options(args, environ=os.environ)
        kubeconfig = _kubeconfig(args.kubeconfig)
        # HTTPS is ingress mode's: a bad tls.cert_file is reported before anything starts.
        certificates = standalone_certificates(settings.tls) if options.mode == "ingress" else None
    except (SettingsError, UsageError) as error:
        print(f"kubeferry controller: {error}", file=sys.stderr)
        return EXIT_USAGE

    from proxy.logging import configure_logging

    configure_logging(settings.log)
    return run_event_loop(_serve(settings, options, kubeconfig, certificates))


async def _serve(
    settings: Settings,
    options: ControllerOptions,
    kubeconfig: Path | None,
    certificates: CertificateStore | None = None,
) -> int:
    from controller.app import Controller

    try:
        api = await api_client(kubeconfig, environ=os.environ)
    except Exception as error:  # the config loaders raise several unrelated types
        print(f"kubeferry controller: cannot load Kubernetes credentials: {error}", file=sys.stderr)
        return 1
    async with api:
        controller = Controller(settings, options, api_client=api, certificates=certificates)
        return await controller.serve()


async def api_client(kubeconfig: Path | None, *, environ: Mapping[str, str]) -> Any:
    """A kubernetes-asyncio ApiClient: in-cluster credentials inside a pod unless a kubeconfig
    is named, else the kubeconfig (`kubeconfig`, KUBECONFIG or ~/.kube/config)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    if kubeconfig is None and in_cluster(environ):
        load_incluster: Any = config.load_incluster_config  # untyped in kubernetes-asyncio
        load_incluster(client_configuration=configuration)
    else:
        await config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else (environ.get("KUBECONFIG") or None),
            client_configuration=configuration,
        )
    return client.ApiClient(configuration)


def in_cluster(environ: Mapping[str, str], account_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    return "KUBERNETES_SERVICE_HOST" in environ and (account_dir / "token").exists()


def parse_options(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str],
    account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> ControllerOptions:
    """Check the controller's own flags; raise UsageError naming the bad one."""
    upstream_texts: Sequence[str] = args.upstream or ()
    mode = args.mode or ("sidecar" if upstream_texts else "ingress")
    namespaces = _split(args.namespace or ())
    for namespace in namespaces:
        if namespace != "all" and not _NAMESPACE_RE.match(namespace):
            raise UsageError(f"--namespace {namespace!r} is not a namespace name")

    if mode == "ingress":
        if upstream_texts:
            raise UsageError("--upstream is for sidecar mode (drop --mode ingress)")
        if "all" in namespaces and len(namespaces) > 1:
            raise UsageError("--namespace all cannot be combined with named namespaces")
        watched = None if not namespaces or namespaces == ["all"] else tuple(namespaces)
        return ControllerOptions("ingress", namespaces=watched)

    if not upstream_texts:
        raise UsageError("sidecar mode needs at least one --upstream NAME=PORT")
    if args.port is not None:
        raise UsageError("--port is for ingress mode; in sidecar mode use --upstream NAME=PORT")
    if len(namespaces) > 1 or namespaces == ["all"]:
        raise UsageError("in sidecar mode --namespace names the pod's one namespace")
    own = pod_namespace(namespaces[0] if namespaces else None, environ, account_dir)
    upstreams = tuple(parse_upstream(text, own) for text in upstream_texts)
    _unique([u.key for u in upstreams], "Service")
    _unique([u.port for u in upstreams], "port")
    if args.admin_port is not None and args.admin_port in {u.port for u in upstreams}:
        raise UsageError(f"--admin-port {args.admin_port} is also an --upstream port")
    return ControllerOptions("sidecar", upstreams=upstreams)


def parse_upstream(text: str, own_namespace: str) -> SidecarUpstream:
    """`orders=3001` or `shop/orders=3001`."""
    target, sep, port_text = text.partition("=")
    if not sep:
        raise UsageError(f"--upstream {text!r}: expected [NAMESPACE/]NAME=PORT")
    namespace, slash, name = target.strip().rpartition("/")
    namespace = namespace if slash else own_namespace
    if not _NAMESPACE_RE.match(namespace):
        raise UsageError(f"--upstream {text!r}: {namespace!r} is not a namespace name")
    if not _SERVICE_RE.match(name):
        raise UsageError(f"--upstream {text!r}: {name!r} is not a Service name")
    port_text = port_text.strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"--upstream {text!r}: port must be a number 1-65535")
    return SidecarUpstream(namespace, name, int(port_text))


def pod_namespace(
    flag: str | None, environ: Mapping[str, str], account_dir: Path = SERVICE_ACCOUNT_DIR
) -> str:
    """POD_NAMESPACE (downward API), else the service account's namespace file, else the
    --namespace flag, else "default"."""
    from_env = environ.get("POD_NAMESPACE", "").strip()
    if from_env:
        return from_env
    try:
        from_file = (account_dir / "namespace").read_text().strip()
    except OSError:
        from_file = ""
    return from_file or flag or "default"


def _kubeconfig(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise UsageError(f"--kubeconfig {path}: no such file")
    return path


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flat = {"host": args.host, "port": args.port, "admin_port": args.admin_port}
    overrides: dict[str, Any] = {k: v for k, v in flat.items() if v is not None}
    if args.log_level is not None:
        overrides["log"] = {"level": args.log_level}
    return overrides


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _unique(values: Sequence[object], what: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise UsageError(f"--upstream: {what} {value} given twice")
        seen.add(value)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m controller`: the same as `kubeferry controller`."""
    parser = argparse.ArgumentParser(
        prog="python -m controller", description="Run the kubeferry Kubernetes controller."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


COMMAND = Command(
    "controller",
    help="run the Kubernetes controller (ingress or sidecar mode)",
    description="Watch Services and EndpointSlices and balance over them.",
    add_arguments=add_arguments,
    run=run,
)
