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

from controller.app import (
    DEFAULT_GATEWAY_CONTROLLER,
    ControllerOptions,
    GatewayOptions,
    SidecarUpstream,
)
from proxy.cli import Command, run_event_loop, standalone_certificates
from proxy.settings import Settings, SettingsError, load_settings
from proxy.tls.store import CertificateStore

EXIT_USAGE = 2
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label
_SERVICE_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035 label
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# GatewayClass spec.controllerName, as the CRD validates it: a domain, a slash, a path.
_CONTROLLER_NAME_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$"
)

_EPILOG = """\
ingress mode (default): listens on --port (3000) on all addresses and balances every Service
with the annotation kubeferry.io/enabled: "true" in the watched namespaces, routed by its
kubeferry.io/host and kubeferry.io/path-prefix annotations.

sidecar mode (--upstream NAME=PORT): listens on 127.0.0.1 only, one port per Service, and
watches only those Services; names without a namespace are in the pod's own namespace
(POD_NAMESPACE, else the service account's namespace, else --namespace, else "default").

HTTPS (ingress mode): with tls.enabled (or tls.cert_file) a second listener on tls_port
(3443) serves the same routes; Services pick their certificate with kubeferry.io/tls-secret.

Gateway API (ingress mode, --gateway-api): also serves every Gateway whose GatewayClass names
--gateway-controller-name, with its HTTPRoutes (the Gateway API v1.6 CRDs must be installed;
until they are, this waits and retries). Each Gateway gets a ClusterIP Service of its own,
kf-gw-<hash>, in the controller's namespace (POD_NAMESPACE, else the service account's, else
the one --namespace, else "default"), selecting the kubeferry pods by
--gateway-service-selector; its ports lead to internal ports from --gateway-port-range.

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
    parser.add_argument(
        "--gateway-api",
        action="store_true",
        help="ingress mode: also serve Gateway API Gateways and HTTPRoutes",
    )
    parser.add_argument(
        "--gateway-controller-name",
        metavar="NAME",
        help=f"the GatewayClass controllerName to serve (default {DEFAULT_GATEWAY_CONTROLLER})",
    )
    parser.add_argument(
        "--gateway-service-selector",
        metavar="KEY=VALUE,...",
        help="labels of the kubeferry pods, the selector of each Gateway's Service "
        "(required with --gateway-api)",
    )
    parser.add_argument(
        "--gateway-port-range",
        metavar="FIRST-LAST",
        help="internal listening ports for the Gateways' listeners (default 20000-29999)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(config_file=args.config, overrides=_overrides(args))
        options = parse_options(args, environ=os.environ)
        _check_gateway_ports(options, settings)
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
        # The Gateways' Services live in the controller's own namespace.
        own = watched[0] if watched is not None and len(watched) == 1 else None
        gateway = parse_gateway(args, pod_namespace(own, environ, account_dir))
        return ControllerOptions("ingress", namespaces=watched, gateway=gateway)

    if args.gateway_api or _gateway_flags(args):
        raise UsageError("--gateway-api and its flags are for ingress mode")

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


def parse_gateway(args: argparse.Namespace, service_namespace: str) -> GatewayOptions | None:
    """The --gateway-* flags, or None without --gateway-api (then they must be absent)."""
    if not args.gateway_api:
        given = _gateway_flags(args)
        if given:
            raise UsageError(f"{given[0]} needs --gateway-api")
        return None
    name = args.gateway_controller_name or DEFAULT_GATEWAY_CONTROLLER
    if len(name) > 253 or not _CONTROLLER_NAME_RE.match(name):
        raise UsageError(
            f"--gateway-controller-name {name!r}: expected a domain-prefixed path such as "
            f"{DEFAULT_GATEWAY_CONTROLLER}"
        )
    if not args.gateway_service_selector:
        raise UsageError(
            "--gateway-api needs --gateway-service-selector KEY=VALUE,... (the labels of the "
            "kubeferry pods, which each Gateway's Service selects)"
        )
    selector = tuple(parse_label(part) for part in _split([args.gateway_service_selector]))
    _unique_labels([key for key, _ in selector])
    return GatewayOptions(
        controller_name=name,
        service_namespace=service_namespace,
        service_selector=selector,
        port_range=parse_port_range(args.gateway_port_range or "20000-29999"),
    )


def parse_label(text: str) -> tuple[str, str]:
    """`app.kubernetes.io/name=kubeferry`: a label key and value as the API validates them."""
    key, sep, value = (part.strip() for part in text.partition("="))
    where = f"--gateway-service-selector {text!r}"
    if not sep:
        raise UsageError(f"{where}: expected KEY=VALUE")
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _SUBDOMAIN_RE.match(prefix)):
        raise UsageError(f"{where}: the key's prefix {prefix!r} is not a DNS subdomain")
    if not _LABEL_NAME_RE.match(name):
        raise UsageError(f"{where}: {name!r} is not a label name (at most 63 of [-._a-zA-Z0-9])")
    if value and not _LABEL_NAME_RE.match(value):
        raise UsageError(f"{where}: {value!r} is not a label value (at most 63 of [-._a-zA-Z0-9])")
    return key, value


def parse_port_range(text: str) -> tuple[int, int]:
    """`20000-29999`: the first and last port, inclusive."""
    first, sep, last = (part.strip() for part in text.partition("-"))
    where = f"--gateway-port-range {text!r}"
    if not sep or not first.isdigit() or not last.isdigit():
        raise UsageError(f"{where}: expected FIRST-LAST, such as 20000-29999")
    low, high = int(first), int(last)
    if not 1 <= low <= high <= 65535:
        raise UsageError(f"{where}: ports must be 1-65535, the first not above the last")
    return low, high


def _check_gateway_ports(options: ControllerOptions, settings: Settings) -> None:
    # A Gateway listener given a port the controller already listens on could never bind.
    if options.gateway is None:
        return
    low, high = options.gateway.port_range
    taken = {"port": settings.port, "admin_port": settings.admin_port}
    if settings.tls.serving:
        taken["tls_port"] = settings.tls_port
    for name, port in taken.items():
        if low <= port <= high:
            raise UsageError(f"--gateway-port-range {low}-{high} contains {name} {port}")


def _gateway_flags(args: argparse.Namespace) -> list[str]:
    flags = {
        "--gateway-controller-name": args.gateway_controller_name,
        "--gateway-service-selector": args.gateway_service_selector,
        "--gateway-port-range": args.gateway_port_range,
    }
    return [flag for flag, value in flags.items() if value is not None]


def _unique_labels(keys: Sequence[str]) -> None:
    if len(set(keys)) != len(keys):
        raise UsageError("--gateway-service-selector: a label key is given twice")


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
