"""TLS data plane, pure parts: certificate validation, SNI selection, reload decisions, the
redirect target and the HSTS field. Real certificates (made here), no sockets."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import pytest

from proxy.headers import downstream_head_from_raw, downstream_headers_from_raw
from proxy.settings import SettingsError, load_settings
from proxy.tls.certificate import Certificate, CertificateError, load_certificate, self_signed
from proxy.tls.files import MAX_FILE_BYTES, CertificateFiles, FileReloader
from proxy.tls.redirect import hsts_fields, https_location
from proxy.tls.store import CertificateSet, CertificateStore
from tests.support.tls_certs import NOW, TestCA, other_key_pem


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def load(chain: bytes, key: bytes, source: str = "test") -> Certificate:
    return load_certificate(chain, key, source=source, now=NOW)


# -- validation ------------------------------------------------------------------------------


def test_a_good_pair_loads_with_its_names_serial_and_expiry(ca: TestCA) -> None:
    leaf = ca.issue("Shop.Example.com", "*.example.com")
    certificate = load(leaf.chain_pem, leaf.key_pem)
    assert certificate.names == ("shop.example.com", "*.example.com")
    assert certificate.serial == leaf.serial
    assert certificate.not_after > NOW
    assert certificate.context.minimum_version.name == "TLSv1_2"
    # Equal content compares equal (an unchanged Secret is no change); the context is not
    # part of the comparison.
    assert load(leaf.chain_pem, leaf.key_pem) == certificate


@pytest.mark.parametrize(
    ("case", "part", "reason"),
    [
        ("chain not PEM", "chain", "not a PEM certificate chain"),
        ("key not PEM", "key", "not a PEM private key"),
        ("key of another certificate", "key", "does not match the first certificate"),
        ("expired", "chain", "certificate expired at"),
        ("encrypted key", "key", "encrypted private keys are not supported"),
        ("empty chain", "chain", "not a PEM certificate chain"),
    ],
)
def test_broken_pairs_are_refused_naming_the_part(
    ca: TestCA, case: str, part: str, reason: str
) -> None:
    from cryptography.hazmat.primitives import serialization

    good = ca.issue("a.test")
    chain, key = good.chain_pem, good.key_pem
    if case == "chain not PEM":
        chain = b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    elif case == "key not PEM":
        key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    elif case == "key of another certificate":
        key = other_key_pem()
    elif case == "expired":
        expired = ca.issue("a.test", expired=True)
        chain, key = expired.chain_pem, expired.key_pem
    elif case == "encrypted key":
        loaded = serialization.load_pem_private_key(key, password=None)
        key = loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    elif case == "empty chain":
        chain = b""
    with pytest.raises(CertificateError) as raised:
        load(chain, key)
    assert raised.value.part == part
    assert reason in str(raised.value)
    # Never the key material, whatever failed.
    body = b"".join(good.key_pem.splitlines()[1:-1]).decode()
    assert body[:16] not in str(raised.value)
    assert "PRIVATE KEY" not in str(raised.value)


def test_self_signed_default_loads() -> None:
    chain, key = self_signed(now=NOW)
    certificate = load(chain, key, "self-signed")
    assert certificate.names == ("localhost",)
    assert certificate.not_after - NOW > datetime.timedelta(days=300)


# -- SNI selection ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(ca: TestCA) -> dict[str, Certificate]:
    return {
        name: load(leaf.chain_pem, leaf.key_pem, name)
        for name, leaf in {
            "default": ca.issue("default.test"),
            "exact": ca.issue("shop.example.com"),
            "wildcard": ca.issue("*.example.com"),
        }.items()
    }


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        (None, "default"),
        ("", "default"),
        ("shop.example.com", "exact"),
        ("SHOP.example.com.", "exact"),  # case and a trailing dot do not matter
        ("cart.example.com", "wildcard"),
        ("a.b.example.com", "default"),  # a wildcard covers one label, as clients check
        ("example.com", "default"),  # and not the apex
        ("unknown.test", "default"),
    ],
)
def test_sni_selection(
    certificates: dict[str, Certificate], server_name: str | None, expected: str
) -> None:
    table = CertificateSet.build(
        certificates["default"],
        {"shop.example.com": certificates["exact"], "*.Example.com": certificates["wildcard"]},
    )
    assert table.select(server_name).source == expected


@pytest.mark.parametrize("name", ["*.*.example.com", "shop.*.com", "under_score.test", "a..b"])
def test_bad_names_are_refused(certificates: dict[str, Certificate], name: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        CertificateSet.build(certificates["default"], {name: certificates["exact"]})


def test_store_replace_swaps_whole_sets_and_skips_equal_ones(
    certificates: dict[str, Certificate],
) -> None:
    first = CertificateSet.build(
        certificates["default"], {"shop.example.com": certificates["exact"]}
    )
    store = CertificateStore(first)
    same = CertificateSet.build(
        certificates["default"], {"SHOP.example.com": certificates["exact"]}
    )
    assert store.replace(same) is False
    assert store.current is first
    second = CertificateSet.build(certificates["exact"])
    assert store.replace(second) is True
    assert store.current is second
    assert (
        repr(store)
        == f"<CertificateStore default=exact serial={certificates['exact'].serial:x} names=0>"
    )


# -- reloading files -------------------------------------------------------------------------


def _reloader(ca: TestCA) -> tuple[FileReloader, bytes, bytes]:
    leaf = ca.issue("a.test")
    store = CertificateStore(CertificateSet.build(load(leaf.chain_pem, leaf.key_pem)))
    files = CertificateFiles(Path("/etc/tls/tls.crt"), Path("/etc/tls/tls.key"))
    return (
        FileReloader(files, store, interval_seconds=1.0, clock=lambda: NOW),
        leaf.chain_pem,
        leaf.key_pem,
    )


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(record, "event", "") for record in caplog.records]


def test_reload_keeps_the_last_good_certificate_and_logs_each_problem_once(
    ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kubeferry.tls")
    reloader, chain, key = _reloader(ca)
    store = reloader.store
    good = store.current.default
    assert reloader.check((chain, key)) == "unchanged"

    # A key of another certificate: refused, the old one stays; the same content again is
    # not logged again.
    wrong = other_key_pem()
    assert reloader.check((chain, wrong)) == "rejected"
    assert reloader.check((chain, wrong)) == "unchanged"
    assert store.current.default is good
    rejected = [r for r in caplog.records if getattr(r, "event", "") == "tls_certificate_rejected"]
    assert len(rejected) == 1
    assert "tls.key_file /etc/tls/tls.key: does not match" in rejected[0].getMessage()
    assert rejected[0].__dict__["serving_serial"] == f"{good.serial:x}"
    assert wrong.decode().splitlines()[1] not in json.dumps(rejected[0].__dict__, default=str)

    # A file that cannot be read, then an expired certificate: refused too.
    assert reloader.check(CertificateError("chain", "No such file or directory")) == "rejected"
    expired = ca.issue("a.test", expired=True)
    assert reloader.check((expired.chain_pem, expired.key_pem)) == "rejected"
    assert store.current.default is good

    # A good new pair goes in; going back to the first content is a change again.
    new = ca.issue("a.test")
    assert reloader.check((new.chain_pem, new.key_pem)) == "reloaded"
    assert store.current.default.serial == new.serial
    assert reloader.check((chain, key)) == "reloaded"
    assert store.current.default.serial == good.serial
    assert _events(caplog).count("tls_certificate_rejected") == 3
    assert _events(caplog).count("tls_certificate_reloaded") == 2


def test_reload_keeps_the_names_the_set_had(
    ca: TestCA, certificates: dict[str, Certificate]
) -> None:
    reloader, _, _ = _reloader(ca)
    reloader.store.replace(
        CertificateSet.build(
            reloader.store.current.default, {"shop.example.com": certificates["exact"]}
        )
    )
    new = ca.issue("a.test")
    assert reloader.check((new.chain_pem, new.key_pem)) == "reloaded"
    assert reloader.store.current.select("shop.example.com") is certificates["exact"]


def test_files_too_large_are_not_read_whole(ca: TestCA, tmp_path: Path) -> None:
    leaf = ca.issue("a.test")
    cert, key = leaf.write(tmp_path)
    files = CertificateFiles(cert, key)
    assert files.load(now=NOW).serial == leaf.serial
    key.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    with pytest.raises(CertificateError) as raised:
        files.load(now=NOW)
    assert files.explain(raised.value) == (
        f"tls.key_file {key}: larger than {MAX_FILE_BYTES} bytes: not a PEM file"
    )
    key.unlink()
    with pytest.raises(CertificateError) as raised:
        files.read()
    assert files.explain(raised.value) == f"tls.key_file {key}: No such file or directory"


# -- redirect and HSTS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "port", "location"),
    [
        ("shop.example.com", "/a/b?x=1&y=2", 443, "https://shop.example.com/a/b?x=1&y=2"),
        ("shop.example.com:3000", "/", 3443, "https://shop.example.com:3443/"),
        ("Shop.Example.COM", "/", 443, "https://shop.example.com/"),
        ("[::1]:3000", "/p", 8443, "https://[::1]:8443/p"),
        ("127.0.0.1:3000", "/p", 443, "https://127.0.0.1/p"),
        ("", "/", 443, None),
        ("evil.test/x@", "/", 443, None),
        ("a b", "/", 443, None),
    ],
)
def test_https_location(host: str, path: str, port: int, location: str | None) -> None:
    assert https_location(host, path, port=port) == location


def test_hsts_field_replaces_the_upstreams_own() -> None:
    added = hsts_fields(600)
    raw = [
        (b"Content-Length", b"2"),
        (b"strict-transport-security", b"max-age=1"),
        (b"X-App", b"1"),
    ]
    head = downstream_head_from_raw(200, b"OK", raw, request_id="r", keep_alive=True, added=added)
    assert head is not None
    assert b"Strict-Transport-Security: max-age=600\r\n" in head
    assert b"max-age=1\r\n" not in head
    fields = downstream_headers_from_raw(raw, request_id="r", added=added)
    assert [v for n, v in fields if n.lower() == "strict-transport-security"] == ["max-age=600"]
    assert hsts_fields(None) == ()


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"cert_file": "/x.crt"}, "tls.key_file is required"),
        ({"key_file": "/x.key"}, "tls.cert_file is required"),
        ({"redirect_http": True}, "tls.redirect_http needs HTTPS on"),
        ({"reload_interval_seconds": 0}, "tls.reload_interval_seconds"),
    ],
)
def test_tls_settings_are_checked(tls: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        load_settings(overrides={"tls": tls})


def test_tls_port_must_differ_from_port() -> None:
    with pytest.raises(SettingsError, match="tls_port 3000 is also port"):
        load_settings(overrides={"tls": {"enabled": True}, "tls_port": 3000})
    assert load_settings(overrides={"tls_port": 3000}).tls_port == 3000  # HTTPS off: unused


def test_tls_is_off_unless_asked_for() -> None:
    assert load_settings().tls.serving is False
    assert load_settings(overrides={"tls": {"enabled": True}}).tls.serving is True
    on = load_settings(overrides={"tls": {"cert_file": "/c", "key_file": "/k"}, "tls_port": 8443})
    assert on.tls.serving is True
    assert on.tls_port == 8443
