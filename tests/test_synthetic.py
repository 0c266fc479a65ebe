"""The synthetic source: determinism, sizes, a living cluster, consistent numbers."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takhin_ws.core.metrics.changes import diff
from takhin_ws.core.metrics.snapshot import Snapshot
from takhin_ws.sources.synthetic.source import SyntheticSource
from takhin_ws.wire.codec import decode, encode
from takhin_ws.wire.messages import Envelope, MonitoringMetrics

START = 1_700_000_000.0


def ticking(step: float = 2.0, start: float = START) -> Callable[[], float]:
    """A clock that moves *step* seconds each time it is read."""
    counter = itertools.count()
    return lambda: start + step * next(counter)


def run(source: SyntheticSource, steps: int) -> list[Snapshot]:
    return [source.step() for _ in range(steps)]


def wire(metrics: MonitoringMetrics) -> bytes:
    return encode(
        Envelope(
            payload=metrics,
            timestamp=int(START),
            channel="metrics",
            offset=123456,
            epoch="0123456789abcdef",
            stale=False,
        )
    )


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="topics"):
        SyntheticSource(topics=0)
    with pytest.raises(ValueError, match="groups"):
        SyntheticSource(groups=-1)
    assert "seed=7" in repr(SyntheticSource(seed=7))


def test_same_seed_same_sequence() -> None:
    a = run(SyntheticSource(topics=20, groups=8, seed=42, clock=ticking()), 150)
    b = run(SyntheticSource(topics=20, groups=8, seed=42, clock=ticking()), 150)
    assert a == b
    assert [wire(s.metrics) for s in a] == [wire(s.metrics) for s in b]
    c = run(SyntheticSource(topics=20, groups=8, seed=43, clock=ticking()), 150)
    assert a != c
    assert len({wire(s.metrics) for s in a}) == 150  # it moves


def test_the_clock_drives_the_simulation() -> None:
    fast = run(SyntheticSource(seed=1, clock=ticking(step=10.0)), 3)
    slow = run(SyntheticSource(seed=1, clock=ticking(step=1.0)), 3)
    assert fast[0] == slow[0]  # the first collect simulates a fixed step
    assert [s.metrics.timestamp for s in fast] == [int(START), int(START) + 10, int(START) + 20]
    fast_totals = {t.name: t.total_messages for t in fast[-1].metrics.topic_stats}
    slow_totals = {t.name: t.total_messages for t in slow[-1].metrics.topic_stats}
    common = [
        t.name
        for t in fast[0].metrics.topic_stats
        if t.name in fast_totals.keys() & slow_totals.keys()
    ]
    assert common
    assert all(fast_totals[name] > slow_totals[name] for name in common)


def test_a_clock_that_goes_back_is_survived() -> None:
    readings = iter([START, START - 50.0, START - 50.0, START + 2.0])
    source = SyntheticSource(seed=3, clock=lambda: next(readings))
    snapshots = run(source, 4)
    for snapshot in snapshots[1:3]:
        assert snapshot.metrics.throughput.fetch_rate == 0.0  # nothing simulated
    totals = [[(t.name, t.total_messages) for t in s.metrics.topic_stats] for s in snapshots]
    assert totals[0] == totals[1] == totals[2]  # no time passed: nothing produced
    assert totals[3] != totals[2]


@pytest.mark.parametrize(
    ("topics", "groups", "low", "high"),
    [(1, 1, 500, 2_000), (8, 4, 2_000, 20_000), (500, 200, 150_000, 1_000_000)],
)
def test_sizes_scale(topics: int, groups: int, low: int, high: int) -> None:
    snapshots = run(SyntheticSource(topics=topics, groups=groups, seed=0, clock=ticking()), 3)
    sizes = [len(wire(s.metrics)) for s in snapshots]
    assert all(low <= size <= high for size in sizes), sizes


def test_the_wire_form_decodes_strictly() -> None:
    for snapshot in run(SyntheticSource(topics=5, groups=3, seed=9, clock=ticking()), 20):
        assert decode(wire(snapshot.metrics)).payload == snapshot.metrics


def test_lag_grows_and_shrinks() -> None:
    snapshots = run(SyntheticSource(topics=8, groups=4, seed=0, clock=ticking()), 300)
    grew: Counter[str] = Counter()
    shrank: Counter[str] = Counter()
    for before, after in itertools.pairwise(snapshots):
        lags = {lag.group_id: lag.total_lag for lag in before.metrics.consumer_lags}
        for lag in after.metrics.consumer_lags:
            group = lag.group_id
            # only while consuming: a rebalancing or empty group's lag can only grow
            if group not in lags or {before.groups[group].state, after.groups[group].state} != {
                "Stable"
            }:
                continue
            if lag.total_lag > lags[group]:
                grew[group] += 1
            elif lag.total_lag < lags[group]:
                shrank[group] += 1
    both = [group for group in grew if grew[group] >= 10 and shrank[group] >= 10]
    assert len(both) >= 2, (grew, shrank)
    # consumers keep up on average but not always: neither direction dominates
    growing, shrinking = sum(grew.values()), sum(shrank.values())
    assert 0.25 <= growing / (growing + shrinking) <= 0.75


def test_the_cluster_changes_shape_over_a_run() -> None:
    source = SyntheticSource(topics=8, groups=4, seed=0, clock=ticking())
    snapshots = run(source, 900)  # 30 simulated minutes
    events = Counter(
        event.TYPE
        for before, after in itertools.pairwise(snapshots)
        for event in diff(before, after)
    )
    assert events["topic_created"] >= 3
    assert events["topic_deleted"] >= 3
    assert events["group_updated"] >= 20
    assert events["group_created"] >= 1
    assert events["group_deleted"] >= 1
    states = {info.state for s in snapshots for info in s.groups.values()}
    assert {"Stable", "PreparingRebalance", "CompletingRebalance", "Empty"} <= states
    counts = {len(s.metrics.topic_stats) for s in snapshots}
    assert min(counts) >= 7
    assert max(counts) <= 9  # hovers around the requested size


def check_consistent(before: Snapshot | None, snapshot: Snapshot) -> None:
    m = snapshot.metrics
    topics = {t.name: t for t in m.topic_stats}
    health = m.cluster_health
    assert health.total_topics == len(topics)
    assert health.total_partitions == sum(t.partitions for t in topics.values())
    assert health.total_consumers == len(snapshot.groups) == len(m.consumer_lags)
    assert health.disk_usage_bytes == sum(t.total_bytes for t in topics.values())
    assert health.active_connections >= sum(g.members for g in snapshot.groups.values())
    assert m.throughput.produce_rate == pytest.approx(sum(t.produce_rate for t in topics.values()))
    assert m.throughput.fetch_rate == pytest.approx(sum(t.fetch_rate for t in topics.values()))
    assert min(m.throughput.produce_rate, m.throughput.fetch_rate) >= 0
    lat = m.latency
    assert 0 < lat.produce_p50 <= lat.produce_p95 <= lat.produce_p99 <= 5.0
    assert 0 < lat.fetch_p50 <= lat.fetch_p95 <= lat.fetch_p99 <= 5.0
    assert [lag.group_id for lag in m.consumer_lags] == sorted(snapshot.groups)
    for group in m.consumer_lags:
        assert group.total_lag == sum(t.total_lag for t in group.topic_lags)
        for topic_lag in group.topic_lags:
            assert topic_lag.topic in topics
            assert len(topic_lag.partition_lags) == topics[topic_lag.topic].partitions
            assert topic_lag.total_lag == sum(p.lag for p in topic_lag.partition_lags)
            for p in topic_lag.partition_lags:
                assert p.lag >= 0
                assert p.current_offset + p.lag == p.log_end_offset
    for info in snapshot.groups.values():
        if info.state in ("Empty", "Dead"):
            assert info.members == 0
        if info.state == "Stable":
            assert info.members >= 1
    if before is not None:
        old = {t.name: t for t in before.metrics.topic_stats}
        for name, stats in topics.items():
            if name in old:
                assert stats.total_messages >= old[name].total_messages
        assert m.timestamp >= before.metrics.timestamp


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    topics=st.integers(min_value=1, max_value=12),
    groups=st.integers(min_value=0, max_value=6),
    step=st.floats(min_value=0.0, max_value=30.0),
)
def test_every_snapshot_is_consistent(seed: int, topics: int, groups: int, step: float) -> None:
    source = SyntheticSource(topics=topics, groups=groups, seed=seed, clock=ticking(step))
    before = None
    for snapshot in run(source, 40):
        check_consistent(before, snapshot)
        before = snapshot


async def test_collect_is_async_and_says_it_is_synthetic(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.metrics")
    source = SyntheticSource(topics=2, groups=1, clock=ticking())
    first = await source.collect()
    second = await source.collect()
    assert first != second
    notices = [r for r in caplog.records if "SYNTHETIC" in r.getMessage()]
    assert len(notices) == 1
    assert "--source prometheus" in notices[0].getMessage()
