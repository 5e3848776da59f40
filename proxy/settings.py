"""Settings: one frozen pydantic-settings model, read once at start and passed down.

Sources, highest first: command-line flags, `KUBEFERRY_*` environment variables (nested
fields with `__`, e.g. `KUBEFERRY_HEALTH__INTERVAL_SECONDS=2`), the YAML file given by
`--config`, then the defaults below. This is the only module that reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from proxy.model import Endpoint, HashOn, HealthSpec, OutlierSpec
from proxy.strategies import STRATEGIES, strategy_names


class SettingsError(Exception):
    """A setting is invalid; the message names the field and the bad value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HealthSettings(_Frozen):
    """Active health checks, per endpoint, all endpoints probed in parallel."""

    enabled: bool = Field(True, description="Probe endpoints actively; off: passive failover only.")
    path: str = Field("/healthz", description="Path probed with GET.")
    interval_seconds: float = Field(5.0, gt=0, description="Time between probes of one endpoint.")
    timeout_seconds: float = Field(3.0, gt=0, description="A probe slower than this fails.")
    expected_statuses: str = Field(
        "200-299", description="Statuses that count as healthy: '200-299', '200,204', '2xx'."
    )
    healthy_threshold: int = Field(1, ge=1, description="Passing probes in a row to rejoin.")
    unhealthy_threshold: int = Field(1, ge=1, description="Failing probes in a row to leave.")

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("expected_statuses")
    @classmethod
    def _statuses_parse(cls, value: str) -> str:
        parse_status_ranges(value)
        return value

    def to_spec(self) -> HealthSpec:
        return HealthSpec(
            path=self.path,
            interval_seconds=self.interval_seconds,
            timeout_seconds=self.timeout_seconds,
            expected_statuses=parse_status_ranges(self.expected_statuses),
            healthy_threshold=self.healthy_threshold,
            unhealthy_threshold=self.unhealthy_threshold,
            enabled=self.enabled,
        )


