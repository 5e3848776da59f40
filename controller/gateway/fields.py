"""Typed readers over the raw JSON of Gateway API objects: each raises GatewayObjectError
naming the field when a value has the wrong type or range (the CRD's validation catches
most of these; an object from an older or newer CRD, or made by hand, can still carry them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The CRD's Hostname pattern (lower case: names are lower-cased before the check).
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


class GatewayObjectError(ValueError):
    """An object that cannot be used; `path` names the field (`spec.rules[0].matches[1]`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def read_object(value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise GatewayObjectError(path, "must be an object")
    return value


def read_list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise GatewayObjectError(path, "must be a list")
    return list(value)


def read_str(value: Any, path: str, *, default: str | None = None) -> str:
    if value is None:
        if default is None:
            raise GatewayObjectError(path, "is required")
        return default
    if not isinstance(value, str):
        raise GatewayObjectError(path, "must be a string")
    return value


def read_opt_str(value: Any, path: str) -> str | None:
    return None if value is None else read_str(value, path)


def read_hostname(value: Any, path: str) -> str:
    host = read_str(value, path).lower()
    if len(host) > 253 or not _HOSTNAME_RE.match(host):
        raise GatewayObjectError(path, f"{host!r} is not a host name or *.wildcard")
    return host


def read_int(value: Any, path: str, *, low: int, high: int, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise GatewayObjectError(path, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayObjectError(path, "must be an integer")
    if not low <= value <= high:
        raise GatewayObjectError(path, f"{value} is not in {low}-{high}")
    return value


def read_opt_int(value: Any, path: str, *, low: int, high: int) -> int | None:
    return None if value is None else read_int(value, path, low=low, high=high)
