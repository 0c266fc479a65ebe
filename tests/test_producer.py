"""The metrics producer: schedule, stale snapshots, readiness, events, cancellation.

Every test runs on Trio's autojump clock (a fixture of pytest-trio): virtual time
jumps forward whenever every task is waiting, so ten minutes of ticks take
milliseconds and the times seen by the sources are exact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from recorder import Recorder
from takhin_ws.core.hub import Hub
from takhin_ws.core.metrics.snapshot import GroupInfo, MetricsSource, MetricsSourceError, Snapshot
from takhin_ws.core.series import Series
from takhin_ws.ingest.bus import MemoryBus, Published
from takhin_ws.ingest.ingress import EventIngress
from takhin_ws.ingest.producer import MetricsProducer, MetricsStatistics
from takhin_ws.sources import PrometheusSource, source_kind
from takhin_ws.sources.synthetic.source import SyntheticSource
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import (
    Envelope,
    GroupUpdated,
    MonitoringMetrics,
    Payload,
    Throughput,
    TopicCreated,
    TopicDeleted,
    TopicStats,
)


def metrics(n: int, topics: tuple[str, ...] = ()) -> MonitoringMetrics:
    stats = tuple(
        TopicStats(
            name=name, partitions=1, total_messages=n, total_bytes=0, produce_rate=0, fetch_rate=0
        )
        for name in topics
    )
    return MonitoringMetrics(
        throughput=Throughput(produce_rate=float(n)), topic_stats=stats, timestamp=n
    )


class FakeSource:
    """A source whose next answer the test decides; records when it was asked."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.delay = 0.0
        self.error: BaseException | None = None
        self.hang = False
        self.topics: tuple[str, ...] = ()
        self.groups: dict[str, GroupInfo] = {}
        self.result: object = None
        self.served = 0

    async def collect(self) -> Snapshot:
        self.calls.append(trio.current_time())
        if self.delay:
            await trio.sleep(self.delay)
        if self.hang:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error
        if self.result is not None:
            return self.result  # type: ignore[return-value]  # deliberately wrong type
        self.served += 1
        return Snapshot(metrics=metrics(self.served, self.topics), groups=self.groups)