def parse_status_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """'200-299,304' or '2xx' -> ((200, 299), (304, 304)); ValueError on anything else."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip().lower()
        if len(part) == 3 and part.endswith("xx") and part[0] in "12345":
            low = int(part[0]) * 100
            ranges.append((low, low + 99))
            continue
        low_text, _, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if high_text else low
        except ValueError:
            raise ValueError(f"{text!r} is not a list of statuses or ranges") from None
        if not 100 <= low <= high <= 599:
            raise ValueError(f"status range {part!r} must lie within 100-599")
        ranges.append((low, high))
    return tuple(ranges)


class OutlierSettings(_Frozen):
    """Passive ejection of endpoints that keep answering 5xx (off by default)."""

    consecutive_5xx: int = Field(0, ge=0, description="Eject after this many 5xx in a row; 0: off.")
    ejection_seconds: float = Field(
        30.0, gt=0, description="How long an ejected endpoint stays out."
    )

    def to_spec(self) -> OutlierSpec:
        return OutlierSpec(self.consecutive_5xx, self.ejection_seconds)


class TimeoutSettings(_Frozen):
    """Timeouts on both sides of the proxy."""

    connect_seconds: float = Field(3.0, gt=0, description="Connecting to an upstream.")
    upstream_idle_seconds: float = Field(
        60.0, gt=0, description="Upstream silent this long while reading its response: 504."
    )
    upstream_first_byte_seconds: float | None = Field(
        None,
        gt=0,
        description="Not a byte of answer this long after the request went out: the attempt "
        "fails (504), idempotent requests are retried elsewhere; unset: only "
        "upstream_idle_seconds applies (set it below that for backends that may hang).",
    )
    upstream_tcp_user_timeout_seconds: float = Field(
        5.0,
        ge=0,
        description="TCP_USER_TIMEOUT of upstream sockets: data unacknowledged this long means "
        "the peer vanished (no FIN, no RST) and fails the attempt; slow but live backends are "
        "not affected; 0: the kernel's default (about 15 minutes).",
    )
    upstream_tcp_keepalive_seconds: float = Field(
        5.0,
        ge=0,
        description="TCP keep-alive probes on an upstream connection silent this long, so a "
        "peer that vanished while a request waits is noticed within the user timeout; 0: off.",
    )
    total_seconds: float | None = Field(
        None, gt=0, description="Whole upstream exchange; unset: no limit (streams may be long)."
    )
    client_header_seconds: float = Field(
        10.0, gt=0, description="A client must send its request head within this (slowloris)."
    )
    client_body_idle_seconds: float = Field(
        30.0, gt=0, description="A client silent this long in the middle of its body gets 408."
    )
    client_keepalive_seconds: float = Field(75.0, gt=0, description="Idle client connections.")
    upstream_keepalive_seconds: float = Field(
        4.0,
        gt=0,
        description="Idle pooled upstream connections are closed after this; kept below common "
        "backend keep-alive timeouts (Node.js 5 s) so we never reuse one the backend closed.",
    )
    drain_seconds: float = Field(30.0, ge=0, description="On SIGTERM, in-flight requests get this.")


class RetrySettings(_Frozen):
    """Failover retries: bounded per request and by a budget across requests."""

    max_retries: int = Field(2, ge=0, description="Extra attempts per request, each elsewhere.")
    budget_ratio: float = Field(
        0.2, ge=0, le=1, description="Retries in flight at most this share of requests in flight."
    )
    min_concurrent_retries: int = Field(
        3, ge=0, description="Retries always allowed in flight regardless of the ratio."
    )
    replay_body_bytes: int = Field(
        65536, ge=0, description="Idempotent requests with bodies up to this are replayable."
    )
    resend_unacknowledged: bool = Field(
        True,
        description="A request on a reused connection that the backend reset before its kernel "
        "acknowledged a byte of it goes again on a fresh connection, whatever its method, as "
        "browsers do; false: only idempotent ones.",
    )


class LimitSettings(_Frozen):
    """Size limits: on client requests, and on the response heads upstreams send."""

    max_body_bytes: int | None = Field(
        None, gt=0, description="Larger request bodies get 413; unset: no limit (streamed)."
    )
    max_header_bytes: int = Field(
        8190, ge=1024, description="Longest request line or header field; larger: 431."
    )
    max_header_count: int = Field(100, ge=1, description="More header fields than this: 431.")
    # Defaults as Envoy's max_response_headers_kb (60) and max_headers_count (100); nginx's
    # proxy_buffer_size (4 or 8 KiB for the whole head) is stricter.
    max_response_head_bytes: int = Field(
        60 * 1024,
        ge=1024,
        description="Largest response head from an upstream (status line and fields, 1xx heads "
        "before it included; a trailer section likewise); larger: 502.",
    )
    max_response_field_bytes: int = Field(
        16 * 1024,
        ge=256,
        description="Longest field line in an upstream's response head or trailers; longer: 502.",
    )
    max_response_header_count: int = Field(
        100,
        ge=1,
        description="More fields than this in an upstream's response head (or trailers): 502.",
    )

    @model_validator(mode="after")
    def _field_fits_head(self) -> LimitSettings:
        if self.max_response_field_bytes > self.max_response_head_bytes:
            raise ValueError(
                f"max_response_field_bytes ({self.max_response_field_bytes}) must not exceed "
                f"max_response_head_bytes ({self.max_response_head_bytes})"
            )
        return self


class LogSettings(_Frozen):
    """JSON logging on stdout."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    access_log: bool = Field(True, description="One JSON line per request.")
    access_sample_rate: float = Field(
        1.0, ge=0, le=1, description="Share of requests that get an access line (errors always)."
    )


