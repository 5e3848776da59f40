"""Which fields of an upstream's trailer section reach the client: pure rules, no I/O.

RFC 9110 section 6.5.1: fields needed before the content is processed may not be sent as
trailers (framing, routing, authentication, request modifiers, response control data, how to
process the content); 6.5.2: a recipient must not merge trailers into the header section. So
trailers are relayed only as trailers (proxy.relay, to HTTP/1.1 clients of a chunked answer)
and never with a field from `FORBIDDEN`: a backend's trailer must not set a cookie, change the
framing or the content type, or pose as a header the proxy checks. nginx passes no upstream
trailers by default, and Envoy's HTTP/1 codec drops them unless `enable_trailers` is set; the
list itself follows RFC 7230 section 4.1.2's examples, as Go's net/http keeps it (`badTrailer`),
plus cookies, response control data and the fields this proxy sets itself.
"""

from __future__ import annotations

from proxy.headers import HOP_BY_HOP, REQUEST_ID

FORBIDDEN = frozenset(
    name.encode()
    for name in (
        *HOP_BY_HOP,  # framing and the connection: Transfer-Encoding, Trailer, TE, Connection...
        # framing and content processing
        "content-length",
        "content-encoding",
        "content-type",
        "content-range",
        "content-location",
        "content-language",
        # routing
        "host",
        "max-forwards",
        # authentication, cookies
        "authorization",
        "www-authenticate",
        "authentication-info",
        "proxy-authentication-info",
        "realm",
        "cookie",
        "set-cookie",
        # request modifiers: controls and conditionals
        "cache-control",
        "expect",
        "pragma",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        # response control data
        "age",
        "date",
        "expires",
        "location",
        "retry-after",
        "vary",
        "warning",
        "strict-transport-security",
        # set by this proxy
        REQUEST_ID.lower(),
    )
)


def trailer_block(raw: list[tuple[bytes, bytes]]) -> bytes:
    """The client's trailer fields from the upstream's (raw pairs as received), each as
    `name: value` CRLF, forbidden ones left out; b"" when none is left."""
    return b"".join(
        b"%s: %s\r\n" % (name, value) for name, value in raw if name.lower() not in FORBIDDEN
    )
