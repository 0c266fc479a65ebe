"""The ``metrics`` message from two scrapes of a Takhin broker (pure).

:func:`compute_snapshot` derives a :class:`~takhin_ws.Snapshot` from the current scrape
and the previous one:

- rates are counter increases (:func:`~takhin_ws.sources.promql.counter_increases`,
  resets handled) over the real time elapsed between the two scrapes;
- latency quantiles come from the increase of each histogram bucket over that same
  window, summed by ``le``, through PromQL's ``histogram_quantile`` algorithm;
- totals, lag and cluster health come from gauges of the latest scrape.

The samples are the columns of :mod:`~takhin_ws.sources.prometheus.series`, read through a
:class:`~.window.Window` of the two scrapes (:mod:`~takhin_ws.sources.prometheus.window`:
increases, rates, quantiles, and what depends on labels only, computed once for as
long as the series stay the same).

The metric names and labels are those of Takhin 2.9 (``takhin_*``); a family the broker
does not expose counts as zero. ``docs/metrics.md`` defines every field.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Final

from ...core.metrics.snapshot import GroupInfo, Snapshot
from ...wire.messages import (
    GROUP_STATES,
    ClusterHealth,
    ConsumerLag,
    GroupState,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicLag,
    TopicStats,
)
from .series import Series
from .window import (
    Scrape,
    Window,
    lag_layout,
    position_of_partition,
    sum_by_topic,
    topic_partitions,
    whole,
)

__all__ = ["READ_SAMPLES", "STATE_CODES", "Scrape", "compute_snapshot", "group_state"]

_INF: Final = math.inf

#: Takhin's state gauge encodes the state as a number (facts sheet).
STATE_CODES: Final[Mapping[int, GroupState]] = {
    0: "Dead",
    1: "Empty",
    2: "PreparingRebalance",
    3: "CompletingRebalance",
    4: "Stable",
}
_STATE_CODE_OF: Final = {state: code for code, state in STATE_CODES.items()}

PRODUCED: Final = "takhin_produce_messages_total"
FETCHED: Final = "takhin_fetch_messages_total"
BYTES_IN: Final = "takhin_produce_bytes_total"
BYTES_OUT: Final = "takhin_fetch_bytes_total"
PRODUCE_LATENCY: Final = "takhin_produce_latency_seconds"
FETCH_LATENCY: Final = "takhin_fetch_latency_seconds"
CONNECTIONS: Final = "takhin_connections_active"
DISK: Final = "takhin_storage_disk_usage_bytes"
LOG_END: Final = "takhin_storage_log_end_offset"
MEMBERS: Final = "takhin_consumer_group_members"
STATE: Final = "takhin_consumer_group_state"
LAG: Final = "takhin_consumer_group_lag_offsets"
#: Go runtime gauges: Takhin's own first, the Go client's standard ones as a fallback.
GOROUTINES: Final = ("takhin_go_goroutines", "go_goroutines")
#: Heap bytes in use (Go's ``MemStats.Alloc``, what the 2.9 console reports); the bytes
#: obtained from the OS (``MemStats.Sys``) only from a broker that exposes no Alloc gauge.
MEMORY: Final = (
    "takhin_go_mem_alloc_bytes",
    "go_memstats_alloc_bytes",
    "takhin_go_mem_sys_bytes",
    "go_memstats_sys_bytes",
)

#: The samples this source reads; the scanner skips every other family.
READ_SAMPLES: Final = frozenset(
    {
        PRODUCED,
        FETCHED,
        BYTES_IN,
        BYTES_OUT,
        PRODUCE_LATENCY + "_bucket",
        FETCH_LATENCY + "_bucket",
        CONNECTIONS,
        DISK,
        LOG_END,
        MEMBERS,
        STATE,
        LAG,
        *GOROUTINES,
        *MEMORY,
    }
)


def _topics(window: Window) -> list[TopicStats]:
    log_end = window.series(LOG_END)
    disk = window.series(DISK)

    def partitions_of(*families: Series) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for family in families:
            for topic, partitions in family.keyset.derive(topic_partitions).items():
                out.setdefault(topic, set()).update(partitions)
        return out

    # The storage gauges say which topics exist (counters of a deleted topic may
    # linger in the broker's registry); without them, the traffic counters do.
    partitions = partitions_of(log_end, disk) if (log_end or disk) else {}
    if not partitions:
        partitions = partitions_of(window.series(PRODUCED), window.series(FETCHED))
    messages = sum_by_topic(log_end if log_end else window.series(PRODUCED))
    bytes_ = sum_by_topic(disk)
    produce_rates = window.rates_by_topic(PRODUCED)
    fetch_rates = window.rates_by_topic(FETCHED)
    return [
        TopicStats(
            name=topic,
            partitions=len(partitions[topic]),
            total_messages=whole(messages.get(topic, 0.0)),
            total_bytes=whole(bytes_.get(topic, 0.0)),
            produce_rate=produce_rates.get(topic, 0.0),
            fetch_rate=fetch_rates.get(topic, 0.0),
        )
        for topic in sorted(partitions)
    ]


def group_state(series: Iterable[tuple[str | None, float]]) -> GroupState | None:
    """The state of one group from its ``takhin_consumer_group_state`` series,
    given as ``(state label, value)`` pairs.

    Two encodings are understood: a state set (one series per state, 1 for the
    current one, 0 for the others) and Takhin's coded gauge (the value is the state
    code 0=Dead 1=Empty 2=PreparingRebalance 3=CompletingRebalance 4=Stable, the
    label naming it too). The current series is the only non-zero one; its state
    label wins when it names a state, else its value is decoded. All zero: Dead (code
    0). Several non-zero series (stale coded series left behind): the one whose value
    is its own label's code, the most advanced state if several are.
    """
    pairs = [(label, value) for label, value in series if math.isfinite(value)]
    if not pairs:
        return None
    nonzero = [(label, value) for label, value in pairs if value != 0]
    if not nonzero:
        return "Dead"
    if len(nonzero) == 1:
        label, value = nonzero[0]
        if label in GROUP_STATES:
            return label  # type: ignore[return-value]
        return STATE_CODES.get(int(value)) if value == int(value) else None
    consistent = [
        _STATE_CODE_OF[label]
        for label, value in nonzero
        if label in _STATE_CODE_OF and value == _STATE_CODE_OF[label]
    ]
    if consistent:
        return STATE_CODES[max(consistent)]
    codes = [
        int(value) for _, value in nonzero if value == int(value) and int(value) in STATE_CODES
    ]
    return STATE_CODES[max(codes)] if codes else None


def _groups(window: Window) -> tuple[list[ConsumerLag], dict[str, GroupInfo]]:
    members: dict[str, int] = defaultdict(int)
    series = window.series(MEMBERS)
    for group, value in zip(series.keyset.column("group_id"), series.values, strict=True):
        if group is not None:
            members[group] += whole(value)
    states: dict[str, list[tuple[str | None, float]]] = defaultdict(list)
    series = window.series(STATE)
    for group, label, value in zip(
        series.keyset.column("group_id"), series.keyset.column("state"), series.values, strict=True
    ):
        if group is not None:
            states[group].append((label, value))
    lag = window.series(LAG)
    layout = lag.keyset.derive(lag_layout)
    lags = lag.values
    log_end = window.series(LOG_END)
    log_end_at = log_end.keyset.derive(position_of_partition)
    ends = log_end.values
    groups: dict[str, GroupInfo] = {}
    consumer_lags: list[ConsumerLag] = []
    for group in sorted(set(members) | set(states) | set(layout)):
        count = members.get(group, 0)
        state = group_state(states.get(group, ()))
        if state is None:
            state = "Stable" if count > 0 else "Empty"
        groups[group] = GroupInfo(state=state, members=count)
        topic_lags: list[TopicLag] = []
        for topic, partitions in layout.get(group, ()):
            partition_lags = []
            total = 0
            for partition, position in partitions:
                value = lags[position]
                behind = int(value) if 0 < value < _INF else 0  # negative, NaN: 0
                where = log_end_at.get((topic, partition))
                value = 0 if where is None else ends[where]
                end = int(value) if -_INF < value < _INF else 0
                partition_lags.append(
                    PartitionLag(
                        partition=partition,
                        current_offset=end - behind if end > behind else 0,
                        log_end_offset=end,
                        lag=behind,
                    )
                )
                total += behind
            topic_lags.append(
                TopicLag(topic=topic, total_lag=total, partition_lags=tuple(partition_lags))
            )
        consumer_lags.append(
            ConsumerLag(
                group_id=group,
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=tuple(topic_lags),
            )
        )
    return consumer_lags, groups


def compute_snapshot(previous: Scrape | None, current: Scrape) -> Snapshot:
    """The snapshot described by *current*, with rates and quantiles over the window
    since *previous* (``None``: the first scrape, so rates and quantiles are 0)."""
    window = Window(previous, current)
    produce_p50, produce_p95, produce_p99 = window.quantiles(PRODUCE_LATENCY)
    fetch_p50, fetch_p95, fetch_p99 = window.quantiles(FETCH_LATENCY)
    topics = _topics(window)
    consumer_lags, groups = _groups(window)
    metrics = MonitoringMetrics(
        throughput=Throughput(
            produce_rate=window.rate(PRODUCED),
            fetch_rate=window.rate(FETCHED),
            produce_bytes=window.rate(BYTES_IN),
            fetch_bytes=window.rate(BYTES_OUT),
        ),
        latency=Latency(
            produce_p50=produce_p50,
            produce_p95=produce_p95,
            produce_p99=produce_p99,
            fetch_p50=fetch_p50,
            fetch_p95=fetch_p95,
            fetch_p99=fetch_p99,
        ),
        topic_stats=tuple(topics),
        consumer_lags=tuple(consumer_lags),
        cluster_health=ClusterHealth(
            active_connections=whole(window.gauge(CONNECTIONS)),
            total_topics=len(topics),
            total_partitions=sum(t.partitions for t in topics),
            # the number of consumer groups, as the 2.9 console counts it
            total_consumers=len(groups),
            disk_usage_bytes=whole(window.gauge(DISK)),
            memory_usage_bytes=whole(window.gauge(*MEMORY)),
            goroutine_count=whole(window.gauge(*GOROUTINES)),
        ),
        timestamp=int(current.wall),
    )
    return Snapshot(metrics=metrics, groups=groups)
