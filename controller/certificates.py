"""From a Service's `kubeferry.io/tls-secret` to the certificate its host is served with.

`SecretCertificates.look` validates a cached Secret with the data plane's own
`proxy.tls.certificate.load_certificate` (bad PEM, a key of another certificate, an encrypted
key, an expired certificate), plus what only a Secret can get wrong: a type other than
`kubernetes.io/tls`, a missing `tls.crt` or `tls.key`, a Secret that does not exist. A Secret
that fails leaves its last good certificate in service (`Looked.certificate`) and yields a
`Problem` (reason `InvalidTLSSecret`) for the sync to log and report; a Secret that never was
good, or that was deleted, has no certificate: the host is then served on plain HTTP only.
Problem texts come from CertificateError reasons, which never quote key material.

Mutable state, changed only in `look` and `forget` (plain defs):
  _memo  Secret -> (the SecretInfo looked at, the result): a Secret is validated once per
         content (each validation builds an SSLContext), whichever Services name it
  _good  Secret -> its last certificate that passed
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from controller.annotations import Problem
from controller.objects import ANNOTATION_PREFIX, TLS_SECRET_TYPE, SecretInfo
from proxy.tls.certificate import Certificate, CertificateError, load_certificate

SecretKey = tuple[str, str]  # (namespace, name)
Clock = Callable[[], datetime.datetime]
INVALID_TLS_SECRET = "InvalidTLSSecret"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class Looked:
    """The certificate to serve (None: HTTP only) and what is wrong (None: nothing)."""

    certificate: Certificate | None
    problem: Problem | None = None


# Not listed yet: nothing to serve, nothing to say (the Secret's first list is under way).
PENDING = Looked(None)


class SecretCertificates:
    """Validated certificates by Secret, with the last good one of each kept."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._memo: dict[SecretKey, tuple[SecretInfo | None, Looked]] = {}
        self._good: dict[SecretKey, Certificate] = {}

    def __repr__(self) -> str:
        return f"<SecretCertificates {len(self._memo)} Secrets, {len(self._good)} good>"

    def look(self, key: SecretKey, secret: SecretInfo | None, *, listed: bool) -> Looked:
        """What to serve for Secret `key`, given what the cache holds of it."""
        if not listed:
            good = self._good.get(key)
            return PENDING if good is None else Looked(good)
        memo = self._memo.get(key)
        if memo is not None and (memo[0] is secret or memo[0] == secret):
            return memo[1]
        looked = self._validate(key, secret)
        self._memo[key] = (secret, looked)
        return looked

    def forget(self, key: SecretKey) -> None:
        """No Service names the Secret any more."""
        self._memo.pop(key, None)
        self._good.pop(key, None)

    def keep_only(self, keys: set[SecretKey]) -> None:
        """After a full rebuild: forget every Secret no Service names."""
        for key in [k for k in self._memo.keys() | self._good.keys() if k not in keys]:
            self.forget(key)

    def _validate(self, key: SecretKey, secret: SecretInfo | None) -> Looked:
        namespace, name = key
        if secret is None:
            # Deleted (or never made): nothing to keep serving from it.
            self._good.pop(key, None)
            return Looked(None, _problem(name, f"Secret {namespace}/{name} not found; HTTP only"))
        try:
            certificate = self._load(secret)
        except CertificateError as error:
            good = self._good.get(key)
            keeps = (
                "HTTP only"
                if good is None
                else f"still serving the last good certificate (serial {good.serial:x})"
            )
            reason = f"Secret {namespace}/{name}: {error.part}: {error.reason}; {keeps}"
            return Looked(good, _problem(name, reason))
        self._good[key] = certificate
        return Looked(certificate)

    def _load(self, secret: SecretInfo) -> Certificate:
        if secret.type != TLS_SECRET_TYPE:
            raise CertificateError("chain", f"type {secret.type!r} is not {TLS_SECRET_TYPE!r}")
        if secret.chain_pem is None:
            raise CertificateError("chain", "no tls.crt (or not base64)")
        if secret.key_pem is None:
            raise CertificateError("key", "no tls.key (or not base64)")
        return load_certificate(
            secret.chain_pem,
            secret.key_pem,
            source=f"{secret.namespace}/{secret.name}",
            now=self._clock(),
        )


def _problem(name: str, reason: str) -> Problem:
    return Problem(ANNOTATION_PREFIX + "tls-secret", name, reason, False, INVALID_TLS_SECRET)


def covers(names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate for `names` (its DNS subjectAltNames) is valid for `host` as a
    TLS client checks it: an exact name, or `*.parent` for a host one label below `parent`.
    A wildcard host (`*.example.com`) needs the same wildcard in the certificate."""
    if host in names:
        return True
    _, dot, parent = host.partition(".")
    return bool(dot) and not host.startswith("*.") and f"*.{parent}" in names
