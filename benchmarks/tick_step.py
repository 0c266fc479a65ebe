"""How long one whole tick of the metrics producer holds the serving event loop, and where.

``python -m benchmarks.tick_step [--sizes 1000x12x150 1000x12x300] [--ticks 20]
[--warmup 10] [--clients 2] [--top 5]`` runs, inside one ``trio.run`` per size, a real
:class:`~takhin_ws.lowlevel.MetricsProducer` built as the server builds it
(:func:`takhin_ws.net.services.open_services`: the ingress on the in-memory bus, a
:class:`~takhin_ws.LagTracker`, a :class:`~takhin_ws.core.series.Series`, change
detection on) over a hub with ``--clients`` queue clients of each of the ``deflate``
and ``dashboard`` kinds of :mod:`benchmarks.publish_step`, and calls
``await producer.tick()`` itself: collect, the lag tracker, the groups, the change
detector, the events, the chart history and the publish. Its source returns the
cluster of :func:`benchmarks.wire.snapshot` (topics x partitions x groups, each group
on four topics) advanced tick by tick as :func:`benchmarks.lag_tick.advance` does
(groups that keep up, read slower, stall), built before each tick (the source's own
work is not measured: the server's is in a child process) and handed over after a
checkpoint. The first ``--warmup`` ticks (the tracker's window) are not counted.

Per tick (median / max of ``--ticks``), a :class:`trio.abc.Instrument` around every
task step measures:

- ``step``: the longest step of any task from the start of the tick to a few ms after
  it returned, in wall time and in the loop thread's CPU time (``its CPU``);
- ``steps``: the steps of the task calling ``tick()``;
- ``cpu`` (this process, every thread) and ``wall`` of the whole tick;
- ``late``: the worst lateness of a 1 ms Trio ticker beside it;
- ``gc``: the longest pause of the cyclic garbage collector in the tick (the heap is
  frozen once set up, as the server's command does: ``--no-freeze`` not to);

and, to say what to cut next, **where** the longest steps are: each step is named by
its task and the code locations it ran between (the innermost frame outside Trio at
which the task was suspended before the step, and the one at which it was suspended
after it, or ``returned``). The ``--top`` locations with the longest steps over the
counted ticks are listed, with how often they were the tick's longest and how much
garbage collection their longest step held.

Example (from the repository root; ~1 min)::

    .venv/bin/python -m benchmarks.tick_step --sizes 1000x12x150 1000x12x300
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import types
from collections.abc import Sequence
from typing import Any

import attrs
import orjson
import trio

from benchmarks.common import add_freeze_option
from benchmarks.lag_tick import INTERVAL, START, advance
from benchmarks.publish_step import SETTLE, GcPause, StepWatch, Ticker, add_clients, drain
from benchmarks.wire import snapshot
from takhin_ws import LagTracker, MonitoringMetrics, Settings, Snapshot
from takhin_ws.config.cli import freeze_startup
from takhin_ws.core.series import Series
from takhin_ws.ingest.bus import MemoryBus
from takhin_ws.ingest.ingress import EventIngress
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.net.services import new_hub

DEFAULT_SIZES = ("1000x12x150", "1000x12x300")
#: The kinds of client on the hub (:data:`benchmarks.publish_step.CLIENT_KINDS`).
KINDS = ("deflate", "dashboard")
#: Path parts after which a file name is shown (the rest is the machine's).
ROOTS = ("/src/", "/site-packages/", "/benchmarks/", "/tests/", "/lib/python3")


def short(filename: str) -> str:
    for root in ROOTS:
        at = filename.rfind(root)
        if at >= 0:
            return filename[at + len(root) :]
    return filename


def where(frame: types.FrameType) -> str:
    return f"{short(frame.f_code.co_filename)}:{frame.f_lineno} ({frame.f_code.co_name})"


def driven(frame: types.FrameType) -> types.FrameType | None:
    """The innermost frame of a suspended generator *frame* drives (``in_steps``
    runs a plain generator a piece per step: where that one stands says more)."""
    found = None
    for value in frame.f_locals.values():
        while isinstance(value, types.GeneratorType) and value.gi_frame is not None:
            found = value.gi_frame
            value = value.gi_yieldfrom
    return found


def suspended_at(task: trio.lowlevel.Task) -> str:
    """``file:line (function)`` of the innermost frame outside Trio at which *task* is
    suspended (following its coroutine's awaits down, then a generator it drives),
    ``returned`` once it is done."""
    innermost: types.FrameType | None = None
    awaited: Any = task.coro
    while awaited is not None:
        frame: types.FrameType | None = getattr(awaited, "cr_frame", None) or getattr(
            awaited, "gi_frame", None
        )
        if frame is None:
            break
        filename = frame.f_code.co_filename
        if "/trio/" not in filename and "/outcome/" not in filename:
            innermost = frame
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    if innermost is None:
        return "returned"
    inner = driven(innermost)
    return where(innermost) if inner is None else f"{where(inner)} via {innermost.f_code.co_name}"


@attrs.define
class Place:
    """The steps that ran between the same two locations of the same task."""

    steps: int = 0
    walls: list[float] = attrs.Factory(list)
    longest_cpu: float = 0.0
    longest_gc: float = 0.0  # garbage collection inside the longest one (wall)
    tick_longest: int = 0  # ticks whose longest step this was


class GcClock(GcPause):
    """:class:`GcPause` that also adds up every pause (``total``, seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        super().__call__(phase, info)
        if phase != "start":
            self.total += time.perf_counter() - self._began


class PlaceWatch(StepWatch):
    """:class:`StepWatch` that also names every step by where it ran (task, from, to)
    and keeps, while ``recording``, the steps of each place; ``longest_place`` is the
    place of the longest step since :meth:`reset`."""

    def __init__(self, gc_clock: GcClock) -> None:
        super().__init__()
        self.gc_clock = gc_clock
        self.places: dict[tuple[str, str, str], Place] = {}
        self.recording = False
        self.longest_place: tuple[str, str, str] | None = None
        self._where: dict[trio.lowlevel.Task, str] = {}
        self._gc_began = 0.0

    def reset(self, watched: trio.lowlevel.Task | None = None) -> None:
        super().reset(watched)
        self.longest_place = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._gc_began = self.gc_clock.total
        super().before_task_step(task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        began, self._began = self._began, None
        if task is self.watched:
            self.steps += 1
        ended = suspended_at(task)  # after the times: not part of the step
        start = self._where.get(task, "start")
        self._where[task] = ended
        if began is None:  # the instrument was added during this step
            return
        wall, cpu = now - began[0], cpu - began[1]
        place = (task.name.rsplit(".", 1)[-1], start, ended)
        if wall >= self.longest:
            self.longest, self.longest_place = wall, place
        self.longest_cpu = max(self.longest_cpu, cpu)
        if self.recording:
            seen = self.places.setdefault(place, Place())
            seen.steps += 1
            if wall > max(seen.walls, default=0.0):
                seen.longest_gc = self.gc_clock.total - self._gc_began
            seen.walls.append(wall)
            seen.longest_cpu = max(seen.longest_cpu, cpu)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._where.pop(task, None)


class AdvancingSource:
    """A :class:`~takhin_ws.MetricsSource` whose next snapshot is built beforehand
    (:meth:`prepare`), outside the measured tick, and returned after a checkpoint."""

    kind = "custom"

    def __init__(self, base: MonitoringMetrics) -> None:
        self.base = base
        self.tick = 0
        self._next: Snapshot | None = None

    def prepare(self, tick: int) -> None:
        self.tick = tick
        self._next = advance(self.base, tick)

    def now(self) -> float:
        """The wall clock of the producer: one interval per tick."""
        return START + self.tick * INTERVAL

    async def collect(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        ready, self._next = self._next, None
        assert ready is not None, "prepare() before each tick"
        return ready


@attrs.frozen
class TickCost:
    step_ms: float
    step_cpu_ms: float
    steps: int
    cpu_ms: float
    wall_ms: float
    late_ms: float
    gc_ms: float


async def measure(
    size: str, clients: int, ticks: int, warmup: int, freeze: bool = True
) -> dict[str, Any]:
    """*ticks* ticks (after *warmup* not counted) of a producer over a *size* cluster
    publishing to *clients* clients of each of :data:`KINDS`."""
    topics, partitions, groups = (int(n) for n in size.split("x"))
    settings = Settings()
    hub = new_hub(settings)
    subscribers = add_clients(hub, KINDS, clients)
    source = AdvancingSource(snapshot(topics, partitions, groups))
    producer = MetricsProducer(
        hub,
        source,
        interval=settings.interval,
        ingress=EventIngress(MemoryBus(hub)),
        wall_clock=source.now,
        detect_changes=settings.detect_changes,
        series=Series(settings.series_window, settings.interval),
        lag=LagTracker(settings.lag_window),
    )
    gc_clock = GcClock()
    watch, ticker = PlaceWatch(gc_clock), Ticker()
    costs: list[TickCost] = []
    delivered = 0
    trio.lowlevel.add_instrument(watch)
    gc.callbacks.append(gc_clock)
    if freeze:
        gc.collect()
        freeze_startup()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run, name="ticker")
            for tick in range(warmup + ticks):
                source.prepare(tick)
                counted = tick >= warmup
                await trio.sleep(SETTLE)
                ticker.late = 0.0
                gc_clock.reset()
                watch.recording = counted
                await trio.lowlevel.checkpoint()  # the tick starts in a step of its own
                watch.reset(trio.lowlevel.current_task())
                wall, cpu = time.perf_counter(), time.process_time()
                assert await producer.tick(), "the hub closed"
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                steps = watch.steps + 1  # the one in which tick() returned
                await trio.sleep(SETTLE)  # work the tick left to other tasks counts too
                watch.recording = False
                received = drain(subscribers)
                if counted:
                    costs.append(
                        TickCost(
                            watch.longest * 1000,
                            watch.longest_cpu * 1000,
                            steps,
                            cpu * 1000,
                            wall * 1000,
                            ticker.late * 1000,
                            gc_clock.longest * 1000,
                        )
                    )
                    if watch.longest_place is not None:
                        watch.places[watch.longest_place].tick_longest += 1
                    delivered += received
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(watch)
        gc.callbacks.remove(gc_clock)
        gc.unfreeze()  # the next size starts from the same heap
    events = producer.statistics().events
    lags = sum(len(t.partition_lags) for c in source.base.consumer_lags for t in c.topic_lags)

    def stat(values: Sequence[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "max": max(values)}

    top = sorted(watch.places.items(), key=lambda item: -max(item[1].walls))
    return {
        "size": size,
        "partitions": topics * partitions,
        "lags": lags,
        "clients": clients * len(KINDS),
        "ticks": len(costs),
        "delivered": delivered,
        "events": events,
        **{
            f"{key}": stat([getattr(c, key) for c in costs])
            for key in ("step_ms", "step_cpu_ms", "steps", "cpu_ms", "wall_ms", "late_ms", "gc_ms")
        },
        "places": [
            {
                "task": task,
                "from": began,
                "to": ended,
                "steps": place.steps,
                "median_ms": statistics.median(place.walls) * 1000,
                "max_ms": max(place.walls) * 1000,
                "max_cpu_ms": place.longest_cpu * 1000,
                "gc_in_max_ms": place.longest_gc * 1000,
                "tick_longest": place.tick_longest,
            }
            for (task, began, ended), place in top
        ],
    }


def rows(result: dict[str, Any], top: int) -> tuple[str, list[str]]:
    def pair(key: str, digits: int = 1) -> str:
        value = result[key]
        return f"{value['median']:.{digits}f} / {value['max']:.{digits}f}"

    tick = (
        f"| {result['size']} | {result['partitions']:,} | {result['lags']:,} "
        f"| {result['clients']} | {result['delivered']} | {pair('step_ms')} "
        f"| {pair('step_cpu_ms')} | {pair('steps', 0)} | {pair('cpu_ms')} "
        f"| {pair('wall_ms')} | {pair('late_ms')} | {pair('gc_ms')} |"
    )
    places = [
        f"| {result['size']} | {p['task']} | `{p['from']}` | `{p['to']}` | {p['steps']} "
        f"| {p['median_ms']:.1f} / {p['max_ms']:.1f} | {p['max_cpu_ms']:.1f} "
        f"| {p['gc_in_max_ms']:.1f} | {p['tick_longest']} |"
        for p in result["places"][:top]
    ]
    return tick, places


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tick_step", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--clients", type=int, default=2, help="clients of each kind")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument(
        "--warmup", type=int, default=Settings().lag_window, help="ticks not counted first"
    )
    parser.add_argument("--top", type=int, default=5, help="places of long steps listed")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead")
    add_freeze_option(parser)
    args = parser.parse_args()
    if args.clients < 1 or args.ticks < 1 or args.warmup < 0 or args.top < 0:
        parser.error("--clients and --ticks take a positive number, --warmup and --top >= 0")
    results = []
    for size in args.sizes:
        result = trio.run(measure, size, args.clients, args.ticks, args.warmup, args.freeze)
        if args.json:
            print(orjson.dumps(result).decode(), flush=True)
        results.append(result)
    if args.json:
        return
    print(
        "| cluster (topics x partitions x groups) | partitions | partition lags | clients "
        "| delivered | longest step ms | its CPU ms | steps | tick CPU ms | tick wall ms "
        "| 1 ms ticker late ms | GC pause ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    places = []
    for result in results:
        tick, place_rows = rows(result, args.top)
        print(tick)
        places += place_rows
    print()
    print(
        "| cluster | task | suspended before the step at | suspended after it at | steps "
        "| step ms (median / max) | its CPU ms (max) | GC in the max ms | the tick's longest |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(places))


if __name__ == "__main__":
    main()
