"""The (time, log end offset) timeline of one partition: interpolation against a brute
force reference, thinning, plateaus, restarts, jumps and clocks that step back."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws.core.lag.timeline import DEFAULT_CAPACITY, MIN_CAPACITY, OffsetTimeline

#: Seconds between two ticks (a gap is several), offsets added per tick (a jump is big).
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=600.0, allow_nan=False),
        st.one_of(st.integers(0, 50), st.integers(0, 10**12)),
    ),
    min_size=1,
    max_size=80,
)


def curve(
    pairs: list[tuple[float, int]], start: float = 1000.0, first: int = 5
) -> list[tuple[float, int]]:
    """Samples from (seconds later, messages added) steps: times and offsets never fall."""
    out = []
    t, offset = start, first
    for dt, added in pairs:
        t += dt
        offset += added
        out.append((t, offset))
    return out


def reference(samples: list[tuple[float, int]], committed: int) -> float | None:
    """sup {t : L(t) <= committed} on the straight lines through every sample; below the
    oldest, back from it at the mean rate over the samples (``None`` without a rate)."""
    (t_first, o_first), (t_last, o_last) = samples[0], samples[-1]
    if committed < o_first:
        if o_last <= o_first or t_last <= t_first:
            return None
        return t_first - (o_first - committed) * (t_last - t_first) / (o_last - o_first)
    best = samples[0][0]
    for (t0, o0), (t1, o1) in itertools.pairwise(samples):
        if o1 <= committed:
            best = t1
        elif o0 <= committed:
            best = t0 + (t1 - t0) * (committed - o0) / (o1 - o0)
    return best


def filled(samples: list[tuple[float, int]], capacity: int = 10**6) -> OffsetTimeline:
    timeline = OffsetTimeline(capacity)
    for t, offset in samples:
        timeline.add(t, offset)
    return timeline


@given(steps, st.data())
def test_interpolation_matches_the_reference_without_thinning(
    pairs: list[tuple[float, int]], data: st.DataObject
) -> None:
    samples = curve(pairs)
    timeline = filled(samples)
    low, high = samples[0][1], samples[-1][1]
    committed = data.draw(st.integers(low - 3, high + 3))
    expected = reference(samples, committed)
    got = timeline.time_at(committed)
    if expected is None:
        assert got is None
        assert timeline.lag_seconds(committed) is None
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)
        lag = timeline.lag_seconds(committed)
        assert lag is not None
        assert lag >= 0.0
        if committed >= low:  # bracketed: within the samples' span
            assert lag <= samples[-1][0] - samples[0][0] + 1e-6
        if committed >= high:
            assert lag == 0.0


@given(steps, st.integers(0, 10**12), st.integers(0, 10**12))
def test_the_moment_passed_never_falls_as_the_committed_offset_rises(
    pairs: list[tuple[float, int]], a: int, b: int
) -> None:
    timeline = filled(curve(pairs), capacity=MIN_CAPACITY + 2)
    low, high = sorted((a + 5, b + 5))
    t_low, t_high = timeline.time_at(low), timeline.time_at(high)
    if t_low is not None:
        assert t_high is not None
        assert t_low <= t_high


@given(steps, st.integers(MIN_CAPACITY, 16), st.data())
def test_thinned_answers_stay_between_the_kept_samples_around_the_offset(
    pairs: list[tuple[float, int]], capacity: int, data: st.DataObject
) -> None:
    samples = curve(pairs)
    full = filled(samples)
    thin = filled(samples, capacity)
    kept = thin.samples()
    assert len(kept) <= capacity
    assert kept[0] == full.samples()[0]  # the oldest stays: the reach never shrinks
    assert kept[-1] == full.samples()[-1]
    committed = data.draw(st.integers(samples[0][1], samples[-1][1]))
    got, truth = thin.time_at(committed), full.time_at(committed)
    assert got is not None
    assert truth is not None
    below = max(t for t, o in kept if o <= committed)
    above = min((t for t, o in kept if o > committed), default=kept[-1][0])
    assert below - 1e-6 <= got <= above + 1e-6
    assert below - 1e-6 <= truth <= above + 1e-6


@given(
    st.floats(min_value=0.1, max_value=5.0),
    st.integers(1, 5000),
    st.integers(DEFAULT_CAPACITY + 1, 2000),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_a_steady_producer_is_exact_however_thin_the_table(
    interval: float, rate: int, ticks: int, where: float
) -> None:
    timeline = OffsetTimeline()
    start = 1_700_000_000.0
    for k in range(ticks):
        timeline.add(start + k * interval, 100 + k * rate)
    assert len(timeline) <= DEFAULT_CAPACITY
    now = start + (ticks - 1) * interval
    committed = 100 + int(where * (ticks - 1) * rate)
    truth = now - (start + (committed - 100) / rate * interval)
    lag = timeline.lag_seconds(committed)
    assert lag == pytest.approx(truth, abs=1e-6 * max(1.0, now - start))


def test_an_idle_producer_is_one_plateau_and_its_end_is_the_moment_passed() -> None:
    timeline = filled([(0.0, 100), (2.0, 100), (4.0, 100), (6.0, 100), (8.0, 150)])
    assert timeline.samples() == [(0.0, 100), (6.0, 100), (8.0, 150)]
    # offset 100 was the log end until 6 s: a consumer there has been behind since
    assert timeline.time_at(100) == 6.0
    assert timeline.lag_seconds(100) == 2.0
    assert timeline.time_at(125) == 7.0
    assert timeline.lag_seconds(150) == 0.0
    # behind since before the first sample: back from it at the mean rate, 50 in 8 s
    assert timeline.lag_seconds(99) == pytest.approx(8.0 + 8 / 50)


def test_before_the_oldest_sample_the_mean_rate_is_extrapolated_or_nothing_is_known() -> None:
    timeline = filled([(10.0, 1000), (20.0, 2000), (30.0, 2500)])  # 1,500 in 20 s
    assert timeline.time_at(250) == pytest.approx(10.0 - 750 * 20 / 1500)
    assert timeline.lag_seconds(250) == pytest.approx(30.0)
    assert filled([(10.0, 1000)]).lag_seconds(5) is None  # one sample: no rate
    assert filled([(10.0, 1000), (20.0, 1000)]).lag_seconds(5) is None  # an idle log


def test_a_log_that_goes_back_starts_the_table_over() -> None:
    timeline = filled([(0.0, 100), (2.0, 200), (4.0, 300)])
    timeline.add(6.0, 50)  # the topic was recreated, or the broker lost data
    assert timeline.samples() == [(6.0, 50)]
    assert timeline.time_at(40) is None  # one sample: nothing to go back with
    timeline.add(8.0, 70)
    assert timeline.time_at(60) == 7.0


def test_a_clock_that_steps_back_counts_as_no_time() -> None:
    timeline = filled([(10.0, 100), (12.0, 200)])
    timeline.add(11.0, 300)
    assert timeline.samples()[-1] == (12.0, 300)
    assert timeline.lag_seconds(200) == 0.0  # passed at 12 s, and it is 12 s


def test_empty_and_bounds() -> None:
    timeline = OffsetTimeline(MIN_CAPACITY)
    assert timeline.newest is None
    assert timeline.time_at(0) is None
    timeline.add(1.0, 10)
    assert timeline.samples() == [(1.0, 10)]
    assert timeline.lag_seconds(10) == 0.0
    assert timeline.lag_seconds(9) is None  # before the only sample
    with pytest.raises(ValueError, match="capacity must be >= 4"):
        OffsetTimeline(MIN_CAPACITY - 1)


def test_thinning_keeps_the_newest_half_at_tick_resolution() -> None:
    timeline = OffsetTimeline(8)
    for k in range(100):
        timeline.add(float(k), k * 10)
    times = [t for t, _ in timeline.samples()]
    assert times[0] == 0.0
    assert times[-4:] == [96.0, 97.0, 98.0, 99.0]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps, reverse=True)  # older samples are further apart
    assert not math.isnan(sum(times))
