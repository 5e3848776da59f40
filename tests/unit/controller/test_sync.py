import asyncio
from collections.abc import Mapping

import pytest

from controller.annotations import Defaults
from controller.cache import EVERYTHING, Changes, ObjectRef
from controller.desired import Selection, build_desired
from controller.sync import READY_CONDITION, Sync
from proxy.model import Endpoint, UpstreamSpec
from proxy.readiness import Readiness
from proxy.routing import Route, Router
from tests.unit.controller.factories import (
    FakeCluster,
    RecordingEvents,
    endpoint_json,
    service,
    slice_,
)


class FakeDataPlane:
    """Keeps every whole set it was given (`applied`: after `update` too, the set it then
    holds) and the per-upstream changes (`updates`)."""

    def __init__(self) -> None:
        self.applied: list[dict[str, UpstreamSpec]] = []
        self.updates: list[dict[str, UpstreamSpec | None]] = []

    def apply(self, upstreams: Mapping[str, UpstreamSpec]) -> bool:
        self.applied.append(dict(upstreams))
        return True

    def update(self, changes: Mapping[str, UpstreamSpec | None]) -> bool:
        self.updates.append(dict(changes))
        holds = dict(self.applied[-1])
        for name, spec in changes.items():
            if spec is None:
                holds.pop(name, None)
            else:
                holds[name] = spec
        self.applied.append(holds)
        return True


class FakeMetrics:
    def __init__(self) -> None:
        self.results: list[str] = []
        self.enrolled: list[int] = []
        self.durations: list[float] = []
        self.change_to_pool_seconds: list[float] = []
        self.invalid = 0
        self.full_rebuilds: list[str] = []

    def sync_duration(self, seconds: float) -> None:
        self.durations.append(seconds)

    def sync_result(self, result: str) -> None:
        self.results.append(result)

    def enrolled_services(self, n: int) -> None:
        self.enrolled.append(n)

    def change_to_pool(self, seconds: float) -> None:
        self.change_to_pool_seconds.append(seconds)

    def invalid_annotation(self) -> None:
        self.invalid += 1

    def full_rebuild(self, reason: str) -> None:
        self.full_rebuilds.append(reason)


class Harness:
    def __init__(self, selection: Selection | None = None) -> None:
        self.cluster = FakeCluster()
        self.dataplane = FakeDataPlane()
        self.router = Router()
        self.readiness = Readiness()
        self.events = RecordingEvents()
        self.metrics = FakeMetrics()
        self.now = 100.0
        selection = selection or Selection()
        self.sync = Sync(
            self.cluster,
            selection=selection,
            defaults=Defaults(),
            dataplane=self.dataplane,
            router=self.router if selection.mode == "ingress" else None,
            readiness=self.readiness,
            events=self.events,
            metrics=self.metrics,
            clock=lambda: self.now,
        )


def web_slice(*addresses: str) -> object:
    return slice_(endpoints=[endpoint_json(a) for a in addresses])


def test_first_sync_pushes_and_sets_readiness() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    assert h.readiness.reasons() == {READY_CONDITION: False}
    outcome = h.sync.sync()
    assert outcome.pushed_upstreams and outcome.pushed_routes
    assert h.readiness.reasons() == {READY_CONDITION: True}
    (pushed,) = h.dataplane.applied
    assert pushed["shop/web"].endpoints == (Endpoint("10.0.0.1", 8080),)
    assert h.router.table.routes == (Route("shop/web"),)
    assert h.metrics.enrolled == [1]
    assert h.metrics.results == ["pushed"]


def test_empty_cluster_still_pushes_once_and_becomes_ready() -> None:
    h = Harness()
    assert h.sync.sync().pushed_upstreams
    assert h.dataplane.applied == [{}]
    assert h.readiness.ready


def test_unchanged_snapshot_is_not_pushed() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    h.sync.sync()
    # Equal but freshly built objects (as after a relist): still nothing to push.
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    outcome = h.sync.sync()
    assert not outcome.pushed
    assert len(h.dataplane.applied) == 1
    assert h.metrics.results == ["pushed", "unchanged"]


