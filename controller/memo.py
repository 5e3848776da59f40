"""The translation memo: the last parse and translation per Service and per slice, reused while
their inputs are unchanged, so a change to one slice re-translates that slice only.

Purely a cache: every lookup checks that the inputs are the very objects (or, after a relist
hands back fresh copies, equal objects) the entry was made from, so a stale or missing entry
costs time, never correctness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.annotations import Defaults, Mode, Parsed, parse_service
from controller.objects import ServiceInfo, SliceInfo
from controller.translate import SliceEntries, slice_endpoints, translate
from proxy.model import UpstreamSpec
from proxy.routing import Route

ServiceKey = tuple[str, str]  # (namespace, name)
SliceKey = tuple[str, str, str]  # (namespace, slice name, port name)


@dataclass(frozen=True, slots=True)
class Translated:
    """One Service's parse and, when it is enrolled, its upstream and the route it claims."""

    service: ServiceInfo
    slices: Sequence[SliceInfo]
    parsed: Parsed
    result: tuple[UpstreamSpec, Route] | None
    slice_keys: tuple[SliceKey, ...] = ()  # the slice memo entries it used


@dataclass(slots=True)
class Translations:
    """Mutable state: `services` by Service key; `slices` by (namespace, slice name, port
    name). A slice entry belongs to the Service entry that used it and goes with it."""

    services: dict[ServiceKey, Translated] = field(default_factory=dict)
    slices: dict[SliceKey, tuple[SliceInfo, SliceEntries]] = field(default_factory=dict)

    def get(
        self, service: ServiceInfo, slices: Sequence[SliceInfo], defaults: Defaults, mode: Mode
    ) -> Translated:
        """The translation of `service` with `slices`: the memo's when its inputs are the
        same, else a new one (which replaces it)."""
        entry = self.services.get(service.key)
        if entry is not None and _same(entry.service, service) and _same(entry.slices, slices):
            return entry
        parsed = parse_service(service, defaults, mode=mode)
        result = None
        used: list[SliceKey] = []
        if parsed.spec is not None:

            def per_slice(slice_: SliceInfo, port_name: str) -> SliceEntries:
                key = (slice_.namespace, slice_.name, port_name)
                used.append(key)
                return self._slice(key, slice_, port_name)

            result = translate(service, slices, parsed.spec, per_slice=per_slice)
        new = Translated(service, slices, parsed, result, tuple(used))
        self.services[service.key] = new
        if entry is not None:
            self._drop_slices(set(entry.slice_keys).difference(new.slice_keys))
        return new

    def drop(self, key: ServiceKey) -> None:
        """The Service left (or is no longer a candidate): forget it and its slices."""
        entry = self.services.pop(key, None)
        if entry is not None:
            self._drop_slices(entry.slice_keys)

    def keep_only(self, keys: set[ServiceKey]) -> None:
        """After a full build: forget every Service it did not see."""
        for key in [k for k in self.services if k not in keys]:
            self.drop(key)

    def _slice(self, key: SliceKey, slice_: SliceInfo, port_name: str) -> SliceEntries:
        cached = self.slices.get(key)
        if cached is not None and _same(cached[0], slice_):
            return cached[1]
        entries = slice_endpoints(slice_, port_name)
        self.slices[key] = (slice_, entries)
        return entries

    def _drop_slices(self, keys: set[SliceKey] | tuple[SliceKey, ...]) -> None:
        # A slice that moved to another Service may be dropped while that one uses it: it is
        # then translated again on its next change, nothing worse.
        for key in keys:
            self.slices.pop(key, None)


def _same(old: object, new: object) -> bool:
    # Identity first: the cache replaces, never mutates, what changed, so an unchanged object
    # is the same object and the comparison is one pointer check.
    return old is new or old == new
