"""Active health checks: one probe task per endpoint, verdicts reported through a narrow sink.

The checker knows nothing of the pool's rotation; it applies the thresholds and tells a
`StatusSink` what it concluded. `reconcile()` is a plain `def` that diffs the desired probe
targets against the running tasks and starts or cancels tasks; the probing itself happens in
those tasks, so a slow backend only ever delays its own checks.

Mutable state, touched only from the event loop:
  _running[(upstream, key)]  the target and task probing it
  _stopping                  cancelled tasks not yet finished (awaited by `close()`)
  _session                   the checker's own HTTP client, created with the first task
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from proxy.model import Endpoint, HealthSpec, UpstreamSpec

log = logging.getLogger("kubeferry.health")

# A probe interval of zero would spin; annotations should reject it, this is the backstop.
MIN_INTERVAL_SECONDS = 0.05
# The first probe of a new task waits up to this share of the interval, so a thousand
# endpoints added by one sync do not all get probed in the same instant.
FIRST_PROBE_JITTER = 0.1
USER_AGENT = "kubeferry-health"


class StatusSink(Protocol):
    """Receives health verdicts (the pool implements it). Called after every probe once a
    threshold is met, so a repeated verdict must be a no-op."""

    def report(self, upstream: str, endpoint: Endpoint, *, healthy: bool, reason: str) -> None: ...


ProbeObserver = Callable[[str, Endpoint, bool, float], None]
"""`on_probe(upstream, endpoint, ok, duration_seconds)`, called after every probe (metrics)."""

ProbeKey = tuple[str, str]  # (upstream name, endpoint key)


@dataclass(frozen=True, slots=True)
class ProbeStreak:
    """Consecutive probe results of one endpoint: at most one counter is non-zero.

    The verdict is level-triggered with hysteresis: `True` once `healthy_threshold` probes in
    a row passed, `False` once `unhealthy_threshold` in a row failed, `None` (no opinion,
    leave the endpoint as it is) in between.
    """

    successes: int = 0
    failures: int = 0

    def record(self, ok: bool) -> ProbeStreak:
        if ok:
            return ProbeStreak(successes=self.successes + 1)
        return ProbeStreak(failures=self.failures + 1)

    def verdict(self, spec: HealthSpec) -> bool | None:
        if self.successes and self.successes >= spec.healthy_threshold:
            return True
        if self.failures and self.failures >= spec.unhealthy_threshold:
            return False
        return None


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One endpoint of one upstream to probe, and how."""

    upstream: str
    endpoint: Endpoint
    health: HealthSpec

    @property
    def key(self) -> ProbeKey:
        return (self.upstream, self.endpoint.key)

    @property
    def url(self) -> str:
        return f"{self.endpoint.base_url}{self.health.path}"


def desired_targets(specs: Mapping[str, UpstreamSpec]) -> dict[ProbeKey, ProbeTarget]:
    """Every endpoint of every upstream whose health checks are on."""
    targets: dict[ProbeKey, ProbeTarget] = {}
    for name, spec in specs.items():
        if not spec.health.enabled:
            continue
        for endpoint in spec.endpoints:
            target = ProbeTarget(name, endpoint, spec.health)
            targets[target.key] = target
    return targets


def plan(
    running: Mapping[ProbeKey, ProbeTarget], desired: Mapping[ProbeKey, ProbeTarget]
) -> tuple[list[ProbeTarget], list[ProbeKey]]:
    """What to start and what to stop. A target whose HealthSpec changed is both stopped and
    started (its streak restarts under the new rules). A changed weight or readiness is not a
    change for probing: the endpoint's identity, and therefore its streak, stays."""
    stop = [
        key
        for key, target in running.items()
        if key not in desired or desired[key].health != target.health
    ]
    start = [
        target
        for key, target in desired.items()
        if key not in running or running[key].health != target.health
    ]
    return start, stop


