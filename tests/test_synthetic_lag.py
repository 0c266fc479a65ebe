"""The synthetic cluster shows every lag status within minutes (its groups' habits),
through the same lag tracker the server runs."""

from __future__ import annotations

import pytest

from takhin_ws.core.lag.tracker import LagTracker
from takhin_ws.sources.synthetic.habits import HABITS, STALL_CYCLE, STOP_CYCLE, habit_of
from takhin_ws.sources.synthetic.source import SyntheticSource

INTERVAL = 2.0
#: Simulated seconds: long enough for every habit's cycle to come round twice.
RUN = 2 * max(STALL_CYCLE, STOP_CYCLE) + 60


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_status_shows_up_and_is_announced(seed: int) -> None:
    now = [1_700_000_000.0]
    source = SyntheticSource(seed=seed, clock=lambda: now[0])
    tracker = LagTracker()
    seen: dict[str, set[str]] = {}
    announced: set[str] = set()
    for _ in range(int(RUN / INTERVAL)):
        snapshot, events = tracker.observe(source.step(), now[0])
        for lag in snapshot.metrics.consumer_lags:
            seen.setdefault(lag.status, set()).add(lag.group_id)
            assert lag.drain_seconds is None or lag.drain_seconds >= 0
        announced.update(e.status for e in events)
        now[0] += INTERVAL
    assert {"OK", "LAGGING", "STALLED", "STOPPED", "REWOUND"} <= set(seen), sorted(seen)
    assert {"STALLED", "STOPPED", "REWOUND"} <= announced
    # each habit is what shows its status
    assert "analytics" in seen["STALLED"]  # serial 1: stalls
    assert "fraud-detector" in seen["REWOUND"]  # serial 2: rewinds
    assert "warehouse-sync" in seen["STOPPED"]  # serial 3: stops


def test_habits_follow_the_serial_and_the_first_four_have_one_each() -> None:
    assert [habit_of(n)[0] for n in range(4)] == ["steady", "stalls", "rewinds", "stops"]
    assert habit_of(len(HABITS) + 1) == ("stalls", habit_of(len(HABITS) + 1)[1])
    assert habit_of(1)[1] != habit_of(len(HABITS) + 1)[1]  # staggered cycles
