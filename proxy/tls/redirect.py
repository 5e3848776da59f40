"""The answer of a route with `https_redirect` on a plain-HTTP listener: 308 to https.

308, not 301: the client repeats the same method and body on the new URL (RFC 9110 section
15.4.9), so a POST stays a POST. The Location keeps the request's host (without its port),
path and query; the port is the HTTPS one the clients reach (left out when it is 443).
"""

from __future__ import annotations

import re

from aiohttp import web

from proxy.headers import REQUEST_ID
from proxy.routing import normalize_host

# What a Host header may name for us to echo it into a Location: a DNS name, an IPv4 address
# or a bracketed IPv6 literal. Anything else gets 400 instead of a redirect to it.
_HOST_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$"
)

HSTS = "Strict-Transport-Security"


def https_location(host_header: str, raw_path: str, *, port: int) -> str | None:
    """`https://host[:port]/path?query`, or None when the Host header is no host name."""
    host = normalize_host(host_header)
    if not _HOST_RE.match(host):
        return None
    authority = host if port == 443 else f"{host}:{port}"
    return f"https://{authority}{raw_path}"


def https_redirect(request: web.BaseRequest, *, port: int, request_id: str) -> web.Response:
    location = https_location(request.headers.get("Host", ""), request.raw_path, port=port)
    if location is None:
        response = web.Response(
            status=400, text="A Host header is required (to redirect to https)\n"
        )
    else:
        response = web.Response(
            status=308, text="Permanent Redirect\n", headers={"Location": location}
        )
    response.headers[REQUEST_ID] = request_id
    if request.body_exists:
        # The body is not read here; closing spares draining it for the next request.
        response.force_close()
    return response


def hsts_fields(max_age_seconds: int | None) -> tuple[tuple[str, str], ...]:
    """The response fields for a route's HSTS setting (none when unset)."""
    if max_age_seconds is None:
        return ()
    return ((HSTS, f"max-age={max_age_seconds}"),)
