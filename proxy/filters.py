"""What a route does to a request besides choosing its upstream: the Gateway API's filters and
weighted backends, as frozen values, and the pure functions that apply them.

The contract (the controller builds these; the data plane knows nothing of Kubernetes):

  WeightedBackend(upstream, weight)   one backendRef. `upstream=None` is an invalid reference:
                                      its share of requests answers 500. Weight 0 gets nothing;
                                      a route whose weights are all 0 (or that has no backends
                                      and no redirect) answers 500.
  RequestHeaderModifier(set, add, remove)
                                      on the request sent upstream, in that order: `set`
                                      replaces every field of the name, `add` appends one more
                                      field, `remove` drops every field of the name. Names are
                                      case-insensitive.
  ResponseHeaderModifier(set, add, remove)
                                      on the answer relayed to the client, as the request's:
                                      `set` replaces the upstream's fields of the name, `add`
                                      appends one after the upstream's own, `remove` drops the
                                      upstream's (and set/added) fields of the name. Compiled
                                      to a proxy.headers.ResponseEdit that both response paths
                                      apply. Hop-by-hop names are refused as well: the relay
                                      would drop them. The proxy's own fields still follow
                                      (X-Request-ID unless set here, Date if none is left, HSTS
                                      on HTTPS, which replaces a field set here).
  RequestRedirect(scheme, hostname, port, path, status_code)
                                      answers `status_code` (301, 302, 303, 307, 308) with a
                                      Location built from the request: each part unset keeps the
                                      request's own (host without its port). The port, when
                                      unset: the scheme's well-known one if `scheme` is set,
                                      else the listener's public port. A port that is the
                                      scheme's default (80 for http, 443 for https) is left out.
                                      The query string is kept.
  URLRewrite(hostname, path)          the upstream request's Host and path; the query is kept.
  PathModifier(kind, value)           "full": the whole path becomes `value`; "prefix": the
                                      route's matched PathPrefix is replaced by `value` (only on
                                      a prefix route): /prefix/one + "/one" turns /prefix/one/two
                                      into /one/two, "/" turns /prefix/one into /.

Constructors check their input and raise ValueError naming the field, so a bad route is
refused where it is built (the controller turns that into a status condition), never at
request time. A route takes at most one filter of each type, and not both a redirect and a
rewrite (as the Gateway API's validation requires).
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

from multidict import CIMultiDict, MultiMapping

from proxy.headers import HOP_BY_HOP, ResponseEdit

HeaderPairs = tuple[tuple[str, str], ...]
PathKind = Literal["prefix", "exact", "regex"]

# RFC 9110 token: what a field name may be made of.
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Fields that frame the message or the connection: a filter changing them would let a route
# author desynchronise the proxy and its peers (request smuggling), so they are refused.
_FRAMING = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_field_name(name: str, where: str) -> None:
    """ValueError unless `name` is a field name a filter may touch."""
    if not _TOKEN_RE.match(name):
        raise ValueError(f"{where}: {name!r} is not an HTTP field name")
    if name.lower() in _FRAMING:
        raise ValueError(f"{where}: {name!r} frames the message and may not be modified")


def check_field_value(value: str, where: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{where}: the value contains a line break or NUL")


def _check_pairs(pairs: HeaderPairs, where: str) -> None:
    seen: set[str] = set()
    for name, value in pairs:
        check_field_name(name, where)
        check_field_value(value, f"{where} {name}")
        if name.lower() in seen:
            raise ValueError(f"{where}: {name!r} appears twice")
        seen.add(name.lower())


def _check_path(value: str, where: str) -> None:
    if not value.startswith("/") or any(c in value for c in "?# \r\n\0"):
        raise ValueError(f"{where}: {value!r} is not an absolute path without query")


def _check_hostname(value: str, where: str) -> None:
    if not _HOST_RE.match(value.lower()):
        raise ValueError(f"{where}: {value!r} is not a host name")


# A DNS name, an IPv4 address or a bracketed IPv6 literal (lower-cased before the check).
_HOST_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$"
)


@dataclass(frozen=True, slots=True)
class WeightedBackend:
    """One backend of a route: an upstream name (None: a reference that did not resolve) and
    its weight (0 or more)."""

    upstream: str | None
    weight: int = 1

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"backend weight {self.weight}: must be 0 or more")
        if self.upstream == "":
            raise ValueError("backend upstream: empty name (use None for an invalid reference)")


@dataclass(frozen=True, slots=True)
class PathModifier:
    """A new path: `kind="full"` replaces the whole path, `"prefix"` the matched prefix."""

    kind: Literal["full", "prefix"]
    value: str

    def __post_init__(self) -> None:
        if self.kind not in ("full", "prefix"):
            raise ValueError(f"path modifier kind {self.kind!r}: must be 'full' or 'prefix'")
        _check_path(self.value, f"path modifier {self.kind}")


@dataclass(frozen=True, slots=True)
class RequestHeaderModifier:
    """Fields of the request sent upstream: set (replace), add (append), remove."""

    set: HeaderPairs = ()
    add: HeaderPairs = ()
    remove: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_pairs(self.set, "request header modifier set")
        _check_pairs(self.add, "request header modifier add")
        for name in self.remove:
            check_field_name(name, "request header modifier remove")


@dataclass(frozen=True, slots=True)
class ResponseHeaderModifier:
    """Fields of the answer relayed to the client: set (replace), add (append), remove."""

    set: HeaderPairs = ()
    add: HeaderPairs = ()
    remove: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_pairs(self.set, "response header modifier set")
        _check_pairs(self.add, "response header modifier add")
        for name in self.remove:
            check_field_name(name, "response header modifier remove")
        for name, _ in (*self.set, *self.add):
            _check_not_hop_by_hop(name, "response header modifier")
        for name in self.remove:
            _check_not_hop_by_hop(name, "response header modifier remove")

    def edit(self) -> ResponseEdit:
        """The modifier in the relay's terms: in the order set, add, remove, as on the
        request (a name both set and removed ends up removed)."""
        removed = {name.lower() for name in self.remove}
        kept = [
            (_field_bytes(name), _field_bytes(value))
            for name, value in (*self.set, *self.add)
            if name.lower() not in removed
        ]
        drop = frozenset(_field_bytes(name.lower()) for name, _ in self.set) | frozenset(
            _field_bytes(name) for name in removed
        )
        return ResponseEdit(drop=drop, append=tuple(kept))


def _check_not_hop_by_hop(name: str, where: str) -> None:
    if name.lower() in HOP_BY_HOP:
        raise ValueError(f"{where}: {name!r} is hop-by-hop and never reaches the client")


def _field_bytes(text: str) -> bytes:
    # As the relay decodes the upstream's fields (proxy.headers): UTF-8, surrogateescape.
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class RequestRedirect:
    """Answer with a redirect instead of forwarding; unset parts keep the request's."""

    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathModifier | None = None
    status_code: int = 302

    def __post_init__(self) -> None:
        if self.scheme is not None and self.scheme not in DEFAULT_PORTS:
            raise ValueError(f"redirect scheme {self.scheme!r}: must be 'http' or 'https'")
        if self.hostname is not None:
            _check_hostname(self.hostname, "redirect hostname")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"redirect port {self.port}: must be 1-65535")
        if self.status_code not in REDIRECT_STATUSES:
            raise ValueError(
                f"redirect status code {self.status_code}: must be one of 301, 302, 303, 307, 308"
            )