def test_endpoint_change_pushes_whole_snapshot() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    h.cluster.add(
        service("api", annotations={"path-prefix": "/api"}),
        slice_("api", endpoints=[endpoint_json("10.0.1.1")]),
    )
    h.sync.sync()
    h.cluster.set_slices("shop", "web", slice_(endpoints=[endpoint_json("10.0.0.2")]))
    h.now = 105.0
    outcome = h.sync.sync(changed_at=104.0)
    assert outcome.pushed_upstreams and not outcome.pushed_routes
    latest = h.dataplane.applied[-1]
    assert set(latest) == {"shop/web", "shop/api"}
    assert latest["shop/web"].endpoints == (Endpoint("10.0.0.2", 8080),)
    assert h.metrics.change_to_pool_seconds == [1.0]


def test_removed_service_leaves() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    h.sync.sync()
    h.cluster.remove("shop", "web")
    assert h.sync.sync().pushed
    assert h.dataplane.applied[-1] == {}
    assert h.router.table.routes == ()


def test_problems_reported_once_and_again_when_changed() -> None:
    h = Harness()
    h.cluster.add(service(annotations={"strategy": "fastest"}))
    h.sync.sync()
    h.sync.sync()
    assert len(h.events.warnings) == 1
    name, reason, message = h.events.warnings[0]
    assert (name, reason) == ("web", "InvalidAnnotation")
    assert "kubeferry.io/strategy='fastest'" in message
    assert h.metrics.invalid == 1

    h.cluster.add(service(annotations={"strategy": "quickest"}))
    h.sync.sync()
    assert [w[2].split(":")[0] for w in h.events.warnings] == [
        "kubeferry.io/strategy='fastest'",
        "kubeferry.io/strategy='quickest'",
    ]
    # Fixed, then broken the same way again: reported again.
    h.cluster.add(service())
    h.sync.sync()
    h.cluster.add(service(annotations={"strategy": "quickest"}))
    h.sync.sync()
    assert len(h.events.warnings) == 3


def test_invalid_fallback_field_keeps_service_enrolled() -> None:
    h = Harness()
    h.cluster.add(service(annotations={"health-interval": "soon"}), web_slice("10.0.0.1"))  # type: ignore[arg-type]
    h.sync.sync()
    assert h.dataplane.applied[-1]["shop/web"].health.interval_seconds == 5.0


def test_blocked_service_is_not_enrolled_but_others_are() -> None:
    h = Harness()
    h.cluster.add(service(annotations={"host": "bad host"}))
    h.cluster.add(service("api", annotations={"path-prefix": "/api"}))
    h.sync.sync()
    assert set(h.dataplane.applied[-1]) == {"shop/api"}
    assert [(w[0], w[1]) for w in h.events.warnings] == [("web", "InvalidAnnotation")]


def test_route_conflict_older_wins_and_loser_warned_once() -> None:
    h = Harness()
    h.cluster.add(service("new", created="2024-02-01T00:00:00Z"))
    h.cluster.add(service("old", created="2024-01-01T00:00:00Z"))
    h.sync.sync()
    h.sync.sync()
    assert set(h.dataplane.applied[-1]) == {"shop/old"}
    assert h.router.table.routes == (Route("shop/old"),)
    assert [(w[0], w[1]) for w in h.events.warnings] == [("new", "RouteConflict")]
    # The winner goes away: the other Service takes the route over.
    h.cluster.remove("shop", "old")
    h.sync.sync()
    assert h.router.table.routes == (Route("shop/new"),)


def test_sidecar_mode_enrols_named_services_only_without_routes() -> None:
    selection = Selection("sidecar", frozenset({("shop", "orders"), ("pay", "payments")}))
    h = Harness(selection)
    h.cluster.add(
        service("orders", enabled=False), slice_("orders", endpoints=[endpoint_json("10.0.0.1")])
    )
    h.cluster.add(service("other"), slice_("other", endpoints=[endpoint_json("10.0.0.2")]))
    h.sync.sync()
    assert set(h.dataplane.applied[-1]) == {"shop/orders"}
    desired = build_desired(h.cluster, selection, Defaults())
    assert desired.missing == (("pay", "payments"),)
    assert desired.table.routes == ()


