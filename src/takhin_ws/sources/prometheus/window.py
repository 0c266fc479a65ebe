"""The window between two scrapes, and what depends on labels only (pure).

:class:`Window` reads a :class:`Scrape` and the one before it: counter increases
(:func:`~takhin_ws.sources.promql.counter_increases`, resets handled) and rates over
the real time elapsed between them, gauges of the latest scrape, histogram quantiles
of the observations made in between. When a family's series are those of the previous
scrape (the same :class:`~.series.Keys`), the two line up by position; otherwise
they are matched by labels.

The helpers below it compute what depends on labels only (the topic and partition of
each series, where each group's lag series are...) once per :class:`~.series.Keys`
(:meth:`~.series.Keys.derive`), so as long as the series stay the same a tick pays
for none of it. :mod:`takhin_ws.sources.prometheus.snapshot` builds the snapshot from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import TypeAlias

import attrs

from ..promql import QUANTILES, counter_increases, histogram_quantile
from .series import EMPTY, Exposition, Keys, Series

__all__ = [
    "Scrape",
    "Window",
    "lag_layout",
    "position_of_partition",
    "sum_by_topic",
    "topic_partitions",
    "whole",
]


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


def topic_partitions(keys: Keys) -> Mapping[str, frozenset[int]]:
    found: dict[str, set[int]] = {}
    for topic, partition in zip(keys.column("topic"), keys.derive(_partitions), strict=True):
        if topic is not None:
            partitions = found.setdefault(topic, set())
            if partition is not None:
                partitions.add(partition)
    return {topic: frozenset(partitions) for topic, partitions in found.items()}


def position_of_partition(keys: Keys) -> Mapping[tuple[str, int], int]:
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


def lag_layout(keys: Keys) -> Mapping[str, Sequence[tuple[str, Sequence[tuple[int, int]]]]]:
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


def whole(value: float) -> int:
    """*value* as an integer; 0 for NaN and the infinities."""
    return int(value) if math.isfinite(value) else 0


class Window:
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


def sum_by_topic(series: Series) -> dict[str, float]:
    return _sums(series.keyset.derive(_by_topic), series.values)
