"""The desired state, built from the cache alone: which Services to enrol, their upstreams and
the route table, and every problem currently true.

Two ways to one result. `DesiredState.rebuild` reads every candidate Service from the cache
(startup, relist, the periodic safety resync); `DesiredState.update` reads only the Services
a change touched, re-resolves only the routes their claims name (controller.routes), and
builds a new route table only when a route's winner changed, so one pod moving in a cluster
of ten thousand Services re-translates one slice. `build_desired` is a rebuild on a fresh
state. tests/unit/controller/test_desired_incremental.py drives both through long random
change sequences and requires equal results.

Each Service is parsed and translated (controller.annotations, controller.translate) through
the memo (controller.memo), which only saves work.

TLS: a Service with `tls-secret` (and a host) is redone when its Secret changes, through the
index of who names which Secret. Its Secret is validated (controller.certificates) into the
certificate for its host; the certificates by host are a whole mapping, rebuilt only when a
TLS Service was redone, for the sync to push as one CertificateSet. A route's
`https_redirect` stays off while its `tls-secret` has no certificate, so a host whose Secret
never worked is served on plain HTTP instead of redirected to a certificate that cannot match.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.annotations import Defaults, Mode, Problem
from controller.cache import Changes, ObjectRef
from controller.certificates import (
    INVALID_TLS_SECRET,
    SecretCertificates,
    SecretKey,
    covers,
)
from controller.memo import ServiceKey, Translations
from controller.objects import ANNOTATION_PREFIX, ClusterView, ServiceInfo
from controller.routes import Claim, RouteKey, age_key, resolve_group, route_key, route_sort
from proxy.model import UpstreamSpec
from proxy.routing import RouteTable
from proxy.tls.certificate import Certificate

_NO_CERTIFICATES: Mapping[str, Certificate] = MappingProxyType({})

__all__ = ["AFFECTED", "Desired", "DesiredState", "Selection", "Translations", "build_desired"]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which Services to enrol: in ingress mode, every cached Service that opts in with
    `kubeferry.io/enabled`; in sidecar mode exactly the named ones, with no routes."""

    mode: Mode = "ingress"
    services: frozenset[tuple[str, str]] = frozenset()

    def candidates(self, view: ClusterView) -> Iterable[ServiceInfo]:
        services = view.services()
        if self.mode == "ingress":
            return [services[key] for key in sorted(services)]
        return [services[key] for key in sorted(self.services) if key in services]

    def wants(self, key: ServiceKey) -> bool:
        """Whether a Service of this name is a candidate when it exists."""
        return self.mode == "ingress" or key in self.services


@dataclass(frozen=True, slots=True)
class Desired:
    """The whole state the data plane should have."""

    upstreams: Mapping[str, UpstreamSpec]
    table: RouteTable
    # Every problem currently true, with the Service it is about: annotation problems by
    # Service, then route conflicts by route.
    problems: tuple[tuple[ServiceInfo, Problem], ...] = ()
    # Sidecar mode: named Services not (yet) in the cache.
    missing: tuple[tuple[str, str], ...] = ()
    # Ingress mode: the certificate of each host with a working `tls-secret` (the same
    # object from sync to sync while unchanged), and the Secrets that Services name.
    certificates: Mapping[str, Certificate] = field(default_factory=lambda: _NO_CERTIFICATES)
    secrets: frozenset[SecretKey] = frozenset()


# Which Services a change to an object of a kind can affect (the cache notes slice changes
# as changes of their Service). A Secret maps to the Services naming it through the state's
# own index (`DesiredState._secret_users`). A kind without an entry makes `update` rebuild
# everything: correct by default, incremental once it is mapped.
AFFECTED: Mapping[str, Callable[[ObjectRef], Iterable[ServiceKey]]] = {
    "Service": lambda ref: ((ref.namespace, ref.name),),
}


