"""The whole-tick benchmark of docs/benchmarks.md runs a real producer and names where its
steps ran, on a small cluster (no timing asserted: the figures are the benchmark's
business)."""

from __future__ import annotations

import gc
import inspect
import time

import trio
from benchmarks.step_places import GcClock, PlaceWatch, suspended_at
from benchmarks.tick_step import KINDS, measure


def test_the_tick_benchmark_publishes_every_tick_to_every_client_and_names_its_steps() -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    result = trio.run(measure, "30x3x40", 1, 3, 2)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (thresholds, frozen)  # as it was
    assert result["ticks"] == 3
    assert result["clients"] == len(KINDS)
    assert result["partitions"] == 90
    assert result["lags"] == 40 * 4 * 3  # each group on four topics
    assert result["delivered"] >= 3 * len(KINDS)  # a snapshot each, and the events
    assert result["steps"]["median"] > 1  # the tick is cut in steps
    for key in ("step_ms", "step_cpu_ms", "cpu_ms", "wall_ms", "late_ms", "gc_ms"):
        assert result[key]["max"] >= result[key]["median"] >= 0.0
    places = result["places"]
    assert sum(p["tick_longest"] for p in places) == 3  # one longest step per tick
    assert 3 >= result["over_goal"] >= result["over_goal_without_gc"] >= 0
    assert [p["max_ms"] for p in places] == sorted((p["max_ms"] for p in places), reverse=True)
    tick = {p[end] for p in places if p["task"] == "measure" for end in ("from", "to")}
    assert any("takhin_ws/core/lag/tracker.py" in at for at in tick)  # the lag tracker
    assert any("takhin_ws/ingest/bus.py" in at for at in tick)  # the publish


async def _parked(where: list[str]) -> None:
    where.append(suspended_at(trio.lowlevel.current_task()))  # running: its own frame
    await trio.sleep_forever()


def test_a_task_is_named_by_the_line_it_waits_at_outside_trio() -> None:
    async def main() -> tuple[str, str, str]:
        seen: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_parked, seen)
            await trio.testing.wait_all_tasks_blocked()
            (task,) = (t for t in nursery.child_tasks)
            parked = suspended_at(task)
            nursery.cancel_scope.cancel()
        return seen[0], parked, suspended_at(task)

    running, parked, done = trio.run(main)
    line = inspect.getsourcelines(_parked)[1] + 2
    assert running.startswith("test_benchmark_tick.py:")
    assert parked == f"test_benchmark_tick.py:{line} (_parked)"
    assert done == "returned"


def _hold(seconds: float) -> None:
    """Keep the event loop for *seconds* (the work of a long step)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_longest_step_is_named_by_where_it_began_and_ended() -> None:
    async def main() -> tuple[tuple[str, str, str] | None, int]:
        watch = PlaceWatch(GcClock())
        trio.lowlevel.add_instrument(watch)
        try:
            await trio.lowlevel.checkpoint()
            watch.reset(trio.lowlevel.current_task())
            await trio.lowlevel.checkpoint()  # line A
            _hold(0.2)  # the one long step, from A to B
            await trio.lowlevel.checkpoint()  # line B
            await trio.lowlevel.checkpoint()
            return watch.longest_place, watch.steps
        finally:
            trio.lowlevel.remove_instrument(watch)

    place, steps = trio.run(main)
    source, first = inspect.getsourcelines(
        test_the_longest_step_is_named_by_where_it_began_and_ended
    )
    a = first + next(i for i, text in enumerate(source) if "# line A" in text)
    b = first + next(i for i, text in enumerate(source) if "# line B" in text)
    assert place == (
        "main",
        f"test_benchmark_tick.py:{a} (main)",
        f"test_benchmark_tick.py:{b} (main)",
    )
    assert steps == 3


def test_keeping_the_garbage_changes_nothing_that_is_delivered() -> None:
    kept = trio.run(measure, "30x3x40", 1, 2, 2, True, True)
    freed = trio.run(measure, "30x3x40", 1, 2, 2, True, False)
    assert (kept["keep_garbage"], freed["keep_garbage"]) == (True, False)
    assert kept["delivered"] == freed["delivered"] >= 2 * len(KINDS)
    assert kept["events"] == freed["events"]
