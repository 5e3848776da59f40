"""Bounds on what a backend may make the proxy hold while it reads a response head.

httptools (llhttp) has no limits of its own: it buffers a field line until its end, however
long, and reports any number of fields. `UpstreamConnection` enforces these instead, in three
ways that together bound memory by the limit plus one read:

- while the final head is incomplete, every byte received belongs to a head (1xx answers
  have no body), so the raw byte count is checked after each read: this catches one endless
  field line before it ends;
- when a head ends: its field count against `field_count`, each field line (name, value and
  4 bytes of separators) against `field_bytes`, and the heads of the exchange so far (interim
  1xx heads included), counted the same way, against `head_bytes`. An exchange that brought
  no more than `field_bytes` in all cannot break the last two, so most heads skip them.

The trailer section of a chunked body gets the same limits, checked field by field.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.upstream.failures import UpstreamError

# Separators counted per field line: ": " and CRLF (what nginx and Envoy count is close).
FIELD_OVERHEAD_BYTES = 4


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Response head limits for one client (defaults: Envoy's max_response_headers_kb 60 and
    max_headers_count 100; nginx's proxy_buffer_size of 4 or 8 KiB is stricter)."""

    head_bytes: int = 60 * 1024
    field_bytes: int = 16 * 1024
    field_count: int = 100

    def __post_init__(self) -> None:
        if min(self.head_bytes, self.field_bytes, self.field_count) < 1:
            raise ValueError(f"head limits must be positive: {self}")
        if self.field_bytes > self.head_bytes:
            raise ValueError(f"a field line may not be allowed more than the head: {self}")


DEFAULT_HEAD_LIMITS = HeadLimits()


class HeadTooLarge(UpstreamError):
    """The backend's response head (or trailer section) broke a HeadLimits bound. Another
    endpoint of the same application would most likely answer alike: never retried."""


def field_too_large(size: int, limits: HeadLimits, *, section: str) -> HeadTooLarge:
    return HeadTooLarge(
        f"upstream {section} field line of {size} bytes over the {limits.field_bytes}-byte limit"
    )


def head_too_large(size: int, limits: HeadLimits, *, section: str) -> HeadTooLarge:
    return HeadTooLarge(
        f"upstream {section} of {size}+ bytes over the {limits.head_bytes}-byte limit"
    )


def too_many_fields(count: int, limits: HeadLimits, *, section: str) -> HeadTooLarge:
    return HeadTooLarge(
        f"upstream {section} with {count} fields over the {limits.field_count}-field limit"
    )
