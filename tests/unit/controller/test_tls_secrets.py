"""The controller's half of TLS, as pure logic: the TLS annotations, Secrets in the cache,
their validation with the last good certificate kept, the certificates by host in the
desired state, and the sync pushing a whole CertificateSet only when it changed."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from controller.annotations import Defaults, parse_service
from controller.cache import Cache, ObjectRef
from controller.certificates import SecretCertificates, covers
from controller.desired import DesiredState, Selection
from controller.objects import SecretInfo
from controller.sync import SECRETS_CONDITION, Sync
from proxy.readiness import Readiness
from proxy.routing import Router
from proxy.tls.certificate import load_certificate, self_signed
from proxy.tls.store import CertificateSet, CertificateStore
from tests.support.tls_certs import Leaf, TestCA, other_key_pem
from tests.unit.controller.factories import endpoint_json, service, slice_

HTTPS = Defaults(https=True)
NOW = datetime.datetime.now(datetime.UTC)
CA = TestCA()


def secret_json(
    name: str = "web-tls",
    namespace: str = "shop",
    *,
    chain: bytes | None,
    key: bytes | None,
    type_: str = "kubernetes.io/tls",
    version: str = "1",
) -> dict[str, Any]:
    data = {"other": base64.b64encode(b"not ours").decode()}
    if chain is not None:
        data["tls.crt"] = base64.b64encode(chain).decode()
    if key is not None:
        data["tls.key"] = base64.b64encode(key).decode()
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
        "type": type_,
        "data": data,
    }


def secret(leaf: Leaf, name: str = "web-tls", **kwargs: Any) -> SecretInfo:
    return SecretInfo.from_api(secret_json(name, chain=leaf.chain_pem, key=leaf.key_pem, **kwargs))


# -- objects and annotations ----------------------------------------------------------------


def test_a_secret_keeps_only_its_tls_fields_and_never_shows_them() -> None:
    leaf = CA.issue("shop.test")
    info = secret(leaf)
    assert (info.chain_pem, info.key_pem, info.type) == (
        leaf.chain_pem,
        leaf.key_pem,
        "kubernetes.io/tls",
    )
    assert "PRIVATE" not in repr(info) and "CERTIFICATE" not in repr(info)
    broken = SecretInfo.from_api(
        {"metadata": {"name": "x"}, "data": {"tls.crt": "%%%", "tls.key": 7}}
    )
    assert (broken.chain_pem, broken.key_pem) == (None, None)


def test_tls_annotations_fill_the_spec() -> None:
    svc = service(
        annotations={
            "host": "shop.test",
            "tls-secret": "shop-tls",
            "ssl-redirect": "true",
            "hsts": "31536000",
        }
    )
    parsed = parse_service(svc, HTTPS, mode="ingress")
    assert parsed.problems == ()
    assert parsed.spec is not None
    assert (parsed.spec.tls_secret, parsed.spec.https_redirect) == ("shop-tls", True)
    assert parsed.spec.hsts_max_age_seconds == 31536000


@pytest.mark.parametrize(
    ("annotations", "defaults", "words"),
    [
        ({"tls-secret": "shop-tls"}, HTTPS, "needs kubeferry.io/host"),
        ({"host": "a.test", "tls-secret": "Bad_Name"}, HTTPS, "not a Secret name"),
        ({"host": "a.test", "ssl-redirect": "yes"}, HTTPS, 'must be "true" or "false"'),
        ({"host": "a.test", "hsts": "1y"}, HTTPS, "not a whole number of seconds"),
        ({"host": "a.test", "hsts": str(2**31)}, HTTPS, "at most"),
        ({"host": "a.test", "tls-secret": "t"}, Defaults(), "does not serve HTTPS"),
    ],
)
def test_bad_tls_annotations_are_warnings_that_keep_the_service(
    annotations: dict[str, str], defaults: Defaults, words: str
) -> None:
    parsed = parse_service(service(annotations=annotations), defaults, mode="ingress")
    (problem,) = parsed.problems
    assert words in problem.reason
    assert not problem.blocking
    assert parsed.spec is not None
    assert (parsed.spec.tls_secret, parsed.spec.https_redirect) == (None, False)
    assert parsed.spec.hsts_max_age_seconds is None


def test_sidecar_mode_reads_no_tls_annotations() -> None:
    svc = service(annotations={"tls-secret": "x"})
    parsed = parse_service(svc, HTTPS, mode="sidecar")
    assert parsed.problems == ()
    assert parsed.spec is not None and parsed.spec.tls_secret is None


# -- validation, last good kept ---------------------------------------------------------------


def test_a_good_secret_then_a_broken_one_keeps_the_last_good_certificate() -> None:
    certificates = SecretCertificates(clock=lambda: NOW)
    key = ("shop", "web-tls")
    good = CA.issue("shop.test")
    looked = certificates.look(key, secret(good), listed=True)
    assert looked.problem is None and looked.certificate is not None
    assert looked.certificate.serial == good.serial
    broken = SecretInfo.from_api(
        secret_json(chain=CA.issue("shop.test").chain_pem, key=other_key_pem(), version="2")
    )
    looked = certificates.look(key, broken, listed=True)
    assert looked.certificate is not None and looked.certificate.serial == good.serial
    assert looked.problem is not None
    assert looked.problem.event_reason == "InvalidTLSSecret"
    assert "does not match" in looked.problem.reason
    assert f"still serving the last good certificate (serial {good.serial:x})" in (
        looked.problem.reason
    )
    assert "PRIVATE KEY" not in looked.problem.message


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda leaf: secret_json(chain=b"junk", key=leaf.key_pem), "not a PEM certificate"),
        (lambda leaf: secret_json(chain=leaf.chain_pem, key=None), "no tls.key"),
        (lambda leaf: secret_json(chain=None, key=leaf.key_pem), "no tls.crt"),
        (
            lambda leaf: secret_json(chain=leaf.chain_pem, key=leaf.key_pem, type_="Opaque"),
            "is not 'kubernetes.io/tls'",
        ),
    ],
)
def test_a_secret_that_never_worked_is_http_only(build: Any, words: str) -> None:
    certificates = SecretCertificates(clock=lambda: NOW)
    looked = certificates.look(
        ("shop", "web-tls"), SecretInfo.from_api(build(CA.issue("shop.test"))), listed=True
    )
    assert looked.certificate is None
    assert looked.problem is not None
    assert words in looked.problem.reason and looked.problem.reason.endswith("HTTP only")


def test_an_expired_certificate_is_refused() -> None:
    certificates = SecretCertificates(clock=lambda: NOW)
    looked = certificates.look(
        ("shop", "web-tls"), secret(CA.issue("shop.test", expired=True)), listed=True
    )
    assert looked.certificate is None
    assert looked.problem is not None and "expired" in looked.problem.reason


def test_missing_pending_and_memo() -> None:
    calls = []

    def clock() -> datetime.datetime:
        calls.append(1)
        return NOW

    certificates = SecretCertificates(clock=clock)
    key = ("shop", "web-tls")
    pending = certificates.look(key, None, listed=False)
    assert (pending.certificate, pending.problem) == (None, None)
    good = secret(CA.issue("shop.test"))
    first = certificates.look(key, good, listed=True)
    assert certificates.look(key, good, listed=True) is first  # validated once per content
    assert len(calls) == 1
    assert certificates.look(key, None, listed=False).certificate is first.certificate
    missing = certificates.look(key, None, listed=True)
    assert missing.certificate is None
    assert missing.problem is not None and "not found; HTTP only" in missing.problem.reason


@pytest.mark.parametrize(
    ("names", "host", "ok"),
    [
        (("shop.test",), "shop.test", True),
        (("*.shop.test",), "a.shop.test", True),
        (("*.shop.test",), "a.b.shop.test", False),
        (("*.shop.test",), "shop.test", False),
        (("*.shop.test",), "*.shop.test", True),
        (("a.shop.test",), "*.shop.test", False),
        (("other.test",), "shop.test", False),
    ],
)
def test_covers(names: tuple[str, ...], host: str, ok: bool) -> None:
    assert covers(names, host) is ok


# -- the cache ----------------------------------------------------------------------------------


def test_secret_streams_note_the_secret_only_and_do_not_gate_synced() -> None:
    cache = Cache()
    cache.replace_all("Service", [])
    cache.replace_all("EndpointSlice", [])
    assert cache.synced
    cache.take_changes()
    scope = cache.open_secret("shop", "web-tls")
    assert cache.synced and not cache.secret_listed("shop", "web-tls")
    cache.replace_all("Secret", [], scope=scope)  # listed: it does not exist
    assert cache.secret_listed("shop", "web-tls") and cache.secret("shop", "web-tls") is None
    changes = cache.take_changes()
    assert not changes.everything
    assert changes.touched == {ObjectRef("Secret", "shop", "web-tls")}
    info = secret(CA.issue("shop.test"))
    cache.upsert("Secret", info, scope=scope)
    assert cache.secret("shop", "web-tls") is info
    # Another Secret in the namespace is not this stream's business.
    assert not cache.upsert("Secret", secret(CA.issue("x.test"), name="other"), scope=scope)
    assert cache.take_changes().touched == {ObjectRef("Secret", "shop", "web-tls")}
    assert cache.secret_streams() == {("shop", "web-tls")}
    assert cache.close_secret("shop", "web-tls")
    assert cache.secret("shop", "web-tls") is None
    assert not cache.secret_listed("shop", "web-tls")
    assert cache.secret_streams() == frozenset()


# -- desired state and sync ------------------------------------------------------------------


def tls_cluster(*, redirect: bool = True) -> tuple[Cache, Any]:
    cache = Cache()
    annotations = {"host": "shop.test", "tls-secret": "web-tls"}
    if redirect:
        annotations["ssl-redirect"] = "true"
    cache.replace_all(
        "Service", [service(annotations=annotations), service("api", annotations={"host": "a.t"})]
    )
    cache.replace_all("EndpointSlice", [slice_(endpoints=[endpoint_json("10.0.0.1")])])
    return cache, cache.open_secret("shop", "web-tls")


def test_a_secret_change_redoes_its_services_and_turns_the_redirect_on() -> None:
    cache, scope = tls_cluster()
    state = DesiredState(cache, Selection(), HTTPS)
    before = state.update(cache.take_changes())
    assert before.secrets == {("shop", "web-tls")}
    assert dict(before.certificates) == {}
    (route,) = [r for r in before.table.routes if r.host == "shop.test"]
    assert not route.https_redirect  # no certificate yet: plain HTTP

    leaf = CA.issue("shop.test")
    cache.replace_all("Secret", [secret(leaf)], scope=scope)
    after = state.update(cache.take_changes())
    assert {host: c.serial for host, c in after.certificates.items()} == {"shop.test": leaf.serial}
    (route,) = [r for r in after.table.routes if r.host == "shop.test"]
    assert route.https_redirect
    assert after.upstreams["shop/api"] is before.upstreams["shop/api"]

    # A change elsewhere keeps the certificates mapping itself: nothing for the sync to push.
    cache.upsert("EndpointSlice", slice_(endpoints=[endpoint_json("10.0.0.2")]))
    assert state.update(cache.take_changes()).certificates is after.certificates
    # A broken Secret redoes the Service, and its last good certificate stays.
    cache.upsert(
        "Secret", SecretInfo.from_api(secret_json(chain=b"x", key=leaf.key_pem)), scope=scope
    )
    broken = state.update(cache.take_changes())
    assert broken.certificates["shop.test"].serial == leaf.serial
    assert [p.event_reason for _, p in broken.problems] == ["InvalidTLSSecret"]


def test_a_rebuild_equals_the_incremental_result() -> None:
    cache, scope = tls_cluster()
    state = DesiredState(cache, Selection(), HTTPS)
    state.update(cache.take_changes())
    cache.replace_all("Secret", [secret(CA.issue("shop.test"))], scope=scope)
    incremental = state.update(cache.take_changes())
    rebuilt = state.rebuild()
    assert dict(rebuilt.certificates) == dict(incremental.certificates)
    assert rebuilt.table == incremental.table
    assert rebuilt.problems == incremental.problems


class Interest:
    def __init__(self) -> None:
        self.wanted: list[frozenset[tuple[str, str]]] = []

    def want(self, secrets: frozenset[tuple[str, str]]) -> None:
        self.wanted.append(secrets)


class Plane:
    def apply(self, upstreams: Any) -> bool:
        return True

    def update(self, changes: Any) -> bool:
        return True


def test_the_sync_pushes_a_whole_certificate_set_once_and_keeps_the_default() -> None:
    cache, scope = tls_cluster()
    chain, key = self_signed(now=NOW)
    default = load_certificate(chain, key, source="self-signed", now=NOW)
    store = CertificateStore(CertificateSet.build(default))
    interest = Interest()
    sync = Sync(
        cache,
        selection=Selection(),
        defaults=HTTPS,
        dataplane=Plane(),
        router=Router(),
        certificates=store,
        secrets=interest,
    )
    sync.sync()
    assert interest.wanted[-1] == {("shop", "web-tls")}
    leaf = CA.issue("shop.test")
    cache.replace_all("Secret", [secret(leaf)], scope=scope)
    outcome = sync.sync(changes=cache.take_changes())
    assert outcome.pushed_certificates
    assert store.current.default is default
    assert store.current.select("shop.test").serial == leaf.serial
    assert store.current.select("other.test") is default
    cache.upsert("EndpointSlice", slice_(endpoints=[endpoint_json("10.0.0.9")]))
    assert not sync.sync(changes=cache.take_changes()).pushed_certificates


def test_readiness_waits_for_the_first_list_of_the_named_secrets() -> None:
    cache, scope = tls_cluster()
    chain, key = self_signed(now=NOW)
    store = CertificateStore(
        CertificateSet.build(load_certificate(chain, key, source="self-signed", now=NOW))
    )
    readiness = Readiness()
    sync = Sync(
        cache,
        selection=Selection(),
        defaults=HTTPS,
        dataplane=Plane(),
        router=Router(),
        certificates=store,
        readiness=readiness,
    )
    sync.sync()
    assert sync.first_synced.is_set() and not readiness.ready  # the Secret is not listed yet
    cache.replace_all("Secret", [], scope=scope)  # listed: it does not exist, still ready
    sync.sync(changes=cache.take_changes())
    assert readiness.ready
    # Once ready, a Secret named later does not take readiness back.
    cache.upsert("Service", service("new", annotations={"host": "n.test", "tls-secret": "other"}))
    sync.sync(changes=cache.take_changes())
    assert readiness.ready
    assert repr(readiness).endswith(f"'{SECRETS_CONDITION}': True}}>")
