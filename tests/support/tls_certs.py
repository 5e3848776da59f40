"""Real certificates for the TLS tests, made on the spot: a test CA and leaf certificates it
signs (exact names, wildcards, expired ones), written as PEM files when a test needs files.

Each leaf gets a fresh random serial, which is what the tests look for in the served chain.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Leaf:
    """A leaf certificate with its chain (leaf + CA) and key, as PEM."""

    serial: int
    chain_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str = "tls") -> tuple[Path, Path]:
        """Write `<stem>.crt` and `<stem>.key` by rename, as a Secret volume or a careful
        operator replaces them: a reader never sees half a file."""
        paths = (directory / f"{stem}.crt", directory / f"{stem}.key")
        for path, data in zip(paths, (self.chain_pem, self.key_pem), strict=True):
            partial = path.with_suffix(path.suffix + ".partial")
            partial.write_bytes(data)
            os.replace(partial, path)
        return paths


class TestCA:
    """A self-signed CA that issues leaf certificates for server names."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "kubeferry test CA") -> None:
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.subject = subject
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path) -> Path:
        path = directory / "ca.crt"
        path.write_bytes(self.pem)
        return path

    def issue(self, *names: str, expired: bool = False, key_of: Leaf | None = None) -> Leaf:
        """A leaf for `names` (subjectAltName DNS entries; the first is also the CN).
        `expired`: valid until a day ago. `key_of`: reuse that leaf's key (same key, new
        certificate)."""
        key = (
            serialization.load_pem_private_key(key_of.key_pem, password=None)
            if key_of is not None
            else _key()
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        start, end = (
            (NOW - datetime.timedelta(days=10), NOW - datetime.timedelta(days=1))
            if expired
            else (NOW - datetime.timedelta(hours=1), NOW + datetime.timedelta(days=7))
        )
        serial = x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )
        chain = certificate.public_bytes(serialization.Encoding.PEM) + self.pem
        return Leaf(serial, chain, _key_pem(key))


def other_key_pem() -> bytes:
    """A private key that belongs to no certificate here."""
    return _key_pem(_key())