class RecordingBus(MemoryBus):
    """The hub's in-memory bus, recording the change events published through it;
    while ``broken`` is set it refuses them (snapshots still go through)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.events: list[Payload] = []
        self.broken: Exception | None = None

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        if channel != "metrics":
            if self.broken is not None:
                raise self.broken
            self.events.append(payload)
        return await super().publish(channel, payload, stale=stale)


def recorded(
    hub: Hub, source: FakeSource, *, detect_changes: bool = True
) -> tuple[MetricsProducer, list[Payload]]:
    """A producer whose change events are recorded by its bus (the list returned)."""
    bus = RecordingBus(hub)
    ingress = EventIngress(bus)
    producer = MetricsProducer(hub, source, ingress=ingress, detect_changes=detect_changes)
    return producer, bus.events


def received(sub: Recorder) -> list[Envelope]:
    return [decode(item.payload) for item in sub.get_batch_nowait()]


def subscribe(hub: Hub, *channels: str) -> Recorder:
    """Every publish to *channels*, unconflated (a queue keeps only the latest snapshot)."""
    sub = Recorder()
    hub.add_client(sub, channels)
    return sub


def is_ready(producer: MetricsProducer) -> bool:
    """Read ``ready`` through a call, so mypy does not narrow it between ticks."""
    return producer.ready


def test_sources_satisfy_the_protocol() -> None:
    sources: list[MetricsSource] = [FakeSource(), SyntheticSource(topics=1, groups=1)]
    assert len(sources) == 2


async def test_each_source_names_its_kind_and_one_that_does_not_is_custom() -> None:
    prometheus = PrometheusSource("http://127.0.0.1:9/metrics")
    assert source_kind(SyntheticSource(topics=1, groups=1)) == "synthetic"
    assert source_kind(prometheus) == "prometheus"
    assert source_kind(FakeSource()) == "custom"
    await prometheus.aclose()


def test_arguments_are_checked(hub: Hub) -> None:
    source = FakeSource()
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="interval"):
            MetricsProducer(hub, source, interval=bad)
    with pytest.raises(ValueError, match="collect_timeout"):
        MetricsProducer(hub, source, collect_timeout=0)
    with pytest.raises(ValueError, match="unready_after"):
        MetricsProducer(hub, source, unready_after=0)
    assert MetricsProducer(hub, source, interval=3).collect_timeout == 3.0


# --- the schedule ---


async def test_ten_minutes_of_ticks_do_not_drift(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    source.delay = 0.37  # a sleep-after-work loop would drift 0.37 s per tick
    producer = MetricsProducer(hub, source, interval=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        start = trio.current_time()
        await trio.sleep(600.5)
        nursery.cancel_scope.cancel()
    assert len(source.calls) == 301  # ticks at 0, 2, ..., 600
    drift = max(abs(t - (start + 2.0 * k)) for k, t in enumerate(source.calls))
    assert drift < 1e-6
    assert producer.statistics().ticks == 301


async def test_missed_ticks_are_skipped_not_bunched(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    source.delay = 5.0  # longer than two intervals
    producer = MetricsProducer(hub, source, interval=2.0, collect_timeout=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        start = trio.current_time()
        await trio.sleep(30.5)
        nursery.cancel_scope.cancel()
    offsets = [t - start for t in source.calls]
    assert offsets == pytest.approx([0.0, 6.0, 12.0, 18.0, 24.0, 30.0])
    assert producer.statistics().failures == 0


async def test_exact_boundary_is_not_skipped(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    source.hang = True  # every collect times out after exactly one interval
    producer = MetricsProducer(hub, source, interval=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        start = trio.current_time()
        await trio.sleep(9.0)
        nursery.cancel_scope.cancel()
    assert [t - start for t in source.calls] == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])


# --- publishing, failures, staleness, readiness ---


async def test_one_snapshot_per_tick_for_every_client(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    subs = [subscribe(hub, "metrics") for _ in range(3)]
    source = FakeSource()
    producer = MetricsProducer(hub, source)
    await producer.tick()
    await producer.tick()
    assert len(source.calls) == 2
    batches = [sub.get_batch_nowait() for sub in subs]
    assert batches[0] == batches[1] == batches[2]  # the same objects: encoded once
    assert all(a is b for a, b in zip(batches[0], batches[1], strict=True))
    envelopes = [decode(item.payload) for item in batches[0]]
    assert [e.payload for e in envelopes] == [metrics(1), metrics(2)]
    assert [e.stale for e in envelopes] == [False, False]
    assert producer.latest == metrics(2)


async def test_failures_publish_the_last_snapshot_as_stale_then_recover(
    hub: Hub, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="takhin_ws.metrics")
    sub = subscribe(hub, "metrics")
    source = FakeSource()
    wall = iter(range(100, 200))
    producer = MetricsProducer(hub, source, unready_after=3, wall_clock=lambda: next(wall))
    assert not is_ready(producer)
    assert producer.latest is None

    await producer.tick()
    assert is_ready(producer)
    assert producer.statistics() == MetricsStatistics(
        ticks=1, failures=0, failure_streak=0, last_success=100, stale=False, snapshots=1
    )

    source.error = MetricsSourceError("broker:9090 refused the connection")
    readiness = []
    for _ in range(4):
        await producer.tick()
        readiness.append(is_ready(producer))
    assert readiness == [True, True, False, False]
    stats = producer.statistics()
    assert (stats.ticks, stats.failures, stats.failure_streak) == (5, 4, 4)
    assert (stats.snapshots, stats.stale_snapshots) == (1, 4)
    assert stats.stale
    assert stats.last_success == 100
    assert stats.failing_since == 101  # the first failure of the streak
    assert stats.error == "broker:9090 refused the connection"

    source.error = None
    await producer.tick()
    assert is_ready(producer)
    assert producer.statistics().failure_streak == 0
    assert not producer.statistics().stale
    assert producer.statistics().failing_since is None
    assert producer.statistics().error is None
    assert producer.statistics().snapshots == 2

    envelopes = received(sub)
    assert [e.stale for e in envelopes] == [False, True, True, True, True, False]
    assert [e.payload for e in envelopes] == [metrics(1)] * 5 + [metrics(2)]

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1
    assert "broker:9090 refused the connection" in warnings[0].getMessage()
    assert "stale" in warnings[0].getMessage()
    assert len(infos) == 1
    assert "recovered after 4 failed collects" in infos[0].getMessage()

    # a second streak is logged again, once
    source.error = RuntimeError("boom")
    await producer.tick()
    await producer.tick()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "RuntimeError: boom" in warnings[1].getMessage()


async def test_a_source_that_never_worked_counts_ticks_but_no_snapshot(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    """Ten ticks, ten failures: ten collects attempted, nothing published (nothing to
    repeat as stale), failing since the first tick, with the source's reason."""
    sub = subscribe(hub, "metrics")
    source = FakeSource()
    source.error = MetricsSourceError("kafka broker:9092: connection refused")
    wall = iter(range(500, 600))
    producer = MetricsProducer(hub, source, wall_clock=lambda: next(wall))
    for _ in range(10):
        await producer.tick()
    stats = producer.statistics()
    assert (stats.ticks, stats.failures, stats.snapshots, stats.stale_snapshots) == (10, 10, 0, 0)
    assert stats.last_success is None
    assert stats.failing_since == 500
    assert stats.error == "kafka broker:9092: connection refused"
    assert received(sub) == []


