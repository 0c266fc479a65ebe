"""The PromQL arithmetic: counter increases (resets) and histogram_quantile, on their own."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from takhin_ws.sources.promql import (
    QUANTILES,
    counter_increase,
    counter_increases,
    histogram_quantile,
    merge_buckets,
)

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INF = math.inf
NAN = math.nan


def test_quantiles_of_the_message() -> None:
    assert QUANTILES == (0.5, 0.95, 0.99)


# --- counters ---


def test_counter_increase() -> None:
    assert counter_increase(None, 5.0) == 5.0  # a series born since the last scrape
    assert counter_increase(10.0, 25.0) == 15.0
    assert counter_increase(10.0, 10.0) == 0.0
    assert counter_increase(1000.0, 30.0) == 30.0  # reset: counted from zero since
    assert counter_increase(10.0, NAN) == 0.0
    assert counter_increase(NAN, 7.0) == 7.0
    assert counter_increase(10.0, INF) == 0.0
    assert counter_increase(INF, 7.0) == 7.0
    assert counter_increase(-INF, 7.0) == 7.0
    assert counter_increases([-INF], [7.0]) == [7.0]  # the inlined comparison too


def test_fractional_counters() -> None:
    # counters of seconds or bytes/1024 are fractions: below 1 is growth like any other
    assert counter_increase(None, 0.5) == 0.5
    assert counter_increase(0.25, 0.75) == 0.5
    assert counter_increase(0.75, 0.25) == 0.25  # a reset to a fraction
    assert counter_increase(0.0, 0.001) == 0.001
    assert counter_increases([0.25, None], [0.75, 0.5]) == [0.5, 0.5]


def test_negative_counters_are_no_growth() -> None:
    # a counter never goes below zero: a negative value is a broken series
    assert counter_increase(None, -3.0) == 0.0
    assert counter_increase(2.0, -1.0) == 0.0
    assert counter_increase(-5.0, -3.0) == 0.0
    assert counter_increase(-0.0, 0.0) == 0.0
    assert counter_increases(None, [-1.0, 0.0, 2.0]) == [0.0, 0.0, 2.0]


counter_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**53), max_value=2**53),
)


@settings(max_examples=300, deadline=None)  # pure arithmetic: no deadline under load
@given(pairs=st.lists(st.tuples(st.none() | counter_values, counter_values), max_size=30))
@example(pairs=[(1.0, INF), (None, INF), (None, -INF), (2.0, NAN)])  # every run checks these
def test_counter_increases_is_counter_increase_of_each_pair(
    pairs: list[tuple[float | None, float]],
) -> None:
    previous = [p for p, _ in pairs]
    current = [c for _, c in pairs]
    expected = [counter_increase(p, c) for p, c in pairs]
    assert counter_increases(previous, current) == expected
    assert counter_increases(None, current) == [counter_increase(None, c) for c in current]


def test_counter_increases_needs_aligned_columns() -> None:
    with pytest.raises(ValueError, match="previous values"):
        counter_increases([1.0], [1.0, 2.0])


# --- histogram_quantile ---

# Results of Prometheus' own tests for histogram_quantile (promql testdata
# histograms.test), restated as cumulative buckets.
POSITIVE = [(0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 120.0)]
NEGATIVE = [(-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 30.0)]
AGGREGATED = [(0.1, 10.0), (0.2, 19.0), (INF, 25.0)]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.0, POSITIVE, 0.0),
        (0.2, POSITIVE, 0.048),
        (0.5, POSITIVE, 0.15),
        (0.8, POSITIVE, 0.72),
        (1.0, POSITIVE, 1.0),
        (0.0, NEGATIVE, -0.2),
        (0.2, NEGATIVE, -0.2),
        (0.5, NEGATIVE, -0.15),
        (0.8, NEGATIVE, 0.3),
        (1.0, NEGATIVE, 0.3),
        (0.3, AGGREGATED, 0.075),
        (0.5, AGGREGATED, 0.1277777777777778),
    ],
)
def test_histogram_quantile_matches_promql(
    q: float, buckets: list[tuple[float, float]], expected: float
) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected)
    assert histogram_quantile(q, list(reversed(buckets))) == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    # no observations, no +Inf bucket, a single bucket: PromQL says NaN, we say 0
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) == 0.0
    assert histogram_quantile(0.5, [(0.1, 3.0), (1.0, 5.0)]) == 0.0
    assert histogram_quantile(0.5, [(INF, 5.0)]) == 0.0
    assert histogram_quantile(0.5, []) == 0.0
    # everything above the last finite bound: that bound
    assert histogram_quantile(0.5, [(0.1, 0.0), (5.0, 0.0), (INF, 9.0)]) == 5.0
    # buckets of the same bound are summed (sum by le), counts forced monotonic
    assert merge_buckets([(0.1, 1.0), (INF, 2.0), (0.1, 3.0)]) == [(0.1, 4.0), (INF, 2.0)]
    assert histogram_quantile(0.5, [(0.1, 4.0), (0.2, 3.0), (INF, 4.0)]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"quantile must be within \[0, 1\], got 1.5"):
        histogram_quantile(1.5, POSITIVE)
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(-0.1, POSITIVE)


def test_one_finite_bucket_and_inf() -> None:
    buckets = [(0.1, 4.0), (INF, 8.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)  # rank 2 of 4 in (0, .1]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)  # rank 4: the bucket's top
    assert histogram_quantile(0.75, buckets) == 0.1  # in +Inf: the last finite bound
    assert histogram_quantile(1.0, buckets) == 0.1
    assert histogram_quantile(0.0, buckets) == 0.0
    # the first bucket's lower bound is 0 unless its upper bound is <= 0
    assert histogram_quantile(0.25, [(-1.0, 2.0), (INF, 4.0)]) == -1.0
    assert histogram_quantile(0.25, [(0.0, 2.0), (INF, 4.0)]) == 0.0


def test_non_monotonic_buckets_are_made_monotonic() -> None:
    # (0.2, 3) dips below (0.1, 5): PromQL reads it as 5, so rank 5.6 (q 0.7 of 8)
    # is the 0.6th of 3 observations in (0.2, 0.5], not the 2.6th of 5
    buckets = [(0.1, 5.0), (0.2, 3.0), (0.5, 8.0), (INF, 8.0)]
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.2 + 0.3 * 0.6 / 3)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 * 4 / 5)
    # a dip of the +Inf bucket itself: the total is the highest count seen
    assert histogram_quantile(0.5, [(0.1, 2.0), (1.0, 10.0), (INF, 6.0)]) == pytest.approx(
        0.1 + 0.9 * 3 / 8
    )


def test_non_finite_counts_and_nan_bounds_are_left_out() -> None:
    assert merge_buckets([(NAN, 5.0), (0.1, INF), (0.1, 2.0), (INF, NAN), (INF, 3.0)]) == [
        (0.1, 2.0),
        (INF, 3.0),
    ]
    assert merge_buckets([(0.1, -INF), (0.5, 1.0)]) == [(0.5, 1.0)]
    buckets = [(NAN, 100.0), (0.1, 2.0), (0.2, NAN), (0.2, 4.0), (INF, 4.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    # only a NaN bound and +Inf left: fewer than two buckets
    assert histogram_quantile(0.5, [(NAN, 1.0), (INF, 4.0)]) == 0.0


def test_negative_counts_total_no_observation() -> None:
    assert histogram_quantile(0.5, [(0.1, -2.0), (INF, -1.0)]) == 0.0
    assert histogram_quantile(0.5, [(0.1, -2.0), (INF, 0.0)]) == 0.0


@settings(max_examples=300, deadline=None)  # pure arithmetic: no deadline under load
@given(
    observations=st.lists(
        st.floats(min_value=1e-4, max_value=10.0, allow_nan=False), min_size=1, max_size=200
    ),
    q=st.floats(min_value=0.01, max_value=1.0),
)
def test_histogram_quantile_lands_in_the_bucket_of_the_true_quantile(
    observations: list[float], q: float
) -> None:
    bounds = (*BUCKETS, INF)
    buckets = [(upper, float(sum(1 for o in observations if o <= upper))) for upper in bounds]
    estimate = histogram_quantile(q, buckets)
    ordered = sorted(observations)
    true = ordered[max(math.ceil(q * len(ordered)), 1) - 1]
    index = next(i for i, upper in enumerate(bounds) if true <= upper)
    if bounds[index] == INF:
        assert estimate == BUCKETS[-1]
    else:
        lower = bounds[index - 1] if index else 0.0
        assert lower <= estimate <= bounds[index]


def test_a_rank_in_a_first_bucket_bounded_at_zero_is_that_bound() -> None:
    # PromQL answers the first bucket's upper bound as is when it is <= 0, without
    # interpolating: here the zero quantile lands in an empty bucket bounded at 0
    assert histogram_quantile(0.0, [(0.0, 0.0), (1.0, 5.0), (INF, 5.0)]) == 0.0
    assert histogram_quantile(0.5, [(-1.0, 4.0), (1.0, 5.0), (INF, 5.0)]) == -1.0


def test_the_zero_quantile_of_an_empty_first_bucket_is_zero() -> None:
    # rank 0 lands in the first bucket, which holds nothing: PromQL divides 0 by 0
    # (NaN), which the wire says as 0; it used to raise ZeroDivisionError
    for first in (0.1, 2.0):
        assert histogram_quantile(0.0, [(first, 0.0), (5.0, 3.0), (INF, 3.0)]) == 0.0
    # no observations at all is 0 too, even where the first bound is below zero
    assert histogram_quantile(0.5, [(-1.0, 0.0), (INF, 0.0)]) == 0.0
    # a non-empty first bucket still interpolates from its lower bound, 0
    assert histogram_quantile(0.0, [(2.0, 1.0), (5.0, 3.0), (INF, 3.0)]) == 0.0
