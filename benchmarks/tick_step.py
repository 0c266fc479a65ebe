"""How long one whole tick of the metrics producer holds the serving event loop, and where.

``python -m benchmarks.tick_step [--sizes 1000x12x150 1000x12x300] [--ticks 20]
[--warmup 10] [--clients 2] [--top 5] [--keep-garbage]`` runs, inside one ``trio.run``
per size, a real :class:`~takhin_ws.MetricsProducer` built as the server builds it
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
- ``over``: how many ticks had a step longer than :data:`GOAL_MS` (issue 23's 5 ms),
  and how many still would without the garbage collection inside it;

and, to say what to cut next, **where** the longest steps are
(:mod:`benchmarks.step_places`): each step is named by its task and the code locations
it ran between (the innermost frame outside Trio at which the task was suspended
before the step, and the one at which it was suspended after it, or ``returned``).
The ``--top`` places with the longest steps over the counted ticks are listed, with
how often they were the tick's longest and how much garbage collection their longest
step held. With ``--keep-garbage`` each size is run again keeping what a tick lets go
of (the snapshot collected, the previous one, the publish's prepared encoding) until
the next tick's measure is over: how much of the steps is freeing memory.

Example (from the repository root; ~1 min)::

    .venv/bin/python -m benchmarks.tick_step --sizes 1000x12x150 1000x12x300
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import orjson
import trio

from benchmarks.common import add_freeze_option, frozen_heap
from benchmarks.lag_tick import INTERVAL, START, advance
from benchmarks.publish_step import SETTLE, Ticker, add_clients, drain
from benchmarks.step_places import GcClock, PlaceWatch
from benchmarks.wire import snapshot
from takhin_ws import Hub, LagTracker, MetricsSource, MonitoringMetrics, Settings, Snapshot
from takhin_ws.core.encoding import Prepared
from takhin_ws.core.series import Series
from takhin_ws.ingest.bus import MemoryBus
from takhin_ws.ingest.ingress import EventIngress
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.lowlevel import Outbound
from takhin_ws.net.services import new_hub

DEFAULT_SIZES = ("1000x12x150", "1000x12x300")
#: The kinds of client on the hub (:data:`benchmarks.publish_step.CLIENT_KINDS`).
KINDS = ("deflate", "dashboard")
#: The longest hold of the event loop issue 23 allows at 12,000 partitions (ms).
GOAL_MS = 5.0


class AdvancingSource:
    """A :class:`~takhin_ws.MetricsSource` whose next snapshot is built beforehand
    (:meth:`prepare`), outside the measured tick, and returned after a checkpoint."""

    kind = "custom"

    def __init__(self, base: MonitoringMetrics) -> None:
        self.base = base
        self.tick = 0
        self._next: Snapshot | None = None
        self.kept: list[object] | None = None  # --keep-garbage: what it returned

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
        if self.kept is not None:
            self.kept.append(ready)
        return ready


#: The figures of :class:`TickCost` reported as median / max.
STATS = ("step_ms", "step_cpu_ms", "steps", "cpu_ms", "wall_ms", "late_ms", "gc_ms")


@attrs.frozen
class TickCost:
    step_ms: float
    step_cpu_ms: float
    steps: int
    cpu_ms: float
    wall_ms: float
    late_ms: float
    gc_ms: float
    step_gc_ms: float  # garbage collection inside the longest step


def keep_commits(hub: Hub, kept: list[object]) -> None:
    """Keep every :class:`~takhin_ws.core.encoding.Prepared` *hub* commits in *kept*
    (with its dicts, views and compressed bytes), from its bus's publish."""
    commit = hub.commit

    def keeping(prepared: Prepared) -> Outbound:
        kept.append(prepared)
        return commit(prepared)

    hub.commit = keeping  # type: ignore[method-assign]  # this instance, for this run


def serving_producer(
    hub: Hub,
    source: MetricsSource,
    settings: Settings,
    wall_clock: Callable[[], float] = time.time,
) -> MetricsProducer:
    """A producer of *source* on *hub* as :func:`takhin_ws.net.services.open_services`
    builds it (one node, no Redis)."""
    return MetricsProducer(
        hub,
        source,
        interval=settings.interval,
        collect_timeout=settings.collect_timeout,
        unready_after=settings.unready_after,
        ingress=EventIngress(MemoryBus(hub)),
        wall_clock=wall_clock,
        detect_changes=settings.detect_changes,
        series=Series(settings.series_window, settings.interval),
        lag=LagTracker(settings.lag_window),
    )


