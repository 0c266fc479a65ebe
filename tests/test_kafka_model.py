"""The arithmetic of the ``kafka`` source (``sources/kafka/model``), without a broker."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takhin_ws import GroupInfo, Latency, MonitoringMetrics, Snapshot, Throughput, TopicStats
from takhin_ws.sources.kafka.model import (
    Observation,
    Offsets,
    compute_snapshot,
    is_internal,
    merge_exposition,
)
from takhin_ws.wire.messages import ClusterHealth


def observe(
    at: float,
    offsets: Mapping[str, Mapping[int, Offsets]],
    committed: Mapping[str, Mapping[str, Mapping[int, int]]] | None = None,
    groups: Mapping[str, GroupInfo] | None = None,
) -> Observation:
    committed = committed or {}
    return Observation(
        monotonic=at,
        wall=1_700_000_000.0 + at,
        partitions={topic: len(parts) for topic, parts in offsets.items()},
        offsets=offsets,
        groups=groups if groups is not None else dict.fromkeys(committed, EMPTY),
        committed=committed,
    )


EMPTY = GroupInfo(state="Empty", members=0)


def stats(snapshot: Snapshot, name: str) -> TopicStats:
    (found,) = [t for t in snapshot.metrics.topic_stats if t.name == name]
    return found


def test_first_observation_has_totals_and_no_rates() -> None:
    snapshot = compute_snapshot(None, observe(0.0, {"orders": {0: (5, 15), 1: (0, 7)}}))
    assert stats(snapshot, "orders") == TopicStats(
        name="orders",
        partitions=2,
        total_messages=17,
        total_bytes=0,
        produce_rate=0.0,
        fetch_rate=0.0,
    )
    assert snapshot.metrics.timestamp == 1_700_000_000
    assert snapshot.metrics.throughput == Throughput()


def test_rates_are_offset_increases_per_second() -> None:
    before = observe(10.0, {"orders": {0: (0, 100), 1: (0, 50)}}, {"billing": {"orders": {0: 90}}})
    after = observe(12.0, {"orders": {0: (0, 130), 1: (0, 60)}}, {"billing": {"orders": {0: 100}}})
    snapshot = compute_snapshot(before, after)
    topic = stats(snapshot, "orders")
    assert topic.produce_rate == pytest.approx(40 / 2.0)
    assert topic.fetch_rate == pytest.approx(10 / 2.0)
    assert snapshot.metrics.throughput.produce_rate == pytest.approx(20.0)
    assert snapshot.metrics.throughput.fetch_rate == pytest.approx(5.0)


def test_a_recreated_topic_and_a_reset_group_are_not_negative_rates() -> None:
    before = observe(0.0, {"orders": {0: (0, 1000)}}, {"billing": {"orders": {0: 900}}})
    after = observe(2.0, {"orders": {0: (0, 3)}}, {"billing": {"orders": {0: 0}}})
    topic = stats(compute_snapshot(before, after), "orders")
    assert (topic.produce_rate, topic.fetch_rate) == (0.0, 0.0)


def test_new_partitions_and_no_elapsed_time_add_nothing() -> None:
    before = observe(5.0, {"orders": {0: (0, 10)}})
    grown = observe(7.0, {"orders": {0: (0, 10), 1: (0, 500)}})
    assert stats(compute_snapshot(before, grown), "orders").produce_rate == 0.0
    same_time = observe(5.0, {"orders": {0: (0, 50)}})
    assert stats(compute_snapshot(before, same_time), "orders").produce_rate == 0.0


def test_lag_per_partition_topic_and_group() -> None:
    snapshot = compute_snapshot(
        None,
        observe(
            0.0,
            {"orders": {0: (0, 10), 1: (0, 20)}, "audit": {0: (0, 5)}},
            {"billing": {"orders": {0: 4, 1: 25}, "audit": {0: 5}, "gone": {0: 1}}},
        ),
    )
    (group,) = snapshot.metrics.consumer_lags
    assert group.group_id == "billing"
    assert [t.topic for t in group.topic_lags] == ["audit", "orders"]  # not the gone topic
    orders = group.topic_lags[1]
    assert [
        (p.partition, p.current_offset, p.log_end_offset, p.lag) for p in orders.partition_lags
    ] == [
        (0, 4, 10, 6),
        (1, 25, 20, 0),  # committed past the end (a recreated topic): lag 0, not -5
    ]
    assert (orders.total_lag, group.total_lag) == (6, 6)


def test_every_group_is_listed_and_counted_even_without_commits() -> None:
    groups = {"idle": EMPTY, "busy": GroupInfo(state="Stable", members=3)}
    snapshot = compute_snapshot(None, observe(0.0, {"orders": {0: (0, 1)}}, groups=groups))
    assert [c.group_id for c in snapshot.metrics.consumer_lags] == ["busy", "idle"]
    assert all(c.topic_lags == () for c in snapshot.metrics.consumer_lags)
    assert snapshot.metrics.cluster_health.total_consumers == 2  # groups, as the console counts
    assert snapshot.groups == groups


def test_internal_topics_are_hidden_unless_asked_for() -> None:
    observation = observe(
        0.0,
        {"__consumer_offsets": {0: (0, 9)}, "orders": {0: (0, 1)}},
        {"billing": {"__consumer_offsets": {0: 1}}},
    )
    hidden = compute_snapshot(None, observation)
    assert [t.name for t in hidden.metrics.topic_stats] == ["orders"]
    assert hidden.metrics.cluster_health.total_topics == 1
    assert hidden.metrics.consumer_lags[0].topic_lags == ()
    shown = compute_snapshot(None, observation, show_internal_topics=True)
    assert [t.name for t in shown.metrics.topic_stats] == ["__consumer_offsets", "orders"]
    assert shown.metrics.cluster_health.total_partitions == 2
    assert is_internal("__transaction_state")
    assert not is_internal("_private")


def test_a_topic_without_offsets_is_left_out() -> None:
    """Listed by the metadata, deleted before its offsets came back."""
    observation = Observation(
        monotonic=0.0,
        wall=0.0,
        partitions={"orders": 1, "doomed": 3},
        offsets={"orders": {0: (0, 1)}},
    )
    snapshot = compute_snapshot(None, observation)
    assert [t.name for t in snapshot.metrics.topic_stats] == ["orders"]


_partitions = st.dictionaries(
    st.integers(0, 5),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(lambda p: (min(p), max(p))),
    min_size=1,
    max_size=4,
)
_offsets = st.dictionaries(st.sampled_from(["a", "b", "__c"]), _partitions, max_size=3)
_committed = st.dictionaries(
    st.sampled_from(["g1", "g2"]),
    st.dictionaries(
        st.sampled_from(["a", "b", "x"]),
        st.dictionaries(st.integers(0, 5), st.integers(0, 2 * 10**6), max_size=4),
        max_size=3,
    ),
    max_size=2,
)


@settings(max_examples=300)
@given(
    _offsets,
    _committed,
    _offsets,
    _committed,
    st.floats(-5.0, 30.0, allow_nan=False),
    st.booleans(),
)
def test_no_rate_or_lag_is_ever_negative_and_totals_add_up(
    offsets_1: dict[str, dict[int, Offsets]],
    committed_1: dict[str, dict[str, dict[int, int]]],
    offsets_2: dict[str, dict[int, Offsets]],
    committed_2: dict[str, dict[str, dict[int, int]]],
    elapsed: float,
    show_internal: bool,
) -> None:
    before, after = (
        observe(100.0, offsets_1, committed_1),
        observe(100.0 + elapsed, offsets_2, committed_2),
    )
    metrics = compute_snapshot(before, after, show_internal_topics=show_internal).metrics
    for topic in metrics.topic_stats:
        assert topic.produce_rate >= 0
        assert topic.fetch_rate >= 0
        assert topic.total_messages >= 0
        assert show_internal or not is_internal(topic.name)
    assert metrics.throughput.produce_rate == pytest.approx(
        sum(t.produce_rate for t in metrics.topic_stats)
    )
    assert metrics.throughput.fetch_rate == pytest.approx(
        sum(t.fetch_rate for t in metrics.topic_stats)
    )
    assert metrics.cluster_health.total_topics == len(metrics.topic_stats)
    for group in metrics.consumer_lags:
        assert group.total_lag == sum(t.total_lag for t in group.topic_lags)
        for topic_lag in group.topic_lags:
            assert topic_lag.total_lag == sum(p.lag for p in topic_lag.partition_lags)
            for p in topic_lag.partition_lags:
                assert p.lag == max(p.log_end_offset - p.current_offset, 0)
    if elapsed <= 0:
        assert metrics.throughput == Throughput()


def test_merge_takes_only_what_the_protocol_cannot_give() -> None:
    kafka = compute_snapshot(
        None, observe(0.0, {"orders": {0: (0, 10)}}, {"billing": {"orders": {0: 4}}})
    )
    exposition = MonitoringMetrics(
        throughput=Throughput(
            produce_rate=999.0, fetch_rate=999.0, produce_bytes=2048.0, fetch_bytes=1024.0
        ),
        latency=Latency(produce_p50=0.002, produce_p99=0.02, fetch_p50=0.004),
        topic_stats=(
            TopicStats(
                name="orders",
                partitions=9,
                total_messages=9,
                total_bytes=4096,
                produce_rate=9.0,
                fetch_rate=9.0,
            ),
            TopicStats(
                name="ghost",
                partitions=1,
                total_messages=1,
                total_bytes=1,
                produce_rate=1.0,
                fetch_rate=1.0,
            ),
        ),
        cluster_health=ClusterHealth(
            active_connections=7,
            total_topics=99,
            total_partitions=99,
            total_consumers=99,
            disk_usage_bytes=8192,
            memory_usage_bytes=1 << 20,
            goroutine_count=42,
        ),
        timestamp=5,
    )
    merged = merge_exposition(kafka, exposition).metrics
    assert merged.throughput == Throughput(produce_bytes=2048.0, fetch_bytes=1024.0)
    assert merged.latency == exposition.latency
    assert merged.topic_stats == (
        TopicStats(
            name="orders",
            partitions=1,
            total_messages=10,
            total_bytes=4096,
            produce_rate=0.0,
            fetch_rate=0.0,
        ),
    )
    assert merged.consumer_lags == kafka.metrics.consumer_lags
    assert merged.cluster_health == ClusterHealth(
        active_connections=7,
        total_topics=1,
        total_partitions=1,
        total_consumers=1,
        disk_usage_bytes=8192,
        memory_usage_bytes=1 << 20,
        goroutine_count=42,
    )
    assert merged.timestamp == kafka.metrics.timestamp
