"""The one parser of the `kubeferry.io/*` annotations (listed in controller.annotation_table)
from a Service into a frozen `ServiceSpec` plus the problems found.

An invalid value never raises and never silently changes behaviour: it becomes a `Problem`
(logged and reported as a Warning Event by the sync) and the field falls back to its default,
or, where no safe default exists (the route, the port), the Service is not enrolled.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from controller.annotation_table import ANNOTATIONS, KNOWN
from controller.objects import ANNOTATION_PREFIX, ServiceInfo, ServicePort
from proxy.model import HashOn, HealthSpec, OutlierSpec
from proxy.settings import Settings
from proxy.strategies import STRATEGIES, strategy_names

Mode = Literal["ingress", "sidecar"]
T = TypeVar("T")


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with one Service's annotations (or with what they name).

    Compared by value: the sync reports a problem once and again only when it changes.
    """

    annotation: str  # the full key, "kubeferry.io/port"
    value: str
    reason: str  # what is wrong and what happens instead
    blocking: bool = False  # True: the Service is not enrolled until it is fixed
    event_reason: str = "InvalidAnnotation"

    @property
    def message(self) -> str:
        return f"{self.annotation}={self.value!r}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Defaults:
    """Per-upstream settings used where a Service sets no (valid) annotation."""

    strategy: str = "round-robin"
    hash_on: HashOn | None = None
    health: HealthSpec = dataclasses.field(default_factory=HealthSpec)
    outlier: OutlierSpec = dataclasses.field(default_factory=OutlierSpec)
    # Whether this controller runs the HTTPS listener (`tls.enabled`): without it the TLS
    # annotations have nothing to act on and are reported.
    https: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Defaults:
        return cls(
            strategy=settings.strategy,
            hash_on=settings.hash_key_source(),
            health=settings.health.to_spec(),
            outlier=settings.outlier.to_spec(),
            https=settings.tls.serving,
        )


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Everything the annotations (and the Service's ports) decide for one enrolled Service."""

    port: ServicePort
    host: str | None
    path_prefix: str
    strategy: str
    hash_on: HashOn | None
    health: HealthSpec
    outlier: OutlierSpec
    # Ingress mode, HTTPS on: the Secret holding the host's certificate (same namespace),
    # 308 from plain HTTP to https, and the HSTS max-age of HTTPS answers.
    tls_secret: str | None = None
    https_redirect: bool = False
    hsts_max_age_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """`spec` is None when the Service is not enrolled: not opted in, or blocked by a problem."""

    spec: ServiceSpec | None
    problems: tuple[Problem, ...] = ()


# -- the parser -----------------------------------------------------------------------------


def parse_service(service: ServiceInfo, defaults: Defaults, *, mode: Mode) -> Parsed:
    """Read every `kubeferry.io/*` annotation of `service` once; never raises.

    Ingress mode enrols only Services with `enabled: "true"` and reads their route; sidecar
    mode enrols every Service it is given and has no use for a route.
    """
    problems: list[Problem] = []
    values = dict(service.annotations)

    if mode == "ingress":
        enabled_text = values.get(ANNOTATION_PREFIX + "enabled")
        if enabled_text is None:
            return Parsed(None)  # not opted in: its other annotations are none of our business
        enabled = _parse_bool(enabled_text)
        if enabled is None:
            reason = 'must be "true" or "false"; the Service is not enrolled'
            return Parsed(None, (_problem("enabled", enabled_text, reason, blocking=True),))
        if not enabled:
            return Parsed(None)

    for key in sorted(values.keys() - KNOWN):
        known = ", ".join(sorted(doc.name for doc in ANNOTATIONS))
        problems.append(Problem(key, values[key], f"unknown annotation (known: {known}); ignored"))

    def field(name: str, parse: Callable[[str], T], default: T, shown: str) -> T:
        text = values.get(ANNOTATION_PREFIX + name)
        if text is None:
            return default
        try:
            return parse(text)
        except ValueError as error:
            problems.append(_problem(name, text, f"{error}; using the default {shown}"))
            return default

    port = _select_port(service, values.get(ANNOTATION_PREFIX + "port"), problems)

    host: str | None = None
    path_prefix = "/"
    if mode == "ingress":
        host_text = values.get(ANNOTATION_PREFIX + "host")
        if host_text is not None:
            host = _blocking(problems, "host", host_text, parse_host)
        prefix_text = values.get(ANNOTATION_PREFIX + "path-prefix")
        if prefix_text is not None:
            path_prefix = _blocking(problems, "path-prefix", prefix_text, parse_path) or "/"

    strategy = field("strategy", parse_strategy, defaults.strategy, repr(defaults.strategy))
    hash_on = field("hash-on", HashOn.parse, defaults.hash_on, repr(str(defaults.hash_on)))
    hash_text = values.get(ANNOTATION_PREFIX + "hash-on")
    if hash_text is not None and strategy != "consistent-hash":
        reason = f"has no effect with strategy {strategy!r} (only with 'consistent-hash')"
        problems.append(_problem("hash-on", hash_text, reason))

    base = defaults.health
    health = dataclasses.replace(
        base,
        path=field("health-path", parse_path, base.path, repr(base.path)),
        interval_seconds=field(
            "health-interval", parse_duration, base.interval_seconds, f"{base.interval_seconds}s"
        ),
        timeout_seconds=field(
            "health-timeout", parse_duration, base.timeout_seconds, f"{base.timeout_seconds}s"
        ),
        healthy_threshold=field(
            "healthy-threshold",
            parse_threshold,
            base.healthy_threshold,
            str(base.healthy_threshold),
        ),
        unhealthy_threshold=field(
            "unhealthy-threshold",
            parse_threshold,
            base.unhealthy_threshold,
            str(base.unhealthy_threshold),
        ),
    )

    tls = _Tls()
    if mode == "ingress":
        tls = _parse_tls(values, host, https=defaults.https, problems=problems)

    if port is None or any(p.blocking for p in problems):
        return Parsed(None, tuple(problems))
    spec = ServiceSpec(
        port=port,
        host=host,
        path_prefix=path_prefix,
        strategy=strategy,
        hash_on=hash_on,
        health=health,
        outlier=defaults.outlier,
        tls_secret=tls.secret,
        https_redirect=tls.redirect,
        hsts_max_age_seconds=tls.hsts_max_age_seconds,
    )
    return Parsed(spec, tuple(problems))


@dataclass(frozen=True, slots=True)
class _Tls:
    secret: str | None = None
    redirect: bool = False
    hsts_max_age_seconds: int | None = None


def _parse_tls(
    values: dict[str, str], host: str | None, *, https: bool, problems: list[Problem]
) -> _Tls:
    """The three TLS annotations. None of them blocks enrolment: at worst the host is
    served on plain HTTP only, as it was before the annotation."""
    texts = {
        name: text
        for name in ("tls-secret", "ssl-redirect", "hsts")
        if (text := values.get(ANNOTATION_PREFIX + name)) is not None
    }
    if texts and not https:
        for name, text in texts.items():
            reason = "this controller does not serve HTTPS (setting tls.enabled); ignored"
            problems.append(_problem(name, text, reason))
        return _Tls()
    secret: str | None = None
    if "tls-secret" in texts:
        text = texts["tls-secret"]
        if host is None:
            reason = "needs kubeferry.io/host (the certificate is chosen by server name); ignored"
            problems.append(_problem("tls-secret", text, reason))
        else:
            try:
                secret = parse_secret_name(text)
            except ValueError as error:
                problems.append(_problem("tls-secret", text, f"{error}; HTTP only"))
    redirect = False
    if "ssl-redirect" in texts:
        parsed = _parse_bool(texts["ssl-redirect"])
        if parsed is None:
            reason = 'must be "true" or "false"; using the default "false"'
            problems.append(_problem("ssl-redirect", texts["ssl-redirect"], reason))
        redirect = bool(parsed)
    hsts: int | None = None
    if "hsts" in texts:
        try:
            hsts = parse_max_age(texts["hsts"])
        except ValueError as error:
            problems.append(_problem("hsts", texts["hsts"], f"{error}; no HSTS"))
    return _Tls(secret, redirect, hsts)


def _problem(name: str, value: str, reason: str, *, blocking: bool = False) -> Problem:
    return Problem(ANNOTATION_PREFIX + name, value, reason, blocking)


def _blocking(
    problems: list[Problem], name: str, text: str, parse: Callable[[str], str]
) -> str | None:
    try:
        return parse(text)
    except ValueError as error:
        reason = f"{error}; the Service is not enrolled until this is fixed"
        problems.append(_problem(name, text, reason, blocking=True))
        return None


def _select_port(
    service: ServiceInfo, wanted: str | None, problems: list[Problem]
) -> ServicePort | None:
    """The annotated port, else the only port, else the one named `http`, else the first.

    Only TCP ports qualify: HTTP runs over TCP, and a UDP port of the same number is a
    different port."""
    tcp = [p for p in service.ports if p.protocol.upper() == "TCP"]
    if wanted is None:
        if not tcp:
            reason = "the Service has no TCP port; it is not enrolled"
            problems.append(
                Problem(ANNOTATION_PREFIX + "port", "", reason, True, event_reason="NoServicePort")
            )
            return None
        if len(tcp) == 1:
            return tcp[0]
        return next((p for p in tcp if p.name == "http"), tcp[0])
    text = wanted.strip()
    for port in tcp:
        if (text.isdigit() and port.port == int(text)) or (text and port.name == text):
            return port
    names = ", ".join(f"{p.name or '(unnamed)'}:{p.port}" for p in tcp) or "none"
    reason = f"names no TCP port of the Service (ports: {names}); it is not enrolled"
    problems.append(_problem("port", wanted, reason, blocking=True))
    return None


# -- value parsers: each raises ValueError saying what is wrong ------------------------------

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_DURATION_SECONDS = 3600.0
MAX_THRESHOLD = 100


def _parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    return {"true": True, "false": False}.get(lowered)


def parse_host(text: str) -> str:
    """`Shop.Example.com` -> `shop.example.com`; `*.example.com` stays a wildcard."""
    host = text.strip().lower()
    if not host:
        raise ValueError("empty host")
    if len(host) > 253 or not _HOST_RE.match(host):
        raise ValueError("not a host name (exact 'shop.example.com' or wildcard '*.example.com')")
    return host


_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
MAX_HSTS_SECONDS = 2**31 - 1


def parse_secret_name(text: str) -> str:
    """A Secret's name: a lower-case RFC 1123 subdomain, as the API server requires."""
    name = text.strip()
    if not name or len(name) > 253 or not _SUBDOMAIN_RE.match(name):
        raise ValueError("not a Secret name (lower-case letters, digits, '-' and '.')")
    return name


def parse_max_age(text: str) -> int:
    """HSTS max-age: whole seconds, 0 (tells browsers to forget the policy) or more."""
    stripped = text.strip()
    if not stripped.isdigit():
        raise ValueError("not a whole number of seconds (like '31536000', a year)")
    value = int(stripped)
    if value > MAX_HSTS_SECONDS:
        raise ValueError(f"must be at most {MAX_HSTS_SECONDS}")
    return value


def parse_path(text: str) -> str:
    path = text.strip()
    if not path.startswith("/"):
        raise ValueError("must start with '/'")
    if any(c.isspace() or not c.isprintable() for c in path) or "#" in path:
        raise ValueError("must not contain spaces, control characters or '#'")
    if len(path) > 1024:
        raise ValueError("longer than 1024 characters")
    return path


def parse_strategy(text: str) -> str:
    name = text.strip().lower()
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy; choose one of: {', '.join(strategy_names())}")
    return name


def parse_duration(text: str) -> float:
    """`5s`, `500ms`, `1m`, `1h` or bare seconds (`2.5`) -> seconds; above 0, at most 1 h."""
    match = _DURATION_RE.match(text.strip().lower())
    if match is None:
        raise ValueError("not a duration (like '5s', '500ms', '1m' or '2.5')")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= MAX_DURATION_SECONDS:
        raise ValueError(f"must be above 0 and at most {MAX_DURATION_SECONDS:g}s")
    return seconds


def parse_threshold(text: str) -> int:
    stripped = text.strip()
    if not stripped.isdigit():
        raise ValueError("not a whole number")
    value = int(stripped)
    if not 1 <= value <= MAX_THRESHOLD:
        raise ValueError(f"must be between 1 and {MAX_THRESHOLD}")
    return value
