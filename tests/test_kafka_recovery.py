"""When the kafka source makes a new client (``sources/kafka/recovery.py``, no I/O)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws.sources.kafka.recovery import RESET_BACKOFF, RESET_BACKOFF_MAX, Recovery

#: One tick: (seconds since the previous one, outcome) where the outcome is "ok",
#: "down" (the cluster did not answer) or "stuck" (it answered; the tick failed anyway).
ticks = st.lists(
    st.tuples(st.floats(0.1, 30.0), st.sampled_from(["ok", "down", "stuck"])), max_size=80
)


def play(recovery: Recovery, script: list[tuple[float, str]]) -> list[tuple[float, str, bool]]:
    now, out = 0.0, []
    for step, outcome in script:
        now += step
        if outcome == "ok":
            recovery.succeeded()
            out.append((now, outcome, False))
        else:
            out.append((now, outcome, recovery.failed(now, reachable=outcome == "stuck")))
    return out


def test_k_failures_in_a_row_make_a_new_client() -> None:
    recovery = Recovery(3)
    assert [recovery.failed(t, reachable=False) for t in (1.0, 2.0)] == [False, False]
    assert recovery.failed(3.0, reachable=False)
    assert (recovery.streak, recovery.on_client, recovery.resets) == (3, 0, 1)


def test_the_cluster_coming_back_with_a_failed_tick_makes_one_at_once() -> None:
    recovery = Recovery(100)
    assert not recovery.failed(1.0, reachable=False)
    assert recovery.failed(2.0, reachable=True)  # answers again, but the tick failed
    assert not recovery.failed(3.0, reachable=True)  # once per outage


def test_the_backoff_doubles_up_to_its_bound_and_a_good_tick_resets_it() -> None:
    recovery = Recovery(1)
    made = [t for t in range(0, 400) if recovery.failed(float(t), reachable=False)]
    gaps = [b - a for a, b in itertools.pairwise(made)]
    assert gaps[:5] == [RESET_BACKOFF * 2**k for k in range(5)]
    assert max(gaps) == RESET_BACKOFF_MAX
    recovery.succeeded()
    assert recovery.failed(1000.0, reachable=False)
    assert recovery.failed(1000.0 + RESET_BACKOFF, reachable=False)


def test_reset_after_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="reset_after"):
        Recovery(0)


@given(k=st.integers(1, 6), script=ticks)
def test_invariants(k: int, script: list[tuple[float, str]]) -> None:
    recovery = Recovery(k)
    log = play(recovery, script)
    streak = on_client = 0
    not_before: float | None = None  # (the same sum as the code: no rounding apart)
    delay = RESET_BACKOFF
    previous = "ok"
    for now, outcome, reset in log:
        if outcome == "ok":
            streak = on_client = 0
            not_before, delay, previous = None, RESET_BACKOFF, "ok"
            assert not reset  # never a new client for a good tick
            continue
        streak += 1
        on_client += 1
        came_back = outcome == "stuck" and previous == "down"
        due = on_client >= k and (not_before is None or now >= not_before)
        # a new client exactly when due, or when the cluster just came back
        assert reset == (came_back or due), (now, outcome, on_client, not_before, delay)
        if reset:
            not_before, on_client = now + delay, 0
            delay = min(delay * 2, RESET_BACKOFF_MAX)
        previous = outcome
    assert recovery.streak == streak
