"""The lag tracker on whole snapshots: lag in seconds against a producer of known rate,
consume rate, drain time, statuses and their events, forgetting, the wire fields."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from takhin_ws.core.lag.tracker import LagTracker
from takhin_ws.core.metrics.snapshot import GroupInfo, Snapshot
from takhin_ws.wire.codec import encode
from takhin_ws.wire.messages import (
    ConsumerLag,
    Envelope,
    GroupStatus,
    MonitoringMetrics,
    PartitionLag,
    TopicLag,
)

START = 1_700_000_000.0
W = 4

#: group -> topic -> partition -> (log end offset, committed offset)
Layout = Mapping[str, Mapping[str, Mapping[int, tuple[int, int]]]]


def snapshot(layout: Layout, members: Mapping[str, int] | None = None) -> Snapshot:
    lags = []
    for group, topics in layout.items():
        topic_lags = []
        for topic, partitions in topics.items():
            parts = tuple(
                PartitionLag(partition=p, current_offset=c, log_end_offset=e, lag=max(e - c, 0))
                for p, (e, c) in partitions.items()
            )
            topic_lags.append(
                TopicLag(topic=topic, total_lag=sum(x.lag for x in parts), partition_lags=parts)
            )
        lags.append(
            ConsumerLag(
                group_id=group,
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=tuple(topic_lags),
            )
        )
    members = members or {}
    return Snapshot(
        metrics=MonitoringMetrics(consumer_lags=tuple(lags)),
        groups={
            g: GroupInfo(
                state="Stable" if members.get(g, 1) else "Empty", members=members.get(g, 1)
            )
            for g in layout
        },
    )


def group_of(snap: Snapshot, group: str = "g") -> ConsumerLag:
    (found,) = [c for c in snap.metrics.consumer_lags if c.group_id == group]
    return found


def test_a_paused_consumer_falls_behind_one_second_per_second() -> None:
    """100 msg/s produced; the consumer keeps up for 10 s, then stops committing."""
    tracker = LagTracker(window=W)
    rate, interval = 100, 2.0
    seen: list[float | None] = []
    for k in range(20):
        now = START + k * interval
        end = k * int(rate * interval)
        committed = end if k <= 5 else 5 * int(rate * interval)
        out, _ = tracker.observe(snapshot({"g": {"t": {0: (end, committed)}}}), now)
        seen.append(group_of(out).lag_seconds)
    assert seen[:6] == [0.0] * 6
    # the log end passed the committed offset at tick 5 (10 s): behind by now - 10 s
    for k in range(6, 20):
        assert seen[k] == pytest.approx((k - 5) * interval)


def test_lag_seconds_is_null_without_a_produce_rate_to_go_back_with_and_zero_at_no_lag() -> None:
    tracker = LagTracker(window=W)
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (1000, 10), 1: (50, 50)}}}), START)
    (partitions,) = [t.partition_lags for t in group_of(out).topic_lags]
    assert [p.lag_seconds for p in partitions] == [None, 0.0]
    assert group_of(out).lag_seconds == 0.0  # the largest known value
    assert group_of(out).topic_lags[0].lag_seconds == 0.0
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (1000, 10)}}}), START + 2)
    assert group_of(out).lag_seconds is None  # an idle log: nothing known below
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (1200, 10)}}}), START + 4)
    # behind since before the first sample: back at the mean rate, 200 in 4 s
    assert group_of(out).lag_seconds == pytest.approx(4 + 990 / 50)


def test_log_end_samples_are_shared_by_the_groups_reading_a_partition() -> None:
    tracker = LagTracker(window=W)
    for k in range(5):
        layout = {"a": {"t": {0: (100 * k, 100)}}, "b": {"t": {0: (100 * k, 0)}}}
        out, _ = tracker.observe(snapshot(layout), START + k)
    assert tracker.partitions == 1
    assert tracker.groups == 2
    assert group_of(out, "a").lag_seconds == pytest.approx(3.0)
    assert group_of(out, "b").lag_seconds == pytest.approx(4.0)


def test_consume_rate_over_the_window() -> None:
    tracker = LagTracker(window=W)
    rates = []
    for k in range(8):
        out, _ = tracker.observe(snapshot({"g": {"t": {0: (10_000, 50 * k)}}}), START + 2 * k)
        rates.append(group_of(out).topic_lags[0].partition_lags[0].consume_rate)
    assert rates[0] is None
    assert rates[1:] == [pytest.approx(25.0)] * 7


def test_drain_seconds_at_the_rate_the_lag_shrinks() -> None:
    tracker = LagTracker(window=W)
    drains = []
    for k in range(6):  # lag 1000, 900, 800... : 50 msg/s shrinking
        out, _ = tracker.observe(snapshot({"g": {"t": {0: (5000, 4000 + 100 * k)}}}), START + 2 * k)
        drains.append(group_of(out).drain_seconds)
    assert drains[0] is None
    assert drains[-1] == pytest.approx(500 / 50)
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (5000, 4500)}}}), START + 12)
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (5100, 4500)}}}), START + 14)
    assert group_of(out).drain_seconds is None  # growing: no estimate
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (5100, 5100)}}}), START + 16)
    assert group_of(out).drain_seconds == 0.0


Frames = list[tuple[Layout, Mapping[str, int]]]


def statuses(tracker: LagTracker, frames: Frames) -> tuple[list[str], list[GroupStatus]]:
    shown: list[str] = []
    events: list[GroupStatus] = []
    for k, (layout, members) in enumerate(frames):
        out, found = tracker.observe(snapshot(layout, members), START + 2 * k)
        shown.append(group_of(out).status)
        events.extend(found)
    return shown, events


def test_a_healthy_group_is_ok_and_not_announced() -> None:
    frames: Frames = [({"g": {"t": {0: (100 * k, 100 * k)}}}, {}) for k in range(8)]
    shown, events = statuses(LagTracker(window=W), frames)
    assert shown == ["UNKNOWN"] * (W - 1) + ["OK"] * (8 - W + 1)
    assert events == []


def test_stall_rewind_stop_and_recovery_are_announced() -> None:
    frames: Frames = []
    frames += [({"g": {"t": {0: (100 * k, 100 * k)}}}, {}) for k in range(4)]  # OK
    frames += [({"g": {"t": {0: (100 * k, 300)}}}, {}) for k in range(4, 8)]  # stalls
    frames += [({"g": {"t": {0: (800, 100)}}}, {})]  # rewound to 100
    frames += [({"g": {"t": {0: (800, 800)}}}, {}) for _ in range(4)]  # caught up
    frames += [({"g": {"t": {0: (900, 800)}}}, {"g": 0})]  # closed with lag
    shown, events = statuses(LagTracker(window=W), frames)
    assert shown[3:7] == ["OK"] * 4  # a lag of 0 is still in the window
    assert shown[7] == "STALLED"
    assert shown[8:11] == ["REWOUND"] * 3  # while the step back is in the window
    assert shown[11:13] == ["OK"] * 2
    assert shown[13] == "STOPPED"
    assert [(e.previous, e.status) for e in events] == [
        ("OK", "STALLED"),
        ("STALLED", "REWOUND"),
        ("REWOUND", "OK"),
        ("OK", "STOPPED"),
    ]
    assert events[0].reason == (
        "t[0]: the committed offset stayed at 300 for 4 observations with 400 messages of lag"
    )
    assert events[1].reason == "t[0]: the committed offset went back from 300 to 100"
    assert all(e.group_id == "g" for e in events)


def test_a_group_first_seen_in_trouble_is_announced_from_unknown() -> None:
    shown, events = statuses(LagTracker(window=W), [({"g": {"t": {0: (900, 100)}}}, {"g": 0})])
    assert shown == ["STOPPED"]
    assert [(e.previous, e.status) for e in events] == [("UNKNOWN", "STOPPED")]


def test_the_worst_partition_decides_and_a_new_one_does_not_hide_it() -> None:
    frames: Frames = [
        ({"g": {"t": {0: (100 * k, 100 * k), 1: (100 * k + 50, 0)}}}, {}) for k in range(4)
    ]
    frames.append(({"g": {"t": {0: (400, 400), 1: (450, 0)}, "u": {0: (10, 0)}}}, {}))
    shown, events = statuses(LagTracker(window=W), frames)
    assert shown[3:] == ["STALLED", "STALLED"]
    assert [e.status for e in events] == ["STALLED"]
    assert events[0].reason.startswith("t[1]: ")


def test_what_no_snapshot_shows_for_a_window_is_forgotten() -> None:
    tracker = LagTracker(window=W)
    tracker.observe(snapshot({"old": {"x": {0: (10, 0)}}, "g": {"t": {0: (5, 5)}}}), START)
    for k in range(1, 2 * W + 1):
        tracker.observe(snapshot({"g": {"t": {0: (5, 5)}}}), START + k)
    assert tracker.groups == 1
    assert tracker.partitions == 1
    assert tracker.status("old") is None
    assert tracker.status("g") == "OK"


def test_clear_forgets_everything() -> None:
    tracker = LagTracker(window=W)
    tracker.observe(snapshot({"g": {"t": {0: (10, 0)}}}), START)
    tracker.clear()
    assert (tracker.groups, tracker.partitions) == (0, 0)


def test_the_insight_goes_on_the_wire_as_additive_keys() -> None:
    tracker = LagTracker(window=W)
    tracker.observe(snapshot({"g": {"t": {0: (0, 0)}}}), START)
    out, _ = tracker.observe(snapshot({"g": {"t": {0: (100, 50)}}}), START + 2)
    data = orjson.loads(encode(Envelope(payload=out.metrics, timestamp=0)))["data"]
    (group,) = data["consumerLags"]
    assert group == {
        "groupId": "g",
        "totalLag": 50,
        "topicLags": [
            {
                "topic": "t",
                "totalLag": 50,
                "partitionLags": [
                    {
                        "partition": 0,
                        "currentOffset": 50,
                        "logEndOffset": 100,
                        "lag": 50,
                        "lagSeconds": 1.0,
                        "consumeRate": 25.0,
                    }
                ],
                "lagSeconds": 1.0,
            }
        ],
        "lagSeconds": 1.0,
        "status": "UNKNOWN",
        "drainSeconds": None,
    }
    assert out.groups == snapshot({"g": {}}).groups


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="window must be >= 2"):
        LagTracker(window=1)
    with pytest.raises(ValueError, match="capacity must be >= 4"):
        LagTracker(samples=2)


def test_observing_in_steps_is_observing_whole() -> None:
    """Ten groups of one topic with 5 partitions (each weighs 1 + 1 + 5 = 7): with pieces
    of 14 objects the tick yields after every second group; state and result are those
    of the whole call."""
    whole, stepped = LagTracker(W), LagTracker(W)
    for tick in range(W + 2):
        layout = {
            f"g{g}": {"t": {p: (100 * tick + p, 90 * tick + g) for p in range(5)}}
            for g in range(10)
        }
        snap = snapshot(layout)
        now = START + 2 * tick
        expected = whole.observe(snap, now)
        steps = stepped.observe_steps(snap, now, piece=14)
        yields = 0
        while True:
            try:
                next(steps)
            except StopIteration as done:
                got = done.value
                break
            yields += 1
        # every second group; every W ticks one more, then forgetting what is gone
        # (6 objects a group's topic: a yield after every third group)
        assert yields == (5 + 1 + 3 if tick % W == 0 else 5)
        assert got == expected
        assert [stepped.status(f"g{g}") for g in range(10)] == [
            whole.status(f"g{g}") for g in range(10)
        ]
