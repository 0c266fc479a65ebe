"""The snapshot from two scrapes: golden expositions worked out by hand, group states,
and the columns lined up (or not) between scrapes."""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import WALL, fixture
from takhin_ws.core.metrics.changes import diff
from takhin_ws.core.metrics.snapshot import GroupInfo
from takhin_ws.sources.prometheus.scan import ExpositionScanner, parse_exposition
from takhin_ws.sources.prometheus.series import Series
from takhin_ws.sources.prometheus.snapshot import (
    READ_SAMPLES,
    STATE_CODES,
    Scrape,
    compute_snapshot,
    group_state,
)
from takhin_ws.wire.messages import (
    ClusterHealth,
    ConsumerLag,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicCreated,
    TopicDeleted,
    TopicLag,
    TopicStats,
)


def scrape(name: str, at: float) -> Scrape:
    return Scrape(parse_exposition(fixture(name).decode(), READ_SAMPLES), at, WALL + at)


# --- group state decoding ---


def test_state_codes() -> None:
    assert dict(STATE_CODES) == {
        0: "Dead",
        1: "Empty",
        2: "PreparingRebalance",
        3: "CompletingRebalance",
        4: "Stable",
    }


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        ([("Stable", 4.0)], "Stable"),  # Takhin: coded gauge, label agrees
        ([("Empty", 1.0)], "Empty"),
        ([("Dead", 0.0)], "Dead"),
        ([(None, 3.0)], "CompletingRebalance"),  # code only
        ([("Stable", 1.0)], "Stable"),  # state set with a single series
        ([("Dead", 0.0), ("Empty", 1.0), ("Stable", 0.0)], "Empty"),  # state set
        ([("Dead", 0.0), ("Stable", 0.0)], "Dead"),
        ([("Empty", 1.0), ("Stable", 4.0)], "Stable"),  # a stale coded series lingers
        ([("Empty", 1.0), ("PreparingRebalance", 2.0), ("Stable", 4.0)], "Stable"),
        ([("odd", 2.0), ("other", 3.0)], "CompletingRebalance"),  # codes only: the highest
        ([("odd", 2.5), ("other", 9.0)], None),
        ([(None, 9.0)], None),
        ([(None, 2.5)], None),
        ([("Stable", math.nan)], None),
        ([], None),
    ],
)
def test_group_state(series: list[tuple[str | None, float]], expected: str | None) -> None:
    assert group_state(series) == expected


# --- golden expositions ---


SNAPSHOT_1 = MonitoringMetrics(
    throughput=Throughput(),
    latency=Latency(),
    topic_stats=(
        TopicStats(
            name="orders",
            partitions=2,
            total_messages=3000,
            total_bytes=1048576 + 2097152,
            produce_rate=0.0,
            fetch_rate=0.0,
        ),
        TopicStats(
            name="payments",
            partitions=1,
            total_messages=500,
            total_bytes=4096,
            produce_rate=0.0,
            fetch_rate=0.0,
        ),
    ),
    consumer_lags=(
        ConsumerLag(
            group_id="audit",
            total_lag=500,
            topic_lags=(
                TopicLag(
                    topic="payments",
                    total_lag=500,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=0, log_end_offset=500, lag=500),
                    ),
                ),
            ),
        ),
        ConsumerLag(
            group_id="billing",
            total_lag=200,
            topic_lags=(
                TopicLag(
                    topic="orders",
                    total_lag=200,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=900, log_end_offset=1000, lag=100),
                        PartitionLag(
                            partition=1, current_offset=1900, log_end_offset=2000, lag=100
                        ),
                    ),
                ),
            ),
        ),
    ),
    cluster_health=ClusterHealth(
        active_connections=12,
        total_topics=2,
        total_partitions=3,
        total_consumers=2,  # two groups (audit has no member)
        disk_usage_bytes=1048576 + 2097152 + 4096,
        memory_usage_bytes=41943040,  # takhin_go_mem_alloc_bytes, not _sys_bytes
        goroutine_count=87,
    ),
    timestamp=1_700_000_000,
)