def test_ingress_mode_needs_a_router() -> None:
    with pytest.raises(ValueError, match="router"):
        Sync(FakeCluster(), selection=Selection(), defaults=Defaults(), dataplane=FakeDataPlane())


def test_unchanged_inputs_reuse_translation() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    h.sync.sync()
    h.sync.sync()
    (first,) = h.dataplane.applied
    desired_again = build_desired(h.cluster, Selection(), Defaults())
    assert desired_again.upstreams == first


class FakeSource(FakeCluster):
    """FakeCluster plus the cache's signal, for the async loop. It notes no changes: every
    sync after the first one sees none, unless a test sets `next_changes`."""

    def __init__(self) -> None:
        super().__init__()
        self.synced_event = asyncio.Event()
        self.change = asyncio.Event()
        self.next_changes = EVERYTHING

    def take_changes(self) -> Changes:
        changes, self.next_changes = self.next_changes, Changes()
        return changes

    @property
    def changed(self) -> "FakeSource":
        return self

    async def wait_synced(self) -> None:
        await self.synced_event.wait()

    async def wait(self) -> float:
        await self.change.wait()
        self.change.clear()
        return 0.0


async def test_run_waits_for_the_first_full_list_then_follows_changes() -> None:
    source = FakeSource()
    dataplane = FakeDataPlane()
    readiness = Readiness()
    sync = Sync(
        source,
        selection=Selection(),
        defaults=Defaults(),
        dataplane=dataplane,
        router=Router(),
        readiness=readiness,
    )
    task = asyncio.create_task(sync.run(source))
    await asyncio.sleep(0)
    assert not readiness.ready and dataplane.applied == []
    source.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    source.synced_event.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert readiness.ready
    assert len(dataplane.applied) == 1
    source.set_slices("shop", "web", slice_(endpoints=[endpoint_json("10.0.0.2")]))
    source.next_changes = Changes(frozenset({ObjectRef("Service", "shop", "web")}))
    source.change.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(dataplane.applied) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failing_sync_keeps_the_loop_and_last_state() -> None:
    class Exploding(FakeDataPlane):
        def apply(self, upstreams: Mapping[str, UpstreamSpec]) -> bool:
            raise RuntimeError("boom")

    source = FakeSource()
    source.synced_event.set()
    sync = Sync(
        source, selection=Selection(), defaults=Defaults(), dataplane=Exploding(), router=Router()
    )
    task = asyncio.create_task(sync.run(source))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_memo_follows_slice_changes_and_forgets_what_left() -> None:
    h = Harness()
    a = slice_(name="a", endpoints=[endpoint_json("10.0.0.1")])
    b = slice_(name="b", endpoints=[endpoint_json("10.0.0.2")])
    h.cluster.add(service(), a, b)
    h.sync.sync()
    b2 = slice_(name="b", endpoints=[endpoint_json("10.0.0.3")])
    h.cluster.set_slices("shop", "web", a, b2)
    h.sync.sync()
    assert h.dataplane.applied[-1]["shop/web"].endpoints == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.3", 8080),
    )
    h.cluster.set_slices("shop", "web", a)
    h.sync.sync()
    assert h.dataplane.applied[-1]["shop/web"].endpoints == (Endpoint("10.0.0.1", 8080),)
    memo = h.sync._state.memo
    assert set(memo.slices) == {("shop", "a", "http")}
    h.cluster.remove("shop", "web")
    h.sync.sync()
    assert memo.slices == {} and memo.services == {}


def web_ref(name: str = "web") -> Changes:
    return Changes(frozenset({ObjectRef("Service", "shop", name)}))