async def test_a_collect_that_overruns_its_deadline_is_a_failure(
    hub: Hub, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscribe(hub, "metrics")
    source = FakeSource()
    producer = MetricsProducer(hub, source, interval=2.0, collect_timeout=1.5, unready_after=1)
    await producer.tick()
    source.hang = True
    before = trio.current_time()
    await producer.tick()
    assert trio.current_time() - before == pytest.approx(1.5)
    assert not is_ready(producer)
    assert [e.stale for e in received(sub)] == [False, True]
    assert "did not answer within 1.5 s" in caplog.text


async def test_nothing_is_published_before_a_first_good_snapshot(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    sub = subscribe(hub, "metrics")
    source = FakeSource()
    source.error = OSError("connection refused")
    producer = MetricsProducer(hub, source, unready_after=1)
    await producer.tick()
    assert not is_ready(producer)
    assert received(sub) == []
    assert producer.statistics().last_success is None
    source.error = None
    await producer.tick()
    assert is_ready(producer)
    assert [e.stale for e in received(sub)] == [False]


async def test_a_source_returning_the_wrong_type_is_a_failure(
    hub: Hub, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource()
    source.result = metrics(1)  # a MonitoringMetrics, not a Snapshot
    producer = MetricsProducer(hub, source)
    await producer.tick()
    assert producer.statistics().failures == 1
    assert "returned MonitoringMetrics, expected a Snapshot" in caplog.text


async def test_the_run_loop_survives_failures_and_recovers(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    sub = subscribe(hub, "metrics")
    source = FakeSource()
    producer = MetricsProducer(hub, source, interval=1.0, unready_after=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await trio.sleep(0.5)
        assert is_ready(producer)
        source.error = ValueError("garbage")
        await trio.sleep(3.0)  # ticks at 1, 2, 3 fail
        assert not is_ready(producer)
        source.error = None
        await trio.sleep(1.0)  # tick at 4 succeeds
        assert is_ready(producer)
        nursery.cancel_scope.cancel()
    assert [e.stale for e in received(sub)] == [False, True, True, True, False]


# --- change events ---


def _events_source() -> Iterator[tuple[tuple[str, ...], dict[str, GroupInfo]]]:
    yield ("orders",), {"billing": GroupInfo(state="Stable", members=2)}
    yield ("orders", "clicks"), {"billing": GroupInfo(state="Stable", members=2)}
    yield ("clicks",), {"billing": GroupInfo(state="PreparingRebalance", members=2)}
    yield ("clicks",), {"billing": GroupInfo(state="PreparingRebalance", members=2)}


async def test_changes_go_through_the_ingress_to_the_bus(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    producer, events = recorded(hub, source)
    per_tick = []
    for topics, groups in _events_source():
        source.topics, source.groups = topics, groups
        await producer.tick()
        per_tick.append(len(events))
    assert per_tick == [0, 1, 3, 3]  # the first snapshot yields nothing
    assert events == [
        TopicCreated(name="clicks", partitions=1),
        TopicDeleted(name="orders"),
        GroupUpdated(group_id="billing", state="PreparingRebalance", members=2),
    ]
    assert producer.statistics().events == 3


async def test_failed_collects_yield_no_events_and_diff_against_the_last_good(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    producer, events = recorded(hub, source)
    source.topics = ("orders",)
    await producer.tick()
    source.error = RuntimeError("down")
    await producer.tick()
    source.error = None
    source.topics = ("orders", "clicks")
    await producer.tick()
    assert events == [TopicCreated(name="clicks", partitions=1)]


async def test_changes_default_to_the_hub(hub: Hub, autojump_clock: trio.testing.MockClock) -> None:
    topics_sub = subscribe(hub, "topics")
    narrow = subscribe(hub, "topic:clicks")
    source = FakeSource()
    producer = MetricsProducer(hub, source)
    source.topics = ("orders",)
    await producer.tick()
    source.topics = ("orders", "clicks")
    await producer.tick()
    got = received(topics_sub)
    assert [e.payload for e in got] == [TopicCreated(name="clicks", partitions=1)]
    assert got[0].channel == "topics"
    assert got[0].offset == 1
    assert [e.payload for e in received(narrow)] == [TopicCreated(name="clicks", partitions=1)]


async def test_a_failing_event_consumer_does_not_stop_the_producer(
    hub: Hub, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscribe(hub, "metrics")
    bus = RecordingBus(hub)
    bus.broken = RuntimeError("ingress is full")
    source = FakeSource()
    producer = MetricsProducer(hub, source, ingress=EventIngress(bus))
    await producer.tick()
    source.topics = ("orders",)
    await producer.tick()
    assert "ingress is full" in caplog.text
    assert len(received(sub)) == 2
    assert is_ready(producer)


async def test_detect_changes_off_yields_no_events(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    topics_sub = subscribe(hub, "topics", "groups")
    source = FakeSource()
    producer, events = recorded(hub, source, detect_changes=False)
    for topics, groups in _events_source():
        source.topics, source.groups = topics, groups
        await producer.tick()
    assert events == []
    assert received(topics_sub) == []
    assert producer.statistics().events == 0
    assert producer.statistics().ticks == 4


async def test_invalid_names_from_the_source_are_skipped_with_one_warning(
    hub: Hub, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource()
    producer, events = recorded(hub, source)
    await producer.tick()
    for _ in range(3):  # they come and go: an event each tick
        source.topics, source.groups = ("ok", "a b"), {"": GroupInfo(state="Stable", members=1)}
        await producer.tick()
        source.topics, source.groups = ("ok",), {}
        await producer.tick()
    assert events == [TopicCreated(name="ok", partitions=1)]  # the valid one still flows
    assert producer.statistics().invalid_events == 12
    assert producer.statistics().events == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "metrics source FakeSource reports topic 'a b', which cannot be announced (a topic "
        "name may only contain ASCII letters, digits, '.', '_' and '-', got 'a b'); "
        "skipping its change events",
        "metrics source FakeSource reports group '', which cannot be announced (a group id "
        "must not be empty); skipping its change events",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- lifecycle ---


async def test_cancellation_propagates_and_is_not_a_failure(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    producer = MetricsProducer(hub, source, interval=1.0, collect_timeout=100.0)
    with trio.move_on_after(5.5) as scope:
        await producer.tick()
        source.hang = True
        await producer.run()
    assert scope.cancelled_caught
    assert producer.statistics().failures == 0
    assert is_ready(producer)


async def test_keyboard_interrupt_propagates(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    source.error = KeyboardInterrupt()
    producer = MetricsProducer(hub, source)
    with pytest.raises(KeyboardInterrupt):
        await producer.tick()


async def test_run_stops_when_the_hub_closes(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    producer = MetricsProducer(hub, source)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await trio.sleep(3.0)
        hub.close()
    assert len(source.calls) == 3  # ticks at 0 and 2 publish; the one at 4 finds it closed


async def test_run_twice_at_once_is_refused(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    producer = MetricsProducer(hub, FakeSource())
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        with pytest.raises(RuntimeError, match="already running"):
            await producer.run()
        nursery.cancel_scope.cancel()


async def test_with_the_synthetic_source(hub: Hub, autojump_clock: trio.testing.MockClock) -> None:
    sub = subscribe(hub, "metrics")
    source = SyntheticSource(topics=3, groups=2, seed=1, clock=trio.current_time)
    producer = MetricsProducer(hub, source, interval=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await trio.sleep(9.0)
        nursery.cancel_scope.cancel()
    envelopes = received(sub)
    assert len(envelopes) == 5
    assert all(isinstance(e.payload, MonitoringMetrics) for e in envelopes)
    assert len({e.payload for e in envelopes}) == 5  # the numbers move


async def test_every_good_snapshot_feeds_the_series_and_a_stale_one_does_not(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    source = FakeSource()
    wall = iter(range(100, 200))
    series = Series(window=60.0, interval=2.0)
    producer = MetricsProducer(hub, source, wall_clock=lambda: next(wall), series=series)
    assert producer.series is series
    await producer.tick()
    source.error = MetricsSourceError("down")
    await producer.tick()  # republished as stale: no point
    source.error = None
    await producer.tick()
    assert [(p.timestamp, p.throughput.produce_rate) for p in series.points()] == [
        (100.0, 1.0),
        (102.0, 2.0),  # 101 marked the start of the failure
    ]