def default_session() -> aiohttp.ClientSession:
    """A client for probes only: no connection reuse (a probe should see what a new request
    sees, and idle keep-alive sockets to thousands of pods are waste), no connection limit (a
    hanging backend must not make others' probes queue), no cookies, no decompression."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT},
    )


class HealthChecker:
    """Probes endpoints on their upstream's HealthSpec and reports verdicts to `sink`.

    Owns its tasks and its HTTP session: call `close()` to stop both.
    """

    def __init__(
        self,
        sink: StatusSink,
        *,
        session_factory: Callable[[], aiohttp.ClientSession] = default_session,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_probe: ProbeObserver | None = None,
    ) -> None:
        self._sink = sink
        self._session_factory = session_factory
        self._rng = rng or random.Random()
        self._clock = clock
        self._on_probe = on_probe
        self._session: aiohttp.ClientSession | None = None
        self._running: dict[ProbeKey, tuple[ProbeTarget, asyncio.Task[None]]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<HealthChecker {len(self._running)} probes, {len(self._stopping)} stopping>"

    def targets(self) -> dict[ProbeKey, ProbeTarget]:
        """What is being probed now."""
        return {key: target for key, (target, _) in self._running.items()}

    def reconcile(
        self, specs: Mapping[str, UpstreamSpec], *, only: Collection[str] | None = None
    ) -> None:
        """Make the running probes match `specs` (the whole truth, not a delta). With `only`,
        `specs` is the whole truth for just those upstreams (one of them missing from it has
        no probes) and the others' probes are left alone. Must be called from the event loop;
        cancels synchronously, cancelled tasks finish in the background."""
        if self._closed:
            raise RuntimeError("HealthChecker is closed")
        if only is None:
            running = self.targets()
        else:
            names = set(only)
            running = {key: t for key, (t, _) in self._running.items() if key[0] in names}
            specs = {name: spec for name, spec in specs.items() if name in names}
        start, stop = plan(running, desired_targets(specs))
        for key in stop:
            _, task = self._running.pop(key)
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        if start and self._session is None:
            self._session = self._session_factory()
        for target in start:
            delay = self._rng.uniform(0, FIRST_PROBE_JITTER * target.health.interval_seconds)
            task = asyncio.create_task(
                self._probe_forever(target, delay), name=f"health {target.upstream} {target.url}"
            )
            self._running[target.key] = (target, task)

    async def close(self) -> None:
        """Cancel every probe, wait for them to finish, close the session. Idempotent."""
        self._closed = True
        tasks = [task for _, task in self._running.values()] + list(self._stopping)
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _probe_forever(self, target: ProbeTarget, first_delay: float) -> None:
        interval = max(target.health.interval_seconds, MIN_INTERVAL_SECONDS)
        streak = ProbeStreak()
        await asyncio.sleep(first_delay)
        while True:  # runs until cancelled by reconcile() or close()
            try:
                streak = await self._check(target, streak)
            except Exception:
                # A bug in a sink or observer must not end the checks of this endpoint.
                log.exception(
                    "health probe failed unexpectedly",
                    extra={
                        "event": "health_probe_error",
                        "upstream": target.upstream,
                        "endpoint": target.endpoint.key,
                        "url": target.url,
                    },
                )
            await asyncio.sleep(interval)

    async def _check(self, target: ProbeTarget, streak: ProbeStreak) -> ProbeStreak:
        started = self._clock()
        ok, reason = await self._probe(target)
        duration = self._clock() - started
        streak = streak.record(ok)
        verdict = streak.verdict(target.health)
        # Reported after every probe, not only when the checker's own opinion flips: the pool
        # can also take an endpoint out (a failed request), and only a repeated "healthy"
        # brings it back. The sink ignores verdicts that change nothing.
        if verdict is not None:
            self._sink.report(target.upstream, target.endpoint, healthy=verdict, reason=reason)
        if self._on_probe is not None:
            self._on_probe(target.upstream, target.endpoint, ok, duration)
        return streak

    async def _probe(self, target: ProbeTarget) -> tuple[bool, str]:
        """One GET; returns (passed, reason). Expected failures become reasons, not errors."""
        spec = target.health
        session = self._session
        assert session is not None, "a probe task runs only while the session exists"
        try:
            async with session.get(
                target.url,
                timeout=aiohttp.ClientTimeout(total=spec.timeout_seconds),
                allow_redirects=False,
            ) as response:
                status = response.status
        except TimeoutError:
            return False, f"timeout after {spec.timeout_seconds}s"
        except aiohttp.ClientConnectorError as exc:
            return False, connect_failure(exc)
        except aiohttp.ClientError as exc:
            return False, f"GET {spec.path} failed: {type(exc).__name__}: {exc}"
        return spec.accepts(status), f"GET {spec.path} -> {status}"


def connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "connect refused"
    return f"connect failed: {exc.os_error.strerror or type(exc.os_error).__name__}"
