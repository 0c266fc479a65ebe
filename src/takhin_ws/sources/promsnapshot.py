"""The ``metrics`` message from two scrapes of a Takhin broker (pure).

:func:`compute_snapshot` derives a :class:`~takhin_ws.Snapshot` from the current scrape
and the previous one:

- rates are counter increases (:func:`~takhin_ws.sources.promql.counter_increases`,
  resets handled) over the real time elapsed between the two scrapes;
- latency quantiles come from the increase of each histogram bucket over that same
  window, summed by ``le``, through PromQL's ``histogram_quantile`` algorithm;
- totals, lag and cluster health come from gauges of the latest scrape.

The samples are the columns of :mod:`~takhin_ws.sources.promscan`: when a family's
series are those of the previous scrape (the same :class:`~.promscan.Keys`), the two
scrapes line up by position, and what depends on labels only (the topic of each series,
partitions per topic...) is computed once for as long as the series stay the same.

The metric names and labels are those of Takhin 2.9 (``takhin_*``); a family the broker
does not expose counts as zero. ``docs/metrics.md`` defines every field.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Final, TypeAlias

import attrs

from ..core.snapshot import GroupInfo, Snapshot
from ..wire.messages import (
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
from .promql import QUANTILES, counter_increases, histogram_quantile
from .promscan import EMPTY, Exposition, Keys, Series

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


@attrs.frozen
class Scrape:
    """One scanned scrape and when it was taken (``monotonic`` for rates, ``wall`` for
    the message's timestamp)."""

    samples: Exposition
    monotonic: float
    wall: float


# --- what depends on labels only (memoised per Keys) ---


def _partitions(keys: Keys) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for raw in keys.column("partition"):
        try:
            out.append(int(raw) if raw is not None else None)
        except ValueError:
            out.append(None)
    return tuple(out)


def _topic_partitions(keys: Keys) -> Mapping[str, frozenset[int]]:
    found: dict[str, set[int]] = {}
    for topic, partition in zip(keys.column("topic"), keys.derive(_partitions), strict=True):
        if topic is not None:
            partitions = found.setdefault(topic, set())
            if partition is not None:
                partitions.add(partition)
    return {topic: frozenset(partitions) for topic, partitions in found.items()}


def _position_of_partition(keys: Keys) -> Mapping[tuple[str, int], int]:
    return {
        (topic, partition): position
        for position, (topic, partition) in enumerate(
            zip(keys.column("topic"), keys.derive(_partitions), strict=True)
        )
        if topic is not None and partition is not None
    }


Pick: TypeAlias = Callable[[Sequence[float]], Sequence[float]]


def _pick(positions: Sequence[int]) -> Pick:
    """The values at *positions* of a column, in one C-level call."""
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    return itemgetter(*positions)


def _by(label: str, keys: Keys) -> dict[str, Pick]:
    positions: dict[str, list[int]] = {}
    for position, value in enumerate(keys.column(label)):
        if value is not None:
            positions.setdefault(value, []).append(position)
    return {value: _pick(where) for value, where in positions.items()}


def _by_topic(keys: Keys) -> Mapping[str, Pick]:
    return _by("topic", keys)


def _by_upper_bound(keys: Keys) -> Sequence[tuple[float, Pick]]:
    out = []
    for raw, pick in _by("le", keys).items():
        try:
            out.append((float(raw), pick))  # "+Inf" -> inf
        except ValueError:
            continue
    return out


def _finite_sum(values: Sequence[float]) -> float:
    total = sum(values)
    return total if math.isfinite(total) else sum(v for v in values if math.isfinite(v))


def _sums(picks: Mapping[str, Pick], values: Sequence[float]) -> dict[str, float]:
    """The sum of each group's values (non-finite values left out)."""
    return {key: _finite_sum(pick(values)) for key, pick in picks.items()}


def _lag_layout(keys: Keys) -> Mapping[str, Sequence[tuple[str, Sequence[tuple[int, int]]]]]:
    """Where each group's lag series are: group -> [(topic, [(partition, position)])],
    topics and partitions sorted (a repeated series: the last one)."""
    found: dict[str, dict[str, dict[int, int]]] = {}
    for position, (group, topic, partition) in enumerate(
        zip(keys.column("group_id"), keys.column("topic"), keys.derive(_partitions), strict=True)
    ):
        if group is not None and topic is not None and partition is not None:
            found.setdefault(group, {}).setdefault(topic, {})[partition] = position
    return {
        group: [(topic, sorted(by_topic[topic].items())) for topic in sorted(by_topic)]
        for group, by_topic in found.items()
    }


def _int(value: float) -> int:
    return int(value) if math.isfinite(value) else 0


class _Window:
    """The two scrapes of one computation and the helpers that read them."""

    def __init__(self, previous: Scrape | None, current: Scrape) -> None:
        self.previous = previous
        self.current = current
        elapsed = current.monotonic - previous.monotonic if previous is not None else 0.0
        self.elapsed = elapsed if math.isfinite(elapsed) and elapsed > 0 else 0.0
        self._increases: dict[str, Sequence[float]] = {}

    def series(self, name: str) -> Series:
        return self.current.samples.get(name, EMPTY)

    def increases(self, name: str) -> Sequence[float]:
        """Counter increase of each series of *name* since the previous scrape, in the
        current series' order (all 0 on the first scrape or when no time has passed)."""
        known = self._increases.get(name)
        if known is None:
            known = self._increases[name] = self._increases_of(name)
        return known

    def _increases_of(self, name: str) -> Sequence[float]:
        now = self.series(name)
        if self.previous is None or self.elapsed == 0.0:
            return [0.0] * len(now)
        before = self.previous.samples.get(name)
        if before is None:
            return counter_increases(None, now.values)
        if before.keyset is now.keyset:
            return counter_increases(before.values, now.values)
        where = before.keyset.index()
        old = before.values
        aligned = [
            None if (i := where.get(labels)) is None else old[i] for labels in now.keyset.labels
        ]
        return counter_increases(aligned, now.values)

    def rate(self, name: str) -> float:
        if self.elapsed == 0.0:
            return 0.0
        return sum(self.increases(name)) / self.elapsed

    def rates_by_topic(self, name: str) -> dict[str, float]:
        if self.elapsed == 0.0:
            return {}
        by_topic = self.series(name).keyset.derive(_by_topic)
        increases = self.increases(name)
        return {topic: sum(pick(increases)) / self.elapsed for topic, pick in by_topic.items()}

    def gauge(self, *names: str) -> float:
        """The sum of the first of *names* that has series (non-finite values skipped)."""
        for name in names:
            series = self.current.samples.get(name)
            if series:
                return _finite_sum(series.values)
        return 0.0

    def quantiles(self, histogram: str) -> tuple[float, float, float]:
        """p50/p95/p99 of the observations made between the two scrapes, all series
        summed by ``le`` (``histogram_quantile(q, sum by (le) (increase(h_bucket)))``)."""
        name = histogram + "_bucket"
        if self.previous is None or self.elapsed == 0.0:
            return 0.0, 0.0, 0.0
        increases = self.increases(name)
        buckets = [
            (upper, sum(pick(increases)))
            for upper, pick in self.series(name).keyset.derive(_by_upper_bound)
        ]
        p50, p95, p99 = (histogram_quantile(q, buckets) for q in QUANTILES)
        return p50, p95, p99


def _sum_by_topic(series: Series) -> dict[str, float]:
    return _sums(series.keyset.derive(_by_topic), series.values)


def _topics(window: _Window) -> list[TopicStats]:
    log_end = window.series(LOG_END)
    disk = window.series(DISK)

    def partitions_of(*families: Series) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for family in families:
            for topic, partitions in family.keyset.derive(_topic_partitions).items():
                out.setdefault(topic, set()).update(partitions)
        return out

    # The storage gauges say which topics exist (counters of a deleted topic may
    # linger in the broker's registry); without them, the traffic counters do.
    partitions = partitions_of(log_end, disk) if (log_end or disk) else {}
    if not partitions:
        partitions = partitions_of(window.series(PRODUCED), window.series(FETCHED))
    messages = _sum_by_topic(log_end if log_end else window.series(PRODUCED))
    bytes_ = _sum_by_topic(disk)
    produce_rates = window.rates_by_topic(PRODUCED)
    fetch_rates = window.rates_by_topic(FETCHED)
    return [
        TopicStats(
            name=topic,
            partitions=len(partitions[topic]),
            total_messages=_int(messages.get(topic, 0.0)),
            total_bytes=_int(bytes_.get(topic, 0.0)),
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


def _groups(window: _Window) -> tuple[list[ConsumerLag], dict[str, GroupInfo]]:
    members: dict[str, int] = defaultdict(int)
    series = window.series(MEMBERS)
    for group, value in zip(series.keyset.column("group_id"), series.values, strict=True):
        if group is not None:
            members[group] += _int(value)
    states: dict[str, list[tuple[str | None, float]]] = defaultdict(list)
    series = window.series(STATE)
    for group, label, value in zip(
        series.keyset.column("group_id"), series.keyset.column("state"), series.values, strict=True
    ):
        if group is not None:
            states[group].append((label, value))
    lag = window.series(LAG)
    layout = lag.keyset.derive(_lag_layout)
    lags = lag.values
    log_end = window.series(LOG_END)
    log_end_at = log_end.keyset.derive(_position_of_partition)
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
    window = _Window(previous, current)
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
            active_connections=_int(window.gauge(CONNECTIONS)),
            total_topics=len(topics),
            total_partitions=sum(t.partitions for t in topics),
            # the number of consumer groups, as the 2.9 console counts it
            total_consumers=len(groups),
            disk_usage_bytes=_int(window.gauge(DISK)),
            memory_usage_bytes=_int(window.gauge(*MEMORY)),
            goroutine_count=_int(window.gauge(*GOROUTINES)),
        ),
        timestamp=int(current.wall),
    )
    return Snapshot(metrics=metrics, groups=groups)