class TlsSettings(_Frozen):
    """HTTPS on `tls_port`: TLS 1.2 minimum, ALPN http/1.1, the certificate chosen by SNI."""

    enabled: bool = Field(
        False,
        description="Serve HTTPS on tls_port; on by itself when cert_file is set. Without "
        "cert_file the default certificate is self-signed, made at start.",
    )
    cert_file: Path | None = Field(
        None, description="PEM certificate chain (leaf first) of the default certificate."
    )
    key_file: Path | None = Field(None, description="PEM private key of cert_file (unencrypted).")
    reload_interval_seconds: float = Field(
        1.0,
        ge=0.1,
        le=60,
        description="How often cert_file and key_file are re-read (SIGHUP: at once).",
    )
    redirect_http: bool = Field(
        False, description="Plain-HTTP requests get 308 to https://, same host, path and query."
    )
    redirect_port: int | None = Field(
        None, ge=1, le=65535, description="Port in the redirect's Location; unset: tls_port."
    )
    hsts_max_age_seconds: int | None = Field(
        None, ge=0, description="Strict-Transport-Security max-age on HTTPS answers; unset: none."
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise ValueError(f"tls.{missing} is required with the other one")
        if self.redirect_http and not self.serving:
            raise ValueError("tls.redirect_http needs HTTPS on (tls.enabled or tls.cert_file)")
        return self

    @property
    def serving(self) -> bool:
        """Whether the HTTPS listener runs."""
        return self.enabled or self.cert_file is not None


class ControllerSettings(_Frozen):
    """The Kubernetes controller's own (the standalone proxy ignores them)."""

    resync_interval_seconds: float = Field(
        300.0,
        ge=0,
        description="Rebuild the whole desired state from the cache this often, a safety net "
        "under the sync that redoes only what changed; 0 turns it off.",
    )


class Settings(BaseSettings):
    """The proxy's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEFERRY_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    backends: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Static backends as URLs (http://host:port); comma-separated in env."
    )
    host: str = Field("0.0.0.0", description="Address the proxy listens on.")
    port: int = Field(3000, ge=1, le=65535, description="Port the proxy listens on.")
    tls_port: int = Field(3443, ge=1, le=65535, description="HTTPS port (see tls), same address.")
    admin_host: str = Field("0.0.0.0", description="Address of the admin listener.")
    admin_port: int = Field(9000, ge=0, le=65535, description="Admin port; 0 turns it off.")
    strategy: str = Field("round-robin", description="Balancing strategy.")
    hash_on: str | None = Field(
        None, description="For consistent-hash: 'header:NAME', 'cookie:NAME' or 'client'."
    )
    health: HealthSettings = HealthSettings()
    outlier: OutlierSettings = OutlierSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    retries: RetrySettings = RetrySettings()
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()
    tls: TlsSettings = TlsSettings()
    controller: ControllerSettings = ControllerSettings()

    @field_validator("backends", mode="before")
    @classmethod
    def _split_backends(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("backends")
    @classmethod
    def _backends_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            parse_backend(url)
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy_known(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy; choose one of: {', '.join(strategy_names())}")
        return value

    @field_validator("hash_on")
    @classmethod
    def _hash_on_parses(cls, value: str | None) -> str | None:
        if value is not None:
            HashOn.parse(value)
        return value

    @model_validator(mode="after")
    def _tls_port_is_its_own(self) -> Settings:
        if self.tls.serving and self.tls_port == self.port:
            raise ValueError(f"tls_port {self.tls_port} is also port: HTTPS needs its own port")
        return self

    def backend_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(parse_backend(url) for url in self.backends)

    def hash_key_source(self) -> HashOn | None:
        return HashOn.parse(self.hash_on) if self.hash_on else None


def parse_backend(url: str) -> Endpoint:
    """`http://host:port` (or `host:port`) -> Endpoint; ValueError names what is wrong."""
    text = url if "://" in url else f"http://{url}"
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise ValueError(f"backend {url!r}: only http:// backends are supported")
    if not parts.hostname:
        raise ValueError(f"backend {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"backend {url!r}: must be scheme://host:port with no path")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"backend {url!r}: bad port") from None
    return Endpoint(parts.hostname, port)


def load_settings(
    *, config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read flags (`overrides`, already nested), environment and YAML once; raise SettingsError."""
    file_values = _read_yaml(config_file) if config_file else {}

    class _Sources(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _DictSource(settings_cls, file_values))

    try:
        loaded = _Sources(**dict(overrides or {}))
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
    except ValueError as error:  # pydantic-settings' own parse errors (bad JSON in env)
        raise SettingsError(str(error)) from None
    # Hand back the plain model type, not the loader subclass.
    return Settings.model_construct(**{k: getattr(loaded, k) for k in Settings.model_fields})


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SettingsError(f"config file {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"config file {path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: top level must be a mapping of settings")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad field: `health.interval_seconds: Input should be > 0 (got -1)`."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{field}: {message} (got {item.get('input')!r})")
    return "invalid settings:\n  " + "\n  ".join(lines)
