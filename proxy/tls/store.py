"""Which certificate a TLS handshake gets: a frozen snapshot, swapped whole by reference.

`CertificateSet` maps server names to certificates: exact names (`shop.example.com`) first,
then wildcards (`*.example.com`, which cover exactly one label, as TLS clients check them:
not `example.com`, not `a.b.example.com`), else the default, which also answers clients
that send no SNI. `CertificateStore.replace` installs a new set in one assignment; the SNI
callback reads the reference once per handshake, so a handshake sees one set or the other,
and connections already open keep the certificate they were made with.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from proxy.tls.certificate import Certificate, server_context

# An RFC 1123 host name, or `*.` and one; lower case (names are normalised before the check).
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


def normalize_server_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class CertificateSet:
    """The default certificate and the certificates by server name (exact or `*.` wildcard).
    Build it with `CertificateSet.build`, which checks the names."""

    default: Certificate
    by_name: Mapping[str, Certificate] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls, default: Certificate, by_name: Mapping[str, Certificate] | None = None
    ) -> CertificateSet:
        """Raise ValueError naming the first name that is not a host name or wildcard."""
        names: dict[str, Certificate] = {}
        for raw, certificate in (by_name or {}).items():
            name = normalize_server_name(raw)
            if not _NAME_RE.match(name):
                raise ValueError(f"{raw!r} is not a host name or *.wildcard")
            names[name] = certificate
        return cls(default, MappingProxyType(names))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertificateSet):
            return NotImplemented
        return self.default == other.default and dict(self.by_name) == dict(other.by_name)

    def __hash__(self) -> int:
        return hash((self.default, tuple(sorted(self.by_name))))

    def select(self, server_name: str | None) -> Certificate:
        """The certificate for a handshake that asked for `server_name` (None: no SNI)."""
        if not server_name or not self.by_name:
            return self.default
        name = normalize_server_name(server_name)
        found = self.by_name.get(name)
        if found is not None:
            return found
        _, dot, parent = name.partition(".")
        if dot:
            found = self.by_name.get(f"*.{parent}")
        return found if found is not None else self.default


class CertificateStore:
    """Holds the current CertificateSet for one or more HTTPS listeners.

    `listener_context()` is the context a listener binds with: it carries no certificate of
    its own; its SNI callback (which OpenSSL calls for every ClientHello, with None when the
    client sent no name) points the connection at the chosen certificate's context."""

    __slots__ = ("_listener_context", "current")

    def __init__(self, certificates: CertificateSet) -> None:
        self.current = certificates
        self._listener_context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        current = self.current
        return (
            f"<CertificateStore default={current.default.source} serial="
            f"{current.default.serial:x} names={len(current.by_name)}>"
        )

    def replace(self, certificates: CertificateSet) -> bool:
        """Install `certificates` for the next handshakes; False (nothing changed) if equal
        to the current set."""
        if certificates == self.current:
            return False
        self.current = certificates
        return True

    def listener_context(self) -> ssl.SSLContext:
        if self._listener_context is None:
            context = server_context()
            context.sni_callback = self._select
            self._listener_context = context
        return self._listener_context

    def _select(
        self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        # Runs inside OpenSSL's ClientHello processing: no I/O, nothing that can raise.
        connection.context = self.current.select(server_name).context
