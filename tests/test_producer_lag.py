"""The producer with a lag tracker: what is published carries the insight, status
changes go out as ``group_status`` events with offsets, failures feed it nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.core.lag.tracker import OBSERVE_PIECE, LagTracker
from takhin_ws.core.metrics.snapshot import GroupInfo, MetricsSourceError, Snapshot
from takhin_ws.core.series import Series
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import (
    ConsumerLag,
    Envelope,
    GroupStatus,
    MonitoringMetrics,
    PartitionLag,
    TopicLag,
)

START = 1_700_000_000.0
INTERVAL = 2.0
WINDOW = 3


class Consumer:
    """One group reading *partitions* of topic ``t``, 100 messages per tick each;
    ``committing`` says whether it keeps up."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.end = 0
        self.committed = 0
        self.committing = True
        self.members = 1
        self.fail = False

    async def collect(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise MetricsSourceError("broker away")
        self.end += 100
        if self.committing:
            self.committed = self.end
        lag = self.end - self.committed
        parts = tuple(
            PartitionLag(
                partition=p, current_offset=self.committed, log_end_offset=self.end, lag=lag
            )
            for p in range(self.partitions)
        )
        total = lag * self.partitions
        metrics = MonitoringMetrics(
            consumer_lags=(
                ConsumerLag(
                    group_id="billing",
                    total_lag=total,
                    topic_lags=(TopicLag(topic="t", total_lag=total, partition_lags=parts),),
                ),
            )
        )
        info = GroupInfo(state="Stable" if self.members else "Empty", members=self.members)
        return Snapshot(metrics=metrics, groups={"billing": info})


def clock() -> Callable[[], float]:
    """A wall clock that advances one interval per reading (one reading per tick)."""
    readings = iter(range(10**6))
    return lambda: START + INTERVAL * next(readings)


def setup(source: Consumer, **kwargs: object) -> tuple[Hub, QueueSubscriber, MetricsProducer]:
    hub = Hub()
    sub = QueueSubscriber(capacity=1000)
    hub.add_client(sub)
    producer = MetricsProducer(
        hub,
        source,
        lag=LagTracker(WINDOW),
        wall_clock=clock(),
        **kwargs,  # type: ignore[arg-type]
    )
    return hub, sub, producer


def drain(sub: QueueSubscriber) -> list[Envelope]:
    return [decode(item.payload) for item in sub.queue.get_batch_nowait()]


def last_lag(envelopes: list[Envelope]) -> ConsumerLag:
    (metrics,) = [e.payload for e in envelopes if isinstance(e.payload, MonitoringMetrics)][-1:]
    return metrics.consumer_lags[0]


async def test_published_snapshots_carry_the_insight_and_statuses_are_events() -> None:
    source = Consumer()
    hub, sub, producer = setup(source)
    for _ in range(WINDOW):
        await producer.tick()
    assert last_lag(drain(sub)).status == "OK"
    source.committing = False
    for _ in range(WINDOW):
        await producer.tick()
    seen = drain(sub)
    lag = last_lag(seen)
    assert lag.status == "STALLED"
    assert lag.lag_seconds == pytest.approx((WINDOW - 1) * INTERVAL + INTERVAL)
    assert lag.topic_lags[0].partition_lags[0].consume_rate == 0.0
    (event,) = [e for e in seen if isinstance(e.payload, GroupStatus)]
    assert event.payload == GroupStatus(
        group_id="billing",
        status="STALLED",
        previous="OK",
        reason="t[0]: the committed offset stayed at 300 for 3 observations with 300 "
        "messages of lag",
    )
    assert (event.channel, event.offset) == ("groups", 1)
    assert hub.offset("groups") == 1
    assert producer.statistics().events == 1


async def test_statuses_are_announced_with_change_detection_off() -> None:
    source = Consumer()
    _, sub, producer = setup(source, detect_changes=False)
    source.members = 0
    source.committing = False
    await producer.tick()
    await producer.tick()
    events = [e.payload for e in drain(sub) if isinstance(e.payload, GroupStatus)]
    assert [(e.previous, e.status) for e in events] == [("UNKNOWN", "STOPPED")]


async def test_a_failed_collect_feeds_the_tracker_nothing() -> None:
    source = Consumer()
    _, sub, producer = setup(source)
    await producer.tick()
    source.fail = True
    await producer.tick()
    assert producer.lag is not None
    assert producer.lag.status("billing") == "UNKNOWN"
    stale = drain(sub)[-1]
    assert stale.stale is True
    assert isinstance(stale.payload, MonitoringMetrics)
    assert stale.payload.consumer_lags[0].lag_seconds == 0.0  # the last good one again


async def test_the_series_and_the_snapshot_hold_the_insight() -> None:
    source = Consumer()
    series = Series(60.0, INTERVAL)
    _, _, producer = setup(source, series=series)
    await producer.tick()
    source.committing = False
    for _ in range(2):
        await producer.tick()
    assert producer.snapshot is not None
    assert producer.snapshot.metrics.consumer_lags[0].lag_seconds == pytest.approx(2 * INTERVAL)
    assert len(series) == 3


async def test_a_big_snapshot_is_tracked_in_steps() -> None:
    source = Consumer(partitions=OBSERVE_PIECE * 2 + 1)
    _, sub, producer = setup(source)
    await producer.tick()
    source.committing = False
    await producer.tick()
    lag = last_lag(drain(sub))
    assert len(lag.topic_lags[0].partition_lags) == OBSERVE_PIECE * 2 + 1
    assert lag.lag_seconds == pytest.approx(INTERVAL)


async def test_losing_the_lease_forgets_the_samples() -> None:
    source = Consumer()
    holding = True

    async def should_collect() -> bool:
        return holding

    _, _, producer = setup(source, should_collect=should_collect)
    await producer.tick()
    assert producer.lag is not None
    assert producer.lag.groups == 1
    holding = False
    await producer.tick()
    assert producer.lag.groups == 0
