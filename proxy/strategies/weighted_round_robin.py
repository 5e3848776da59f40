"""Smooth weighted round robin, as nginx does it (`ngx_http_upstream_get_peer`)."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.model import Endpoint
from proxy.strategies import StrategyDeps


class WeightedRoundRobin:
    """Each pick adds every candidate's weight to its running score, takes the highest score
    and subtracts the total weight from the winner. Weights 5, 1, 1 give `a a b a c a a`:
    heavy endpoints are interleaved with light ones instead of served in bursts.

    Scores are keyed by `Endpoint.key`, so a changed candidate list (health, retries,
    membership) keeps the scores of the endpoints that stay. Scores of endpoints that left
    are dropped, which bounds the state to the current candidates; one that comes back starts
    at zero. That only shifts the rotation's phase: the scheme corrects itself within a cycle.
    """

    __slots__ = ("_scores",)

    def __init__(self) -> None:
        # Mutable state: running score per endpoint key, only for recent candidates.
        self._scores: dict[str, int] = {}

    def choose(self, candidates: Sequence[Endpoint], hash_key: str | None) -> Endpoint:
        scores = self._scores
        total = 0
        best = candidates[0]
        best_score: int | None = None
        for endpoint in candidates:
            score = scores.get(endpoint.key, 0) + endpoint.weight
            scores[endpoint.key] = score
            total += endpoint.weight
            # Strict `>`: on a tie the earlier candidate wins, as in nginx.
            if best_score is None or score > best_score:
                best, best_score = endpoint, score
        scores[best.key] -= total
        if len(scores) > len(candidates):
            present = {e.key for e in candidates}
            self._scores = {key: s for key, s in scores.items() if key in present}
        return best


def create(deps: StrategyDeps) -> WeightedRoundRobin:
    return WeightedRoundRobin()
