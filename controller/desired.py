"""The desired state, built from the cache alone: which Services to enrol, their upstreams and
the route table, and every problem currently true.

Pure but for the translation memo, which only saves work: every enrolled Service is parsed
and translated (controller.annotations, controller.translate), route conflicts are resolved
(controller.routes), and the result is one whole snapshot for the sync (controller.sync) to
compare with what it last pushed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.annotations import Defaults, Mode, Parsed, Problem, parse_service
from controller.objects import ClusterView, ServiceInfo, SliceInfo
from controller.routes import Claim, resolve
from controller.translate import SliceEntries, slice_endpoints, translate, upstream_name
from proxy.model import UpstreamSpec
from proxy.routing import Route, RouteTable


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


@dataclass(frozen=True, slots=True)
class Desired:
    """The whole state the data plane should have."""

    upstreams: Mapping[str, UpstreamSpec]
    table: RouteTable
    # Every problem currently true, with the Service it is about.
    problems: tuple[tuple[ServiceInfo, Problem], ...] = ()
    # Sidecar mode: named Services not (yet) in the cache.
    missing: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Translated:
    service: ServiceInfo
    slices: Sequence[SliceInfo]
    parsed: Parsed
    result: tuple[UpstreamSpec, Route] | None
    slice_keys: tuple[tuple[str, str, str], ...] = ()  # the slice memo entries it used


@dataclass(slots=True)
class Translations:
    """Memo of the last translation per Service and per slice, reused while the cache hands
    back the very same objects (it replaces, never mutates, what changed). A sync after one
    pod moved re-translates one slice, not ten thousand endpoints.

    Mutable state: `services` by Service key; `slices` by (namespace, slice name, port name);
    `_used_slices`, the slice keys read during the current build (the rest are dropped)."""

    services: dict[tuple[str, str], _Translated] = field(default_factory=dict)
    slices: dict[tuple[str, str, str], tuple[SliceInfo, SliceEntries]] = field(default_factory=dict)
    _used_slices: set[tuple[str, str, str]] = field(default_factory=set)

    def get(
        self, service: ServiceInfo, slices: Sequence[SliceInfo], defaults: Defaults, mode: Mode
    ) -> _Translated:
        entry = self.services.get(service.key)
        if entry is not None and entry.service is service and entry.slices is slices:
            self._used_slices.update(entry.slice_keys)  # still in use: keep their memo
            return entry
        parsed = parse_service(service, defaults, mode=mode)
        result = None
        used: list[tuple[str, str, str]] = []
        if parsed.spec is not None:

            def per_slice(slice_: SliceInfo, port_name: str) -> SliceEntries:
                key = (slice_.namespace, slice_.name, port_name)
                used.append(key)
                return self._slice(key, slice_, port_name)

            result = translate(service, slices, parsed.spec, per_slice=per_slice)
        self._used_slices.update(used)
        entry = _Translated(service, slices, parsed, result, tuple(used))
        self.services[service.key] = entry
        return entry

    def _slice(self, key: tuple[str, str, str], slice_: SliceInfo, port_name: str) -> SliceEntries:
        cached = self.slices.get(key)
        if cached is not None and cached[0] is slice_:
            return cached[1]
        entries = slice_endpoints(slice_, port_name)
        self.slices[key] = (slice_, entries)
        return entries

    def forget_except(self, keys: set[tuple[str, str]]) -> None:
        """End of a build: drop memo entries of Services and slices it did not use."""
        for key in [k for k in self.services if k not in keys]:
            del self.services[key]
        for slice_key in [k for k in self.slices if k not in self._used_slices]:
            del self.slices[slice_key]
        self._used_slices = set()


def build_desired(
    view: ClusterView,
    selection: Selection,
    defaults: Defaults,
    *,
    memo: Translations | None = None,
) -> Desired:
    """Everything the data plane should hold, from the cache alone. Pure but for `memo`."""
    memo = memo if memo is not None else Translations()
    problems: list[tuple[ServiceInfo, Problem]] = []
    claims: list[Claim] = []
    upstreams: dict[str, UpstreamSpec] = {}
    seen: set[tuple[str, str]] = set()
    for service in selection.candidates(view):
        seen.add(service.key)
        slices = view.slices_for(service.namespace, service.name)
        entry = memo.get(service, slices, defaults, selection.mode)
        problems.extend((service, p) for p in entry.parsed.problems)
        if entry.result is None:
            continue
        upstream, route = entry.result
        upstreams[upstream.name] = upstream
        claims.append(Claim(service, route))
    memo.forget_except(seen)

    if selection.mode == "sidecar":
        missing = tuple(sorted(selection.services - seen))
        return Desired(upstreams, RouteTable(), tuple(problems), missing)

    resolution = resolve(claims)
    for loser, problem in resolution.losers:
        upstreams.pop(upstream_name(loser), None)
        problems.append((loser, problem))
    table = RouteTable.build([claim.route for claim in resolution.winners])
    return Desired(upstreams, table, tuple(problems))