@dataclass(frozen=True, slots=True)
class URLRewrite:
    """Rewrite the upstream request's Host and/or path."""

    hostname: str | None = None
    path: PathModifier | None = None

    def __post_init__(self) -> None:
        if self.hostname is not None:
            _check_hostname(self.hostname, "rewrite hostname")


Filter = RequestHeaderModifier | ResponseHeaderModifier | RequestRedirect | URLRewrite


# -- compiled: what the request path reads ------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """Weighted random choice among a route's backends, per request. `choose` returns None
    for the share of invalid backends and when every weight is 0 (both answer 500)."""

    upstreams: tuple[str | None, ...]
    bounds: tuple[int, ...]  # running sums of the weights
    total: int

    @classmethod
    def of(cls, backends: Iterable[WeightedBackend]) -> BackendChoice:
        kept = [b for b in backends if b.weight > 0]
        bounds = tuple(accumulate(b.weight for b in kept))
        return cls(tuple(b.upstream for b in kept), bounds, bounds[-1] if bounds else 0)

    def choose(self, rng: random.Random) -> str | None:
        if not self.total:
            return None
        return self.upstreams[bisect_right(self.bounds, int(rng.random() * self.total))]


@dataclass(frozen=True, slots=True)
class Actions:
    """A route's filters and backends, compiled once when the route is made. Routes with no
    filters and one upstream have none (`Route.actions is None`): the common path reads
    nothing here."""

    choice: BackendChoice | None  # None: `Route.upstream` is the one upstream
    redirect: RequestRedirect | None = None
    request_headers: RequestHeaderModifier | None = None
    rewrite: URLRewrite | None = None
    response_edit: ResponseEdit | None = None
    matched_prefix: str | None = field(default=None)  # for "prefix" path modifiers

    @property
    def changes_request(self) -> bool:
        return self.request_headers is not None or self.rewrite is not None


def compile_actions(
    *,
    upstream: str,
    backends: tuple[WeightedBackend, ...],
    filters: tuple[Filter, ...],
    path_kind: PathKind,
    path: str,
) -> Actions | None:
    """The Actions of a route made of these fields, or None when it needs none; ValueError
    for a combination no route may have."""
    if upstream and backends:
        raise ValueError("a route has either one upstream or backends, not both")
    by_type: dict[type, Filter] = {}
    for item in filters:
        if not isinstance(item, Filter):
            raise ValueError(f"{item!r} is not a filter")
        if type(item) in by_type:
            raise ValueError(f"two {type(item).__name__} filters on one route")
        by_type[type(item)] = item
    redirect = by_type.get(RequestRedirect)
    rewrite = by_type.get(URLRewrite)
    if redirect is not None and rewrite is not None:
        raise ValueError("a route cannot both redirect and rewrite")
    for modifier in (redirect, rewrite):
        if (
            isinstance(modifier, RequestRedirect | URLRewrite)
            and modifier.path is not None
            and modifier.path.kind == "prefix"
            and path_kind != "prefix"
        ):
            raise ValueError(f"a prefix path modifier needs a prefix route, not {path_kind}")
    response = by_type.get(ResponseHeaderModifier)
    single = upstream or (
        backends[0].upstream
        if len(backends) == 1 and backends[0].weight > 0 and backends[0].upstream
        else ""
    )
    if not by_type and single:
        return None
    assert redirect is None or isinstance(redirect, RequestRedirect)
    assert rewrite is None or isinstance(rewrite, URLRewrite)
    request_headers = by_type.get(RequestHeaderModifier)
    assert request_headers is None or isinstance(request_headers, RequestHeaderModifier)
    return Actions(
        choice=None if single else BackendChoice.of(backends),
        redirect=redirect,
        request_headers=request_headers,
        rewrite=rewrite,
        response_edit=response.edit() if isinstance(response, ResponseHeaderModifier) else None,
        matched_prefix=path if path_kind == "prefix" else None,
    )


# -- pure request-time functions ------------------------------------------------------------


def new_path(modifier: PathModifier, path: str, matched_prefix: str | None) -> str:
    """The path after `modifier`. A prefix replacement cuts the matched prefix on its segment
    boundary (a trailing "/" of the prefix does not count) and joins the rest to `value`."""
    if modifier.kind == "full" or matched_prefix is None:
        return modifier.value
    cut = matched_prefix.rstrip("/")
    rest = path[len(cut) :]  # "" or starts with "/": the route matched on a segment boundary
    joined = modifier.value.rstrip("/") + rest
    return joined or "/"


def redirect_location(
    redirect: RequestRedirect,
    *,
    scheme: str,
    host: str,
    path: str,
    query: str,
    matched_prefix: str | None,
    listener_port: int | None,
) -> str | None:
    """The Location of `redirect` for a request (host already normalised: lower case, no
    port); None when the request's Host is not a name to echo (the caller answers 400)."""
    hostname = redirect.hostname.lower() if redirect.hostname is not None else host
    if redirect.hostname is None and not _HOST_RE.match(hostname):
        return None
    new_scheme = redirect.scheme or scheme
    port = redirect.port
    if port is None:
        port = DEFAULT_PORTS[new_scheme] if redirect.scheme is not None else listener_port
    authority = (
        hostname
        if port is None or port == DEFAULT_PORTS.get(new_scheme)
        else (f"{hostname}:{port}")
    )
    target = new_path(redirect.path, path, matched_prefix) if redirect.path is not None else path
    if query:
        target = f"{target}?{query}"
    return f"{new_scheme}://{authority}{target}"


def modified_headers(
    headers: MultiMapping[str],
    modifier: RequestHeaderModifier | None,
    *,
    host: str | None,
) -> CIMultiDict[str]:
    """A copy of `headers` with `modifier` applied and, with `host`, Host replaced."""
    out = CIMultiDict(headers)
    if host is not None:
        out["Host"] = host
    if modifier is not None:
        for name, value in modifier.set:
            out[name] = value
        for name, value in modifier.add:
            out.add(name, value)
        for name in modifier.remove:
            out.popall(name, None)
    return out
