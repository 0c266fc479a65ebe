"""A partition's status over the window: each rule by example, and the O(1) window
against a model that keeps every observation and reads the rules literally."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws.core.lag.status import SEVERITY, PartitionWindow, worst
from takhin_ws.wire.lag import LAG_STATUSES, LagStatus

W = 4


def run(
    observations: list[tuple[int, int]], *, window: int = W, members: int | None = 2
) -> LagStatus:
    state = PartitionWindow(window)
    for tick, (committed, lag) in enumerate(observations):
        state.observe(committed, lag, tick)
    return state.status(members)


def model(observations: list[tuple[int, int]], window: int, members: int | None) -> LagStatus:
    """The rules of docs/metrics.md, read literally over the last *window* observations."""
    seen = observations[-window:]
    steps = list(itertools.pairwise(seen))
    lag = seen[-1][1]
    if any(after[0] < before[0] for before, after in steps):
        return "REWOUND"
    if members == 0 and lag > 0:
        return "STOPPED"
    if len(observations) < window:
        return "UNKNOWN"
    if any(lag_ <= 0 for _, lag_ in seen):
        return "OK"
    if all(after[0] == before[0] for before, after in steps):
        return "STALLED"
    if all(after[1] >= before[1] for before, after in steps) and seen[-1][1] > seen[0][1]:
        return "LAGGING"
    return "OK"


# --- each rule, by the example docs/metrics.md gives ---


def test_ok_when_the_lag_reached_zero_in_the_window() -> None:
    assert run([(100, 5), (105, 0), (105, 7), (106, 9)]) == "OK"


def test_ok_when_the_lag_is_not_growing() -> None:
    assert run([(100, 50), (140, 40), (180, 45), (220, 30)]) == "OK"


def test_lagging_when_commits_advance_but_the_lag_grows_throughout() -> None:
    assert run([(100, 50), (110, 60), (120, 60), (130, 75)]) == "LAGGING"


def test_stalled_when_the_committed_offset_does_not_move_with_lag() -> None:
    assert run([(100, 50), (100, 60), (100, 70), (100, 80)]) == "STALLED"
    # not moving with no lag is a consumer with nothing to do
    assert run([(100, 0), (100, 0), (100, 0), (100, 0)]) == "OK"


def test_stopped_when_the_group_has_no_members_and_lag() -> None:
    assert run([(100, 50), (100, 60)], members=0) == "STOPPED"
    assert run([(100, 0), (100, 0), (100, 0), (100, 0)], members=0) == "OK"
    # a source that does not say how many members: never STOPPED
    assert run([(100, 50), (100, 60), (100, 70), (100, 80)], members=None) == "STALLED"


def test_rewound_while_a_step_back_is_in_the_window() -> None:
    seen = [(100, 5), (120, 5), (40, 90), (50, 85)]
    assert run(seen) == "REWOUND"
    assert run([*seen, (60, 80)]) == "REWOUND"  # the step back is the window's first
    assert run([*seen, (60, 80), (70, 70)]) == "OK"  # out of the window


def test_unknown_until_the_window_is_full() -> None:
    assert run([(100, 5), (110, 6), (120, 7)]) == "UNKNOWN"


def test_a_missed_tick_starts_the_window_over() -> None:
    state = PartitionWindow(W)
    for tick in range(W):
        state.observe(100, 50, tick)
    assert state.status(1) == "STALLED"
    state.observe(100, 50, W + 3)
    assert state.status(1) == "UNKNOWN"
    assert state.span == 1


def test_reasons_name_the_partition_and_the_numbers() -> None:
    state = PartitionWindow(W)
    for tick, (committed, lag) in enumerate([(100, 5), (120, 5), (40, 90)]):
        state.observe(committed, lag, tick)
    assert state.reason("REWOUND", "orders[2]") == (
        "orders[2]: the committed offset went back from 120 to 40"
    )
    for status in ("OK", "LAGGING", "STALLED", "STOPPED", "UNKNOWN"):
        assert state.reason(status, "orders[2]").startswith("orders[2]: ")
    assert len(LAG_STATUSES) == 6


def test_the_worst_status_wins_and_unknown_counts_least() -> None:
    assert worst([]) == "UNKNOWN"
    assert worst(["OK", "UNKNOWN"]) == "OK"
    assert worst(["OK", "STALLED", "LAGGING"]) == "STALLED"
    assert worst(["STOPPED", "REWOUND"]) == "REWOUND"
    assert sorted(SEVERITY) == sorted(LAG_STATUSES)


def test_a_window_of_one_observation_is_refused() -> None:
    with pytest.raises(ValueError, match="window must be >= 2"):
        PartitionWindow(1)


# --- the window against the model ---

committed_steps = st.one_of(
    st.just(0), st.integers(1, 50), st.integers(-60, -1)
)  # stay, advance, go back
lag_values = st.one_of(st.just(0), st.integers(1, 100))


@given(
    st.integers(2, 8),
    st.lists(st.tuples(committed_steps, lag_values), min_size=1, max_size=40),
    st.one_of(st.none(), st.integers(0, 3)),
)
def test_the_window_agrees_with_the_model_at_every_tick(
    window: int, steps: list[tuple[int, int]], members: int | None
) -> None:
    state = PartitionWindow(window)
    observations: list[tuple[int, int]] = []
    committed = 1000
    for tick, (step, lag) in enumerate(steps):
        committed += step
        observations.append((committed, lag))
        state.observe(committed, lag, tick)
        assert state.status(members) == model(observations, window, members), observations
        assert state.committed == committed
        assert state.oldest_committed() == observations[-window:][0][0]


@given(
    st.integers(2, 6),
    st.lists(st.tuples(committed_steps, lag_values, st.booleans()), min_size=1, max_size=40),
)
def test_after_a_gap_the_window_is_judged_on_what_followed_it(
    window: int, steps: list[tuple[int, int, bool]]
) -> None:
    state = PartitionWindow(window)
    observations: list[tuple[int, int]] = []
    committed, tick = 1000, 0
    for step, lag, skipped in steps:
        if skipped:
            tick += 1  # the partition was not in one snapshot
            observations = []
        committed += step
        observations.append((committed, lag))
        state.observe(committed, lag, tick)
        tick += 1
        assert state.status(1) == model(observations, window, 1)