def test_a_change_pushes_only_the_upstreams_it_touched() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    h.cluster.add(service("api", annotations={"path-prefix": "/api"}))
    assert h.sync.sync(changes=EVERYTHING).full
    table = h.router.table
    h.cluster.set_slices("shop", "web", slice_(endpoints=[endpoint_json("10.0.0.2")]))
    outcome = h.sync.sync(changes=web_ref())
    assert (outcome.full, outcome.changed_upstreams, outcome.pushed_routes) == (False, 1, False)
    (update,) = h.dataplane.updates
    assert list(update) == ["shop/web"]
    assert update["shop/web"] is not None
    assert update["shop/web"].endpoints == (Endpoint("10.0.0.2", 8080),)
    assert h.router.table is table
    # Touched but unchanged: nothing pushed at all.
    assert not h.sync.sync(changes=web_ref()).pushed
    assert len(h.dataplane.updates) == 1
    # Gone: pushed as a removal, and the route table follows.
    h.cluster.remove("shop", "api")
    outcome = h.sync.sync(changes=web_ref("api"))
    assert outcome.pushed_routes and h.dataplane.updates[-1] == {"shop/api": None}
    assert h.router.table.routes == (Route("shop/web"),)


def test_nothing_pushed_yet_means_a_full_rebuild_whatever_the_changes() -> None:
    h = Harness()
    h.cluster.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    outcome = h.sync.sync(changes=Changes())
    assert outcome.full and set(h.dataplane.applied[-1]) == {"shop/web"}


async def settle(task: "asyncio.Task[None]") -> None:
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()


async def test_run_rebuilds_everything_after_a_relist_an_error_and_the_resync_interval() -> None:
    source = FakeSource()
    source.add(service(), slice_(endpoints=[endpoint_json("10.0.0.1")]))
    source.synced_event.set()
    metrics = FakeMetrics()
    now = [0.0]
    fail = [False]

    class Flaky(FakeDataPlane):
        def update(self, changes: Mapping[str, UpstreamSpec | None]) -> bool:
            if fail[0]:
                raise RuntimeError("boom")
            return super().update(changes)

    dataplane = Flaky()
    sync = Sync(
        source,
        selection=Selection(),
        defaults=Defaults(),
        dataplane=dataplane,
        router=Router(),
        metrics=metrics,
        clock=lambda: now[0],
        resync_interval_seconds=300.0,
    )
    task = asyncio.create_task(sync.run(source))
    await settle(task)
    assert metrics.full_rebuilds == ["start"]

    def change(endpoint: str, changes: Changes) -> None:
        source.set_slices("shop", "web", slice_(endpoints=[endpoint_json(endpoint)]))
        source.next_changes = changes
        source.change.set()

    change("10.0.0.2", web_ref())
    await settle(task)
    assert metrics.full_rebuilds == ["start"] and len(dataplane.updates) == 1
    change("10.0.0.3", EVERYTHING)  # a relist
    await settle(task)
    assert metrics.full_rebuilds == ["start", "relist"]
    fail[0] = True
    change("10.0.0.4", web_ref())
    await settle(task)
    assert metrics.results[-1] == "error"
    fail[0] = False
    # The failed sync took its changes with it: the next one, on any wake-up, redoes all.
    change("10.0.0.4", Changes())
    await settle(task)
    assert metrics.full_rebuilds == ["start", "relist", "error"]
    assert dataplane.applied[-1]["shop/web"].endpoints == (Endpoint("10.0.0.4", 8080),)
    # Changes keep coming, but the interval since the last full rebuild has passed: the
    # sync after the next change is followed by a full one, without waiting for quiet.
    now[0] = 301.0
    change("10.0.0.5", web_ref())
    await settle(task)
    assert metrics.full_rebuilds == ["start", "relist", "error", "resync"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_negative_resync_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="resync_interval_seconds"):
        Sync(
            FakeCluster(),
            selection=Selection(),
            defaults=Defaults(),
            dataplane=FakeDataPlane(),
            router=Router(),
            resync_interval_seconds=-1,
        )
