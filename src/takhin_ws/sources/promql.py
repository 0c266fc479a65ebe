"""The arithmetic of Prometheus counters and histograms, as PromQL does it (pure).

Two functions carry every number the ``prometheus`` source derives from a scrape:

- :func:`counter_increase`: how much a counter grew between two scrapes, counting a
  reset (a value lower than the previous one: the process restarted) as growth from
  zero, the way PromQL's ``increase``/``rate`` do.
- :func:`histogram_quantile`: the φ-quantile of the observations held by a set of
  cumulative histogram buckets, with the algorithm of PromQL's ``histogram_quantile``
  (``bucketQuantile`` in ``promql/quantile.go``): linear interpolation inside the bucket
  holding the rank, the upper bound of the last finite bucket for a rank in ``+Inf``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = [
    "QUANTILES",
    "counter_increase",
    "counter_increases",
    "histogram_quantile",
    "merge_buckets",
]

#: The quantiles the metrics message carries (``p50``, ``p95``, ``p99``).
QUANTILES: Final = (0.5, 0.95, 0.99)
_INF: Final = math.inf


def counter_increase(previous: float | None, current: float) -> float:
    """Growth of a counter from *previous* to *current*.

    A counter only goes up; a lower value means it was reset (its process restarted)
    and has counted *current* since, so the increase is *current*. A series seen for
    the first time (*previous* is ``None``) was created since the last scrape and has
    counted *current* since its creation. Non-finite values count as no growth.
    """
    if not math.isfinite(current) or current < 0:
        return 0.0
    if previous is None or not math.isfinite(previous) or current < previous:
        return current
    return current - previous


def counter_increases(
    previous: Sequence[float | None] | None, current: Sequence[float]
) -> list[float]:
    """:func:`counter_increase` of each ``(previous[i], current[i])`` pair, in one pass
    (*previous* ``None``: every series is new). The scrape of a large broker holds
    tens of thousands of counters, hence the inlined comparisons."""
    if previous is None:
        return [c if 0 <= c < _INF else 0.0 for c in current]
    if len(previous) != len(current):
        raise ValueError(f"{len(previous)} previous values for {len(current)} current ones")
    return [
        (c if p is None or not -_INF < p <= c else c - p) if 0 <= c < _INF else 0.0
        for p, c in zip(previous, current, strict=True)
    ]


def merge_buckets(buckets: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sum cumulative counts of buckets with the same upper bound (``sum by (le)``),
    sorted by upper bound."""
    merged: dict[float, float] = {}
    for upper, count in buckets:
        if math.isnan(upper) or not math.isfinite(count):
            continue
        merged[upper] = merged.get(upper, 0.0) + count
    return sorted(merged.items())


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The *q*-quantile (0 <= q <= 1) of cumulative *buckets* ``(upper_bound, count)``.

    Follows PromQL's ``histogram_quantile`` step by step: buckets are sorted and
    merged by upper bound, counts forced monotonic, the rank ``q * total`` located in
    the first bucket whose cumulative count reaches it, and the result interpolated
    linearly between that bucket's lower and upper bounds (the lower bound of the
    first bucket is 0 unless its upper bound is <= 0). A rank in the ``+Inf`` bucket
    yields the upper bound of the last finite bucket.

    Where PromQL answers NaN (no observations, no ``+Inf`` bucket, fewer than two
    buckets, the 0-quantile when the first bucket is empty), this returns ``0.0``:
    the wire format carries numbers, and 2.9 clients read 0 as "nothing measured".
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    sorted_buckets = merge_buckets(buckets)
    if len(sorted_buckets) < 2 or sorted_buckets[-1][0] != math.inf:
        return 0.0
    # Force monotonic counts (PromQL's ensureMonotonic): per-series deltas of buckets
    # scraped a few microseconds apart, or a reset in one series, can break it.
    monotonic: list[tuple[float, float]] = []
    highest = 0.0
    for upper, count in sorted_buckets:
        highest = max(highest, count)
        monotonic.append((upper, highest))
    total = monotonic[-1][1]
    if total <= 0:
        return 0.0
    rank = q * total
    index = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    upper, count = monotonic[index]
    if index == 0 and upper <= 0:
        return upper
    if count == 0:  # rank 0 in an empty first bucket: 0/0, PromQL's NaN
        return 0.0
    lower = 0.0
    if index > 0:
        lower, below = monotonic[index - 1]
        count -= below
        rank -= below
    return lower + (upper - lower) * (rank / count)
