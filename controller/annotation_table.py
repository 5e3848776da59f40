"""The `kubeferry.io/*` annotation table: one row per annotation, the source of the README's
annotation reference (`markdown_table`) and of the parser's set of known keys (`KNOWN`).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.objects import ANNOTATION_PREFIX
from proxy.strategies import strategy_names


@dataclass(frozen=True, slots=True)
class AnnotationDoc:
    """One row of the annotation table (docs/annotations.md is generated from these)."""

    name: str
    values: str
    default: str
    if_invalid: str
    meaning: str

    @property
    def key(self) -> str:
        return ANNOTATION_PREFIX + self.name


_FALLBACK = "Warning; the default is used"
_BLOCKED = "Warning; the Service is not enrolled until fixed"

ANNOTATIONS: tuple[AnnotationDoc, ...] = (
    AnnotationDoc(
        "enabled",
        '`"true"` or `"false"`',
        '`"false"`',
        "Warning; not enrolled",
        "Enrols the Service in ingress mode. Ignored in sidecar mode, where naming the "
        "Service with `--upstream` is the enrolment.",
    ),
    AnnotationDoc(
        "port",
        "a Service port name or number",
        "the only port, else the one named `http`, else the first",
        _BLOCKED,
        "The Service port to balance to; traffic goes to the matching target port of each "
        "endpoint, read from the EndpointSlices.",
    ),
    AnnotationDoc(
        "host",
        "`shop.example.com` or `*.example.com`",
        "none: any host",
        _BLOCKED,
        "Ingress mode: route requests for this host (case-insensitive, no port). `*.` matches "
        "one or more labels. Host-specific routes win over host-less ones.",
    ),
    AnnotationDoc(
        "path-prefix",
        "an absolute path, `/api`",
        "`/`",
        _BLOCKED,
        "Ingress mode: route requests under this prefix, matched on path-segment boundaries "
        "(`/api` matches `/api` and `/api/x`, not `/apix`). The longest prefix wins.",
    ),
    AnnotationDoc(
        "strategy",
        ", ".join(f"`{name}`" for name in strategy_names()),
        "the `strategy` setting",
        _FALLBACK,
        "The balancing strategy.",
    ),
    AnnotationDoc(
        "hash-on",
        "`header:NAME`, `cookie:NAME` or `client`",
        "the `hash_on` setting",
        _FALLBACK,
        "What `consistent-hash` keys on. A Warning if the strategy is not `consistent-hash`, "
        "where it has no effect.",
    ),
    AnnotationDoc(
        "health-path",
        "an absolute path, `/healthz`",
        "the `health.path` setting",
        _FALLBACK,
        "Path of the active health check (GET; healthy statuses: the "
        "`health.expected_statuses` setting).",
    ),
    AnnotationDoc(
        "health-interval",
        "a duration: `5s`, `500ms`, `1m`, or seconds (`2.5`); up to 1h",
        "the `health.interval_seconds` setting (5 s)",
        _FALLBACK,
        "Time between two probes of one endpoint.",
    ),
    AnnotationDoc(
        "health-timeout",
        "a duration, as above",
        "the `health.timeout_seconds` setting (3 s)",
        _FALLBACK,
        "A probe slower than this fails.",
    ),
    AnnotationDoc(
        "healthy-threshold",
        "an integer, 1 to 100",
        "the `health.healthy_threshold` setting",
        _FALLBACK,
        "Passing probes in a row before an endpoint rejoins.",
    ),
    AnnotationDoc(
        "unhealthy-threshold",
        "an integer, 1 to 100",
        "the `health.unhealthy_threshold` setting",
        _FALLBACK,
        "Failing probes in a row before an endpoint leaves.",
    ),
    AnnotationDoc(
        "tls-secret",
        "the name of a `kubernetes.io/tls` Secret in the Service's namespace",
        "none: the default certificate",
        "Warning; HTTP only (a broken Secret: Warning `InvalidTLSSecret`, the last good "
        "certificate stays)",
        "Ingress mode, with `host`: the certificate chain (`tls.crt`) and key (`tls.key`) "
        "served by SNI for the host (a `*.` host takes a wildcard certificate). Rotating the "
        "Secret reaches new handshakes within seconds, no restart.",
    ),
    AnnotationDoc(
        "ssl-redirect",
        '`"true"` or `"false"`',
        '`"false"`',
        _FALLBACK,
        "Ingress mode: plain-HTTP requests for the route get 308 to `https://`, same host, path "
        "and query. Off while a `tls-secret` has no valid certificate (HTTP only).",
    ),
    AnnotationDoc(
        "hsts",
        "max-age in whole seconds, `31536000`",
        "none: no header",
        "Warning; no HSTS",
        "Ingress mode: answers on HTTPS carry `Strict-Transport-Security: max-age=N`.",
    ),
)

KNOWN = frozenset(doc.key for doc in ANNOTATIONS)


def markdown_table() -> str:
    """The annotation table as Markdown, as docs/annotations.md carries it."""
    lines = [
        "| annotation | values | default | if invalid | meaning |",
        "|---|---|---|---|---|",
    ]
    for doc in ANNOTATIONS:
        cells = (f"`{doc.key}`", doc.values, doc.default, doc.if_invalid, doc.meaning)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