class DesiredState:
    """The desired state kept between syncs, with the indexes that let a sync redo only what
    a change touched.

    Mutable state, changed only by `rebuild` and `update` (plain defs):
      memo         translations per Service and slice
      _present     candidate Services in the cache
      _built       Service key -> its upstream (enrolled; routed only if its claim wins)
      _problems    Service key -> its annotation problems (only when there are some)
      _claims      route key -> {Service key: claim}: who asks for each route
      _claim_of    Service key -> the route key it claims
      _winners     route key -> the winning claim
      _lost        route key -> (loser, problem) pairs, oldest loser first
      _upstreams   upstream name -> spec: what the data plane should hold
      _name_of     Service key -> its name in `_upstreams`
      _table       the winners' route table
      _tls         Service key -> (Service, host, certificate) for each working tls-secret
      _secret_of   Service key -> the Secret it names; _secret_users the reverse
      _certificates  host -> certificate, rebuilt when `_tls` changed
      certificates the Secret validations and last good certificates (survive a rebuild)
    """

    def __init__(
        self,
        view: ClusterView,
        selection: Selection,
        defaults: Defaults,
        *,
        memo: Translations | None = None,
        certificates: SecretCertificates | None = None,
    ) -> None:
        self._view = view
        self._selection = selection
        self._defaults = defaults
        self.memo = memo if memo is not None else Translations()
        self.certificates = certificates if certificates is not None else SecretCertificates()
        self._reset()

    def __repr__(self) -> str:
        return (
            f"<DesiredState {self._selection.mode}: {len(self._upstreams)} upstreams, "
            f"{len(self._winners)} routes, {len(self._problems)} Services with problems>"
        )

    def _reset(self) -> None:
        self._present: set[ServiceKey] = set()
        self._built: dict[ServiceKey, UpstreamSpec] = {}
        self._problems: dict[ServiceKey, tuple[tuple[ServiceInfo, Problem], ...]] = {}
        self._claims: dict[RouteKey, dict[ServiceKey, Claim]] = {}
        self._claim_of: dict[ServiceKey, RouteKey] = {}
        self._winners: dict[RouteKey, Claim] = {}
        self._lost: dict[RouteKey, tuple[tuple[ServiceInfo, Problem], ...]] = {}
        self._upstreams: dict[str, UpstreamSpec] = {}
        self._name_of: dict[ServiceKey, str] = {}
        self._table = RouteTable()
        self._tls: dict[ServiceKey, tuple[ServiceInfo, str, Certificate]] = {}
        self._secret_of: dict[ServiceKey, SecretKey] = {}
        self._secret_users: dict[SecretKey, set[ServiceKey]] = {}
        self._certificates = _NO_CERTIFICATES

    def rebuild(self) -> Desired:
        """Everything from scratch: every index is dropped and every candidate read again.
        Only the memo survives (it checks its inputs itself)."""
        self._reset()
        keys = [service.key for service in self._selection.candidates(self._view)]
        self._redo(keys, rebuild_table=True)
        self.memo.keep_only(set(keys))
        self.certificates.keep_only(set(self._secret_users))
        return self._desired()

    def update(self, changes: Changes) -> Desired:
        """Redo what `changes` can have affected, keep the rest."""
        if changes.everything:
            return self.rebuild()
        keys: set[ServiceKey] = set()
        for ref in changes.touched:
            if ref.kind == "Secret":
                keys.update(self._secret_users.get((ref.namespace, ref.name), ()))
                continue
            affected = AFFECTED.get(ref.kind)
            if affected is None:
                return self.rebuild()
            keys.update(affected(ref))
        self._redo(sorted(keys))
        return self._desired()

    # -- the one code path of both ---------------------------------------------------------

    def _redo(self, keys: Iterable[ServiceKey], *, rebuild_table: bool = False) -> None:
        services = self._view.services()
        affected: set[ServiceKey] = set()
        dirty_routes: set[RouteKey] = set()
        released: set[SecretKey] = set()
        tls_before = len(self._tls)
        tls_touched = False
        for key in keys:
            affected.add(key)
            tls_touched = self._forget(key, dirty_routes, released) or tls_touched
            service = services.get(key) if self._selection.wants(key) else None
            if service is None:
                self.memo.drop(key)
                continue
            self._present.add(key)
            entry = self.memo.get(
                service, self._view.slices_for(*key), self._defaults, self._selection.mode
            )
            problems = list(entry.parsed.problems)
            if entry.result is None:
                if problems:
                    self._problems[key] = tuple((service, p) for p in problems)
                continue
            upstream, route = entry.result
            spec = entry.parsed.spec
            if spec is not None and spec.tls_secret is not None and spec.host is not None:
                tls_touched = True
                has_certificate = self._look_tls(service, spec.host, spec.tls_secret, problems)
                if route.https_redirect and not has_certificate:
                    route = dataclasses.replace(route, https_redirect=False)
            if problems:
                self._problems[key] = tuple((service, p) for p in problems)
            self._built[key] = upstream
            if self._selection.mode == "ingress":
                claimed = route_key(route)
                self._claims.setdefault(claimed, {})[key] = Claim(service, route)
                self._claim_of[key] = claimed
                dirty_routes.add(claimed)

        routes_changed = rebuild_table
        for claimed in dirty_routes:
            # A claim that left this route was made by a Service in `keys`, so every Service
            # whose placement can change is in `affected` once the group is added.
            before = self._winners.pop(claimed, None)
            self._lost.pop(claimed, None)
            group = self._claims.get(claimed)
            if not group:
                routes_changed = True
                continue
            winner, lost = resolve_group(claimed, group.values())
            self._winners[claimed] = winner
            if lost:
                self._lost[claimed] = lost
            affected.update(group)
            routes_changed = routes_changed or before is None or before.route != winner.route

        for key in affected:
            self._place(key)
        for secret in released - self._secret_users.keys():
            self.certificates.forget(secret)
        if tls_touched or len(self._tls) != tls_before or rebuild_table:
            self._certificates = self._by_host()
        if routes_changed:
            # Built in route order, as a full resolve lists them, so that routes of equal
            # rank keep one order however the table was reached.
            self._table = RouteTable.build(
                [self._winners[claimed].route for claimed in sorted(self._winners, key=route_sort)]
            )

    def _look_tls(
        self, service: ServiceInfo, host: str, secret_name: str, problems: list[Problem]
    ) -> bool:
        """Note that `service` names the Secret and take its certificate, if any; True if
        the host has one to serve."""
        secret = (service.namespace, secret_name)
        self._secret_of[service.key] = secret
        self._secret_users.setdefault(secret, set()).add(service.key)
        looked = self.certificates.look(
            secret, self._view.secret(*secret), listed=self._view.secret_listed(*secret)
        )
        if looked.problem is not None:
            problems.append(looked.problem)
        certificate = looked.certificate
        if certificate is None:
            return False
        if not covers(certificate.names, host):
            names = ", ".join(certificate.names) or "none"
            reason = (
                f"Secret {service.namespace}/{secret_name}: the certificate's names ({names}) "
                f"do not cover {host}; served anyway, clients will refuse it"
            )
            annotation = ANNOTATION_PREFIX + "tls-secret"
            problems.append(Problem(annotation, secret_name, reason, False, INVALID_TLS_SECRET))
        self._tls[service.key] = (service, host, certificate)
        return True

    def _by_host(self) -> Mapping[str, Certificate]:
        """The certificate of each host: the oldest Service's (as for routes) when several
        Services of one host name different Secrets."""
        chosen: dict[str, tuple[tuple[str, str, str], Certificate]] = {}
        for service, host, certificate in self._tls.values():
            age = age_key(service)
            if host not in chosen or age < chosen[host][0]:
                chosen[host] = (age, certificate)
        result = {host: chosen[host][1] for host in sorted(chosen)}
        if result == dict(self._certificates):
            return self._certificates  # unchanged: the same object, so the sync skips it
        return MappingProxyType(result)

    def _forget(
        self, key: ServiceKey, dirty_routes: set[RouteKey], released: set[SecretKey]
    ) -> bool:
        """Take back what `key` contributed, noting the route it claimed and the Secret it
        named; True if it had a certificate."""
        self._present.discard(key)
        self._built.pop(key, None)
        self._problems.pop(key, None)
        secret = self._secret_of.pop(key, None)
        if secret is not None:
            users = self._secret_users[secret]
            users.discard(key)
            if not users:
                del self._secret_users[secret]
                released.add(secret)
        had_certificate = self._tls.pop(key, None) is not None
        claimed = self._claim_of.pop(key, None)
        if claimed is not None:
            group = self._claims[claimed]
            del group[key]
            if not group:
                del self._claims[claimed]
            dirty_routes.add(claimed)
        return had_certificate

    def _place(self, key: ServiceKey) -> None:
        """Put `key`'s upstream in the data plane's set, or take it out: in when built and,
        in ingress mode, when its claim won its route."""
        upstream = self._built.get(key)
        if upstream is not None and self._selection.mode == "ingress":
            winner = self._winners.get(self._claim_of[key])
            if winner is None or winner.service.key != key:
                upstream = None
        old_name = self._name_of.pop(key, None)
        if old_name is not None:
            del self._upstreams[old_name]
        if upstream is not None:
            self._upstreams[upstream.name] = upstream
            self._name_of[key] = upstream.name

    def _desired(self) -> Desired:
        problems = [p for key in sorted(self._problems) for p in self._problems[key]]
        for claimed in sorted(self._lost, key=route_sort):
            problems.extend(self._lost[claimed])
        missing: tuple[tuple[str, str], ...] = ()
        if self._selection.mode == "sidecar":
            missing = tuple(sorted(self._selection.services - self._present))
        return Desired(
            dict(self._upstreams),
            self._table,
            tuple(problems),
            missing,
            self._certificates,
            frozenset(self._secret_users),
        )


def build_desired(
    view: ClusterView,
    selection: Selection,
    defaults: Defaults,
    *,
    memo: Translations | None = None,
) -> Desired:
    """Everything the data plane should hold, from the cache alone. Pure but for `memo`."""
    return DesiredState(view, selection, defaults, memo=memo).rebuild()
