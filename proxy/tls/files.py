"""The standalone proxy's certificate source: a chain file and a key file, reloaded in place.

The files are read every `reload_interval_seconds` (and at once on SIGHUP) and compared by
content, so any way of replacing them counts: rewritten in place, renamed over, or swapped
as a Kubernetes Secret volume swaps its `..data` link. A new pair that passes
`load_certificate` becomes the default certificate for the next handshakes; connections
already open keep theirs. A pair that fails (bad PEM, a key of another certificate, expired,
a file missing) logs one JSON line, once per distinct content, and the last good certificate
stays in service. A pair replaced file by file may be caught in between (new chain, old key)
and logged as a mismatch once; the next check finds both halves new.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.tls.certificate import (
    Certificate,
    CertificateError,
    Part,
    certificate_digest,
    load_certificate,
)
from proxy.tls.store import CertificateSet, CertificateStore

log = logging.getLogger("kubeferry.tls")

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where the chain and key are, and the settings fields they came from (for errors)."""

    cert_file: Path
    key_file: Path
    cert_field: str = "tls.cert_file"
    key_field: str = "tls.key_file"

    def read(self) -> tuple[bytes, bytes]:
        """Both files' bytes; CertificateError if one cannot be read."""
        return _read(self.cert_file, "chain"), _read(self.key_file, "key")

    def load(self, *, now: datetime.datetime) -> Certificate:
        """Read and validate both files; CertificateError (see `explain`) if they fail."""
        chain, key = self.read()
        return load_certificate(chain, key, source=str(self.cert_file), now=now)

    def explain(self, error: CertificateError) -> str:
        """`tls.key_file /etc/tls/key.pem: does not match ...`: the field, the file, why."""
        if error.part == "chain":
            return f"{self.cert_field} {self.cert_file}: {error.reason}"
        return f"{self.key_field} {self.key_file}: {error.reason}"


# A chain of a dozen certificates is some 20 KiB; a path to something else (a device, a log)
# must not be read whole every second.
MAX_FILE_BYTES = 1024 * 1024


def _read(path: Path, part: Part) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise CertificateError(part, error.strerror or str(error)) from None
    if len(data) > MAX_FILE_BYTES:
        raise CertificateError(part, f"larger than {MAX_FILE_BYTES} bytes: not a PEM file")
    return data


class FileReloader:
    """Keeps `store`'s default certificate in step with `files`.

    Mutable state: `_seen` (digest of the last content looked at, good or bad; at first that
    of the certificate being served), changed only in `check`, a plain method that takes
    the bytes already read and returns what it did."""

    def __init__(
        self,
        files: CertificateFiles,
        store: CertificateStore,
        *,
        interval_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self.files = files
        self.store = store
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._seen = store.current.default.digest
        self._wake = asyncio.Event()

    def check(self, content: tuple[bytes, bytes] | CertificateError) -> str:
        """Take one look at the files: their bytes, or why they could not be read. Returns
        'unchanged', 'reloaded' or 'rejected'."""
        if isinstance(content, CertificateError):
            digest = f"unreadable: {content}"
        else:
            digest = certificate_digest(*content)
        if digest == self._seen:
            return "unchanged"
        self._seen = digest
        try:
            if isinstance(content, CertificateError):
                raise content
            certificate = load_certificate(
                *content, source=str(self.files.cert_file), now=self._clock()
            )
        except CertificateError as error:
            self._reject(self.files.explain(error))
            return "rejected"
        current = self.store.current
        if not self.store.replace(CertificateSet(certificate, current.by_name)):
            return "unchanged"
        log.info(
            "TLS certificate reloaded from %s (serial %x)",
            self.files.cert_file,
            certificate.serial,
            extra={"event": "tls_certificate_reloaded", **certificate.describe()},
        )
        return "reloaded"

    def _reject(self, reason: str) -> None:
        current = self.store.current.default
        log.error(
            "TLS certificate not reloaded: %s; still serving serial %x",
            reason,
            current.serial,
            extra={
                "event": "tls_certificate_rejected",
                "error": reason,
                "serving_serial": f"{current.serial:x}",
            },
        )

    def wake(self) -> None:
        """Check now instead of at the next interval (what SIGHUP does)."""
        self._wake.set()

    def handle_sighup(self) -> Callable[[], object]:
        """Make SIGHUP call `wake()`; returns the function that undoes it. Call it before
        the listeners bind, so that no SIGHUP from then on falls to the default action
        (which ends the process)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.wake)
        except (NotImplementedError, RuntimeError, ValueError):
            return lambda: None  # not the main thread (embedded, tests): wake() still works
        return lambda: loop.remove_signal_handler(signal.SIGHUP)

    async def run(self) -> None:
        """Check every interval, or at once after `wake()`, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_seconds):
                    await self._wake.wait()
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                # Two small local files: reading them inline costs microseconds.
                content: tuple[bytes, bytes] | CertificateError = self.files.read()
            except CertificateError as error:
                content = error
            if self.check(content) == "unchanged" and woken:
                # Whoever sent SIGHUP learns that it was heard and that nothing changed.
                log.info(
                    "TLS files re-read on request: unchanged, serving serial %x",
                    self.store.current.default.serial,
                    extra={"event": "tls_certificate_unchanged"},
                )