SNAPSHOT_2 = MonitoringMetrics(
    # over 10 s: produced 600 + 150 (reset) + 0 + 40 (new series); fetched 600 + 50;
    # bytes in 60000 + 4000 (new series); bytes out 50000
    throughput=Throughput(
        produce_rate=79.0, fetch_rate=65.0, produce_bytes=6400.0, fetch_bytes=5000.0
    ),
    # 100 produce requests: 20 in (.001, .005], 60 in (.005, .01], 15 in (.01, .025],
    # 5 in (.025, .05]. p50: rank 50 is the 30th of 60 in (.005, .01] -> .0075;
    # p95: rank 95 is the last of 15 in (.01, .025] -> .025; p99: rank 99 is the 4th
    # of 5 in (.025, .05] -> .045. No fetch request in the window: 0.
    latency=Latency(produce_p50=0.0075, produce_p95=0.025, produce_p99=0.045),
    topic_stats=(
        TopicStats(
            name="clicks",
            partitions=2,
            total_messages=40,
            total_bytes=8192,
            produce_rate=4.0,
            fetch_rate=0.0,
        ),
        TopicStats(
            name="orders",
            partitions=2,
            total_messages=1600 + 2150,
            total_bytes=1200000 + 2097152,
            produce_rate=75.0,
            fetch_rate=65.0,
        ),
    ),
    consumer_lags=(
        ConsumerLag(
            group_id="billing",
            total_lag=250,
            topic_lags=(
                TopicLag(
                    topic="orders",
                    total_lag=250,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=1550, log_end_offset=1600, lag=50),
                        PartitionLag(
                            partition=1, current_offset=1950, log_end_offset=2150, lag=200
                        ),
                    ),
                ),
            ),
        ),
        ConsumerLag(
            group_id="search",
            total_lag=10,
            topic_lags=(
                TopicLag(
                    topic="clicks",
                    total_lag=10,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=30, log_end_offset=40, lag=10),
                    ),
                ),
            ),
        ),
    ),
    cluster_health=ClusterHealth(
        active_connections=15,
        total_topics=2,
        total_partitions=4,
        total_consumers=2,  # two groups of 3 and 1 members
        disk_usage_bytes=1200000 + 2097152 + 8192,
        memory_usage_bytes=45000000,
        goroutine_count=90,
    ),
    timestamp=1_700_000_010,
)


def test_golden_first_scrape() -> None:
    snapshot = compute_snapshot(None, scrape("full_1.prom", 0.0))
    assert snapshot.metrics == SNAPSHOT_1
    assert dict(snapshot.groups) == {
        "audit": GroupInfo(state="Empty", members=0),
        "billing": GroupInfo(state="Stable", members=2),
    }


def test_golden_second_scrape_reset_new_and_deleted_series() -> None:
    first = compute_snapshot(None, scrape("full_1.prom", 0.0))
    second = compute_snapshot(scrape("full_1.prom", 0.0), scrape("full_2.prom", 10.0))
    assert second.metrics.throughput == SNAPSHOT_2.throughput
    assert second.metrics.latency.produce_p50 == pytest.approx(0.0075)
    assert second.metrics.latency.produce_p95 == pytest.approx(0.025)
    assert second.metrics.latency.produce_p99 == pytest.approx(0.045)
    assert second.metrics == attrs.evolve(SNAPSHOT_2, latency=second.metrics.latency)
    assert dict(second.groups) == {
        "billing": GroupInfo(state="PreparingRebalance", members=3),
        "search": GroupInfo(state="Stable", members=1),
    }
    assert diff(first, second) == [
        TopicCreated(name="clicks", partitions=2),
        TopicDeleted(name="payments"),
        GroupCreated(group_id="search", state="Stable", members=1),
        GroupUpdated(group_id="billing", state="PreparingRebalance", members=3),
        GroupDeleted(group_id="audit", state="Dead", members=0),
    ]


def test_golden_no_time_elapsed_means_no_rates() -> None:
    again = compute_snapshot(scrape("full_1.prom", 5.0), scrape("full_2.prom", 5.0))
    assert again.metrics.throughput == Throughput()
    assert again.metrics.latency == Latency()
    backwards = compute_snapshot(scrape("full_1.prom", 5.0), scrape("full_2.prom", 4.0))
    assert backwards.metrics.throughput == Throughput()


