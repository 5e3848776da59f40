"""One certificate chain and its key: validated once, kept as a frozen `Certificate`.

`load_certificate` refuses what would make handshakes fail or clients reject us: PEM that
does not parse, a key that does not belong to the first certificate, an encrypted key, an
expired certificate. Its errors name the part at fault (`chain` or `key`) and never quote
the key material. The result carries its own ssl.SSLContext, so the SNI callback only
points a connection at it.

Every context has the same policy: TLS 1.2 minimum, the ssl module's secure defaults
(its cipher list, no compression), no renegotiation, the server's cipher order, and ALPN
offering only `http/1.1` (this data plane speaks HTTP/1.1; a client offering only h2 gets
no ALPN answer and may go on with HTTP/1.1 or leave).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALPN_PROTOCOLS = ("http/1.1",)
Part = Literal["chain", "key"]


class CertificateError(Exception):
    """A chain or key that cannot be served; `part` says which, the message says why."""

    def __init__(self, part: Part, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Certificate:
    """A validated chain + key and the server context that serves it. Compared by `digest`
    (of the chain and key bytes), so an unchanged Secret or file compares equal."""

    names: tuple[str, ...]  # DNS names of the leaf's subjectAltName, lower-cased
    serial: int
    not_after: datetime.datetime
    fingerprint: str  # SHA-256 of the leaf certificate (public; for logs)
    source: str  # where it came from, for logs: a file path, namespace/secret, "self-signed"
    digest: str = field(repr=False)
    context: ssl.SSLContext = field(compare=False, repr=False)

    def describe(self) -> dict[str, object]:
        """Fields for a log line: what was loaded, never the key."""
        return {
            "source": self.source,
            "serial": f"{self.serial:x}",
            "names": list(self.names),
            "not_after": self.not_after.isoformat(),
            "sha256": self.fingerprint,
        }


def server_context() -> ssl.SSLContext:
    """A server context with this data plane's TLS policy and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return context


def load_certificate(
    chain_pem: bytes, key_pem: bytes, *, source: str, now: datetime.datetime
) -> Certificate:
    """Validate `chain_pem` (leaf first, then intermediates) and `key_pem`; raise
    CertificateError naming the part at fault."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CertificateError("chain", "not a PEM certificate chain") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateError("key", "encrypted private keys are not supported") from None
    except ValueError:
        # Not the library's message: it may echo what it could not parse.
        raise CertificateError("key", "not a PEM private key") from None
    except UnsupportedAlgorithm:
        raise CertificateError("key", "unsupported private key type") from None
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertificateError("key", "does not match the first certificate of the chain")
    not_after = leaf.not_valid_after_utc
    if not_after <= now:
        raise CertificateError(
            "chain",
            f"certificate expired at {not_after.isoformat()} (serial {leaf.serial_number:x})",
        )
    context = server_context()
    try:
        _load_into(context, chain_pem, key_pem)
    except ssl.SSLError as error:
        raise CertificateError("chain", f"refused by OpenSSL: {error.reason or error}") from None
    return Certificate(
        names=_dns_names(leaf),
        serial=leaf.serial_number,
        not_after=not_after,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        source=source,
        digest=certificate_digest(chain_pem, key_pem),
        context=context,
    )


def certificate_digest(chain_pem: bytes, key_pem: bytes) -> str:
    """Identity of a chain + key pair's content (not logged: it is derived from the key)."""
    return hashlib.sha256(chain_pem + b"\0" + key_pem).hexdigest()


def self_signed(
    names: tuple[str, ...] = ("localhost",), *, now: datetime.datetime, days: int = 365
) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed certificate for `names`, as (chain PEM, key PEM):
    the default certificate when none is configured. Clients cannot verify it; it only keeps
    the HTTPS port answering (as other ingress controllers' "fake" certificate does)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _dns_names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(name.lower() for name in san.get_values_for_type(x509.DNSName))


def _load_into(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    # ssl can only load a chain from a path. An anonymous in-memory file keeps the key off
    # any disk (and works on a read-only root filesystem); elsewhere, a private temp file.
    data = chain_pem.rstrip(b"\n") + b"\n" + key_pem
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("kubeferry-tls", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as file:
                file.write(data)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="kubeferry-tls-") as file:  # mode 0600
        file.write(data)
        file.flush()
        context.load_cert_chain(file.name)
