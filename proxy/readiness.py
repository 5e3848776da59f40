"""Readiness: is this proxy ready to take traffic?

Named conditions ("routes_loaded", "listener_bound", ...) are set by whoever owns them; the
proxy is ready when every one is true and it is not draining. Draining is one-way: once a
shutdown starts, `/readyz` fails so the load balancer in front stops sending new requests
while the in-flight ones finish.
"""

from __future__ import annotations


class Readiness:
    """Conditions by name plus the draining flag; plain synchronous state, read by `/readyz`."""

    __slots__ = ("_conditions", "_draining")

    def __init__(self) -> None:
        self._conditions: dict[str, bool] = {}
        self._draining = False

    def __repr__(self) -> str:
        state = "draining" if self._draining else ("ready" if self.ready else "not ready")
        return f"<Readiness {state}: {self._conditions}>"

    def set(self, condition: str, ok: bool) -> None:
        self._conditions[condition] = ok

    @property
    def ready(self) -> bool:
        """All conditions true (vacuously so with none) and not draining."""
        return not self._draining and all(self._conditions.values())

    def start_draining(self) -> None:
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def reasons(self) -> dict[str, bool]:
        """A copy of the conditions, for `/readyz` to show which one is false."""
        return dict(self._conditions)