class TickProbe:
    """What :func:`measure` measures of one tick, for any producer: enter it (``with``)
    around the ticks, with :meth:`run_ticker` running beside them."""

    def __init__(self) -> None:
        self.gc_clock = GcClock()
        self.watch, self.ticker = PlaceWatch(self.gc_clock), Ticker()
        self.costs: list[TickCost] = []

    def __enter__(self) -> TickProbe:
        trio.lowlevel.add_instrument(self.watch)
        gc.callbacks.append(self.gc_clock)
        return self

    def __exit__(self, *exc_info: object) -> None:
        trio.lowlevel.remove_instrument(self.watch)
        gc.callbacks.remove(self.gc_clock)

    async def run_ticker(self) -> None:
        await self.ticker.run()

    async def tick(self, producer: MetricsProducer, counted: bool) -> TickCost:
        """``await producer.tick()`` measured (and kept in ``costs`` if *counted*)."""
        watch = self.watch
        await trio.sleep(SETTLE)
        self.ticker.late = 0.0
        self.gc_clock.reset()
        watch.recording = counted
        await trio.lowlevel.checkpoint()  # the tick starts in a step of its own
        watch.reset(trio.lowlevel.current_task())
        wall, cpu = time.perf_counter(), time.process_time()
        if not await producer.tick():
            raise RuntimeError("the hub closed")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        steps = watch.steps + 1  # the one in which tick() returned
        await trio.sleep(SETTLE)  # work the tick left to other tasks counts too
        watch.recording = False
        cost = TickCost(
            watch.longest * 1000,
            watch.longest_cpu * 1000,
            steps,
            cpu * 1000,
            wall * 1000,
            self.ticker.late * 1000,
            self.gc_clock.longest * 1000,
            watch.longest_gc * 1000,
        )
        if counted:
            self.costs.append(cost)
            if watch.longest_place is not None:
                watch.places[watch.longest_place].tick_longest += 1
        return cost

    def summary(self) -> dict[str, Any]:
        """Median and max of the counted ticks, and the places, longest step first."""
        costs = self.costs

        def stat(values: Sequence[float]) -> dict[str, float]:
            return {"median": statistics.median(values), "max": max(values)}

        top = sorted(self.watch.places.items(), key=lambda item: -max(item[1].walls))
        return {
            "ticks": len(costs),
            "over_goal": sum(c.step_ms > GOAL_MS for c in costs),
            "over_goal_without_gc": sum(c.step_ms - c.step_gc_ms > GOAL_MS for c in costs),
            **{key: stat([getattr(c, key) for c in costs]) for key in STATS},
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


async def measure(
    size: str,
    clients: int,
    ticks: int,
    warmup: int,
    freeze: bool = True,
    keep_garbage: bool = False,
) -> dict[str, Any]:
    """*ticks* ticks (after *warmup* not counted) of a producer over a *size* cluster
    publishing to *clients* clients of each of :data:`KINDS`. With *keep_garbage*,
    what a tick lets go of (the snapshot collected, the previous good one, the
    publish's prepared encoding, with the views the next one replaces) is kept until
    the next tick's measure is over, then freed: how much of a step is deallocation."""
    topics, partitions, groups = (int(n) for n in size.split("x"))
    settings = Settings()
    hub = new_hub(settings)
    subscribers = add_clients(hub, KINDS, clients)
    source = AdvancingSource(snapshot(topics, partitions, groups))
    producer = serving_producer(hub, source, settings, source.now)
    kept: list[object] = []
    older = 0  # how many of them the tick before kept
    if keep_garbage:
        source.kept = kept
        keep_commits(hub, kept)
    delivered = 0
    with TickProbe() as probe, frozen_heap(freeze):  # the next size: the same heap
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe.run_ticker, name="ticker")
            for tick in range(warmup + ticks):
                source.prepare(tick)
                if keep_garbage:
                    kept.append(producer.snapshot)  # replaced by this tick's
                await probe.tick(producer, counted=tick >= warmup)
                del kept[:older]  # the tick before's, outside the measure (what this
                older = len(kept)  # one's views replaced is freed here, not in it)
                received = drain(subscribers)
                delivered += received if tick >= warmup else 0
            nursery.cancel_scope.cancel()
    lags = sum(len(t.partition_lags) for c in source.base.consumer_lags for t in c.topic_lags)
    return {
        "size": size,
        "keep_garbage": keep_garbage,
        "partitions": topics * partitions,
        "lags": lags,
        "clients": clients * len(KINDS),
        "delivered": delivered,
        "events": producer.statistics().events,
        **probe.summary(),
    }


def rows(result: dict[str, Any], top: int) -> tuple[str, list[str]]:
    def pair(key: str, digits: int = 1) -> str:
        value = result[key]
        return f"{value['median']:.{digits}f} / {value['max']:.{digits}f}"

    label = result["size"] + (", garbage kept" if result["keep_garbage"] else "")
    tick = (
        f"| {label} | {result['partitions']:,} | {result['lags']:,} "
        f"| {result['clients']} | {result['delivered']} | {pair('step_ms')} "
        f"| {pair('step_cpu_ms')} | {pair('steps', 0)} | {pair('cpu_ms')} "
        f"| {pair('wall_ms')} | {pair('late_ms')} | {pair('gc_ms')} "
        f"| {result['over_goal']} ({result['over_goal_without_gc']}) |"
    )
    places = [
        f"| {label} | {p['task']} | `{p['from']}` | `{p['to']}` | {p['steps']} "
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
    parser.add_argument(
        "--keep-garbage",
        action="store_true",
        help="also run each size keeping what a tick frees until after its measure",
    )
    add_freeze_option(parser)
    args = parser.parse_args()
    if args.clients < 1 or args.ticks < 1 or args.warmup < 0 or args.top < 0:
        parser.error("--clients and --ticks take a positive number, --warmup and --top >= 0")
    results = []
    for size in args.sizes:
        for keep in (False, True) if args.keep_garbage else (False,):
            result = trio.run(
                measure, size, args.clients, args.ticks, args.warmup, args.freeze, keep
            )
            if args.json:
                print(orjson.dumps(result).decode(), flush=True)
            results.append(result)
    if args.json:
        return
    print(
        "| cluster (topics x partitions x groups) | partitions | partition lags | clients "
        "| delivered | longest step ms | its CPU ms | steps | tick CPU ms | tick wall ms "
        f"| 1 ms ticker late ms | GC pause ms | ticks with a step > {GOAL_MS:g} ms "
        "(without its GC) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
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