def test_golden_missing_families_are_zeros() -> None:
    first = compute_snapshot(None, scrape("missing_families.prom", 0.0))
    assert first.metrics == MonitoringMetrics(
        topic_stats=(
            TopicStats(
                name="orders",
                partitions=2,
                total_messages=40,
                total_bytes=0,
                produce_rate=0.0,
                fetch_rate=0.0,
            ),
        ),
        cluster_health=ClusterHealth(active_connections=3, total_topics=1, total_partitions=2),
        timestamp=1_700_000_000,
    )
    assert dict(first.groups) == {}
    later = compute_snapshot(scrape("missing_families.prom", 0.0), scrape("full_1.prom", 2.0))
    # series born since the previous scrape count in full (as a reset would):
    # 200 produce requests, rank 100 is the last of 90 in (0.001, 0.005]
    assert later.metrics.latency.produce_p50 == pytest.approx(0.005)
    assert later.metrics.throughput.fetch_rate == pytest.approx((900 + 1900) / 2.0)
    empty = compute_snapshot(None, Scrape({}, 0.0, 5.0))
    assert empty.metrics == MonitoringMetrics(timestamp=5)


def test_golden_state_set_and_go_runtime_fallbacks() -> None:
    snapshot = compute_snapshot(None, scrape("state_set.prom", 0.0))
    assert dict(snapshot.groups) == {
        "billing": GroupInfo(state="CompletingRebalance", members=4),
        "gone": GroupInfo(state="Dead", members=0),
        "lonely": GroupInfo(state="Stable", members=2),  # no state series: from members
    }
    health = snapshot.metrics.cluster_health
    assert (health.goroutine_count, health.memory_usage_bytes) == (42, 16777216)
    assert health.total_consumers == 3  # groups, not their 6 members
    assert [lag.group_id for lag in snapshot.metrics.consumer_lags] == ["billing", "gone", "lonely"]


@pytest.mark.parametrize(
    ("text", "memory"),
    [
        ("takhin_go_mem_alloc_bytes 5\ntakhin_go_mem_sys_bytes 9\ngo_memstats_alloc_bytes 7\n", 5),
        ("go_memstats_alloc_bytes 7\ntakhin_go_mem_sys_bytes 9\n", 7),
        ("takhin_go_mem_sys_bytes 9\ngo_memstats_sys_bytes 11\n", 9),  # no Alloc gauge
        ("go_memstats_sys_bytes 11\n", 11),
        ("go_goroutines 3\n", 0),
    ],
)
def test_memory_is_the_heap_in_use(text: str, memory: int) -> None:
    samples = parse_exposition(text, READ_SAMPLES)
    health = compute_snapshot(None, Scrape(samples, 0.0, WALL)).metrics.cluster_health
    assert health.memory_usage_bytes == memory


# --- columns lined up by position, or by labels ---

TP = "takhin_produce_messages_total"


def exposition(values: Mapping[str, float], *, reverse: bool = False) -> str:
    lines = [f'{TP}{{partition="0",topic="{topic}"}} {value}' for topic, value in values.items()]
    return "# TYPE takhin_produce_messages_total counter\n" + "\n".join(
        reversed(lines) if reverse else lines
    )


def test_the_same_series_in_another_order_are_the_same_series() -> None:
    scanner = ExpositionScanner(READ_SAMPLES)
    before = Scrape(scanner.scan(exposition({"a": 10, "b": 20, "c": 30})), 0.0, WALL)
    after = Scrape(
        scanner.scan(exposition({"a": 15, "b": 5, "c": 90, "d": 4}, reverse=True)), 2.0, WALL
    )
    assert after.samples[TP].keyset is not before.samples[TP].keyset
    rates = {t.name: t.produce_rate for t in compute_snapshot(before, after).metrics.topic_stats}
    # a: +5; b: reset, counted 5 since; c: +60; d: new, counted 4
    assert rates == {"a": 2.5, "b": 2.5, "c": 30.0, "d": 2.0}


@settings(max_examples=100, deadline=None)
@given(
    before=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 1000), min_size=1),
    after=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 1000), min_size=1),
)
def test_lined_up_and_looked_up_windows_agree(
    before: dict[str, int], after: dict[str, int]
) -> None:
    scanner = ExpositionScanner(READ_SAMPLES)
    first = Scrape(scanner.scan(exposition(before)), 0.0, WALL)
    second = Scrape(scanner.scan(exposition(after)), 4.0, WALL)
    # the same samples in fresh columns (no shared keys): every series looked up
    fresh = Scrape({TP: Series.of(second.samples[TP].to_dict())}, 4.0, WALL)
    shared = compute_snapshot(first, second).metrics
    looked_up = compute_snapshot(first, fresh).metrics
    assert shared.topic_stats == looked_up.topic_stats
    assert shared.throughput == looked_up.throughput
    growth = [v - before[k] if k in before and v >= before[k] else v for k, v in after.items()]
    expected = sum(growth) / 4.0
    assert shared.throughput.produce_rate == pytest.approx(expected)
