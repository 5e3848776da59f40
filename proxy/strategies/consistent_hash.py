"""Consistent hashing on a ketama-style ring with virtual nodes.

Why a ring and not rendezvous (highest random weight) hashing: rendezvous needs one hash per
candidate on every request, O(n) on the request path; the ring costs one hash and a binary
search per request, O(log n), and is rebuilt only when the candidate set changes. Both move
about 1/N of the keys when one of N endpoints leaves.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.model import Endpoint
from proxy.strategies import StrategyDeps

# Virtual nodes per endpoint of average weight. More points even out the share of each
# endpoint (with 160, the spread is a few percent), at the cost of a larger ring to build.
POINTS_PER_ENDPOINT = 160
# Rings kept per strategy: the full healthy set plus the variants retries produce (the same
# set minus the endpoints already tried), so a retry does not throw away the main ring.
RING_CACHE_SIZE = 8

_POINTS_PER_DIGEST = 8  # a 64-byte blake2b digest holds eight 64-bit ring points
_DIGEST_POINTS = struct.Struct(">8Q")
_RANK_BITS = 24  # room for 16 million endpoints per ring
_RANK_MASK = (1 << _RANK_BITS) - 1

RingSignature = tuple[tuple[str, int], ...]


def hash_point(text: str) -> int:
    """A stable 64-bit hash (unlike `hash()`, the same in every process and across restarts,
    so all replicas of the proxy send a key to the same endpoint)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Ring:
    """Sorted ring points and, at the same index, the endpoint owning each point."""

    points: tuple[int, ...]
    owners: tuple[Endpoint, ...]

    @classmethod
    def build(cls, candidates: Sequence[Endpoint]) -> Ring:
        total_weight = sum(e.weight for e in candidates)
        # Points scale with weight, as in ketama, while the ring stays about
        # POINTS_PER_ENDPOINT * n in size however large the weights are.
        budget = POINTS_PER_ENDPOINT * len(candidates)
        # Each entry is one int, point << _RANK_BITS | rank, because plain ints sort several
        # times faster than tuples and this runs on the request path when candidates change.
        # Ranks follow the endpoint keys, so the (astronomically rare) equal points are broken
        # the same way whatever the candidate order.
        by_rank = sorted(candidates, key=lambda e: e.key)
        entries: list[int] = []
        for rank, endpoint in enumerate(by_rank):
            count = max(1, round(budget * endpoint.weight / total_weight))
            entries.extend(p << _RANK_BITS | rank for p in _endpoint_points(endpoint.key, count))
        entries.sort()
        return cls(
            tuple(entry >> _RANK_BITS for entry in entries),
            tuple(by_rank[entry & _RANK_MASK] for entry in entries),
        )

    def lookup(self, hash_key: str) -> Endpoint:
        """The owner of the first point clockwise from the key's hash."""
        index = bisect.bisect_left(self.points, hash_point(hash_key))
        return self.owners[index % len(self.owners)]


def _endpoint_points(key: str, count: int) -> list[int]:
    # Points derive from the endpoint key only, so an endpoint keeps its arcs of the ring
    # whatever else joins or leaves: that is what limits the keys that move to ~1/N.
    points: list[int] = []
    for block in range((count + _POINTS_PER_DIGEST - 1) // _POINTS_PER_DIGEST):
        digest = hashlib.blake2b(f"{key}#{block}".encode(), digest_size=64).digest()
        points.extend(_DIGEST_POINTS.unpack(digest))
    return points[:count]


class ConsistentHash:
    """Sends equal hash keys to the same endpoint while the candidate set stays the same, and
    keeps most keys in place when it changes. Without a hash key (the header, cookie or client
    address was missing) it picks at random rather than piling those requests on one endpoint."""

    __slots__ = ("_last", "_last_ring", "_rings", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # Mutable state: rings by candidate signature, least recently used first; and the
        # last candidate tuple with its ring, because the pool hands the same tuple object
        # to every request until something changes (an identity check, not an O(n) compare).
        self._rings: OrderedDict[RingSignature, Ring] = OrderedDict()
        self._last: tuple[Endpoint, ...] | None = None
        self._last_ring: Ring | None = None

    def choose(self, candidates: Sequence[Endpoint], hash_key: str | None) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
        if hash_key is None:
            return self._rng.choice(candidates)
        return self._ring(candidates).lookup(hash_key)

    def _ring(self, candidates: Sequence[Endpoint]) -> Ring:
        if candidates is self._last and self._last_ring is not None:
            return self._last_ring
        signature = tuple((e.key, e.weight) for e in candidates)
        ring = self._rings.get(signature)
        if ring is None:
            ring = Ring.build(candidates)
            self._rings[signature] = ring
            if len(self._rings) > RING_CACHE_SIZE:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(signature)
        if isinstance(candidates, tuple):
            self._last, self._last_ring = candidates, ring
        return ring


def create(deps: StrategyDeps) -> ConsistentHash:
    return ConsistentHash(deps.rng)
