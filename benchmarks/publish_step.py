"""How long one publish of a big snapshot holds the event loop, per cluster size and client set.

``python -m benchmarks.publish_step [--sizes 1000x12x150 1000x12x300] [--publishes 10]
[--clients 2]`` builds a deterministic snapshot of each size (topics x partitions x
groups, :func:`benchmarks.wire.snapshot`, a new seed each publish) and, inside one
``trio.run``, publishes it ``--publishes`` times the way the metrics producer does,
``await MemoryBus(hub).publish("metrics", snapshot)``, to a :class:`~takhin_ws.Hub` whose
clients (``--clients`` :class:`~takhin_ws.lowlevel.QueueSubscriber` per set, their
queues drained between publishes) are one of :data:`CLIENT_SETS`:

- ``none``: no client (the encode and the history alone);
- ``plain``: ``metrics``, uncompressed;
- ``deflate``: ``metrics`` with permessage-deflate (window 15, the server's default
  ``compress_min_size``), a Takhin 2.9 front end;
- ``dashboard``: ``metrics:lean,topics,groups`` with permessage-deflate, the bundled
  dashboard (the lean view built, encoded and compressed);
- ``both``: the ``deflate`` and ``dashboard`` clients together.

Per publish it measures, with a :class:`trio.abc.Instrument` around every task step:

- ``step``: the longest single step of any task from the start of the publish to a
  few ms after it returned (how long the event loop was held at once: what a WebSocket
  connection waits at worst), and the longest in CPU time of the event loop's thread
  (``its CPU``: our code's work in a step, without other processes' time on the CPU);
- ``steps``: how many steps the publishing task took (from the one that calls
  ``publish`` to the one in which it returned; 2 when the publish is one step);
- ``cpu``: CPU time of this process (every thread) for the whole publish;
- ``wall``: the publish's wall time;
- ``late``: the worst lateness of a concurrent 1 ms Trio ticker (the hold as another
  task sees it, with the scheduler's noise);
- ``gc``: the longest pause of the cyclic garbage collector during the publish (what
  explains most of the rare long steps; the benchmark freezes its heap before the
  first publish, as the server's command does once started: ``--no-freeze`` not to);

and reports the median and the max of each. Nothing here depends on how the hub
publishes inside (one step or many, a worker thread or none): only ``Hub``,
``MemoryBus``, ``QueueSubscriber``, ``Variant`` and the snapshot are used.

Example (from the repository root; ~1 min)::

    .venv/bin/python -m benchmarks.publish_step --sizes 1000x12x150 1000x12x300
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any

import attrs
import orjson
import trio

from benchmarks.common import add_freeze_option
from benchmarks.wire import snapshot
from takhin_ws import Hub, MonitoringMetrics, Settings
from takhin_ws.config.cli import freeze_startup
from takhin_ws.ingest.bus import MemoryBus
from takhin_ws.lowlevel import PLAIN, QueueSubscriber, Variant

DEFAULT_SIZES = ("1000x12x150", "1000x12x300")
#: permessage-deflate as a browser negotiates it (window 15), at the server's default
#: threshold.
DEFLATE: Variant = Variant(window_bits=15, min_size=Settings().compress_min_size)
#: What one client of each kind subscribes to, in which variant.
CLIENT_KINDS: dict[str, tuple[Variant, tuple[str, ...]]] = {
    "plain": (PLAIN, ("metrics",)),
    "deflate": (DEFLATE, ("metrics",)),
    "dashboard": (DEFLATE, ("metrics:lean", "topics", "groups")),
}
#: The client sets measured: name -> the kinds of client in it.
CLIENT_SETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "plain": ("plain",),
    "deflate": ("deflate",),
    "dashboard": ("dashboard",),
    "both": ("deflate", "dashboard"),
}
#: Seconds between two wakes of the ticker whose lateness is measured.
TICK = 0.001
#: Seconds of quiet before and after each publish (the ticker waits; its lateness is in).
SETTLE = 0.005


class StepWatch(trio.abc.Instrument):
    """The longest step of any task, and the steps of one task, since :meth:`reset`:
    ``longest`` in wall time (what a connection waits, other processes' time on the
    CPU included), ``longest_cpu`` in this thread's CPU time (our own code's work,
    without the machine's noise)."""

    def __init__(self) -> None:
        self.longest = self.longest_cpu = 0.0
        self.steps = 0
        self.watched: trio.lowlevel.Task | None = None
        self._began: tuple[float, float] | None = None  # None: added during a step

    def reset(self, watched: trio.lowlevel.Task | None = None) -> None:
        self.longest, self.longest_cpu, self.steps, self.watched = 0.0, 0.0, 0, watched

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._began = (time.perf_counter(), time.thread_time())

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._began is not None:
            wall, cpu = self._began
            self.longest = max(self.longest, time.perf_counter() - wall)
            self.longest_cpu = max(self.longest_cpu, time.thread_time() - cpu)
            self._began = None
        if task is self.watched:
            self.steps += 1


class GcPause:
    """The longest pause of the cyclic garbage collector since :meth:`reset` (seconds);
    a ``gc.callbacks`` entry."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._began = 0.0

    def reset(self) -> None:
        self.longest = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._began)


class Ticker:
    """A task that wakes every :data:`TICK` s and keeps its worst lateness."""

    def __init__(self) -> None:
        self.late = 0.0

    async def run(self) -> None:
        while True:
            deadline = trio.current_time() + TICK
            await trio.sleep_until(deadline)
            self.late = max(self.late, trio.current_time() - deadline)


@attrs.frozen
class PublishCost:
    """One publish, in milliseconds (``steps``: of the publishing task)."""

    step_ms: float
    step_cpu_ms: float
    steps: int
    cpu_ms: float
    wall_ms: float


async def publish_once(
    bus: MemoryBus, payload: MonitoringMetrics, watch: StepWatch, channel: str = "metrics"
) -> PublishCost:
    """Publish *payload* on *bus* as the metrics producer does; what it cost (*watch*
    must be an instrument of this run)."""
    await trio.lowlevel.checkpoint()  # the publish starts in a step of its own
    watch.reset(trio.lowlevel.current_task())
    wall, cpu = time.perf_counter(), time.process_time()
    await bus.publish(channel, payload)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await trio.lowlevel.checkpoint()  # ends the step in which the publish returned
    return PublishCost(
        watch.longest * 1000, watch.longest_cpu * 1000, watch.steps, cpu * 1000, wall * 1000
    )


def add_clients(hub: Hub, kinds: Sequence[str], count: int) -> list[QueueSubscriber]:
    """*count* clients of each of *kinds* (:data:`CLIENT_KINDS`) registered with *hub*."""
    subscribers = []
    for kind in kinds:
        variant, channels = CLIENT_KINDS[kind]
        for _ in range(count):
            subscriber = QueueSubscriber()
            hub.add_client(subscriber, channels, variant=variant)
            subscribers.append(subscriber)
    return subscribers


def drain(subscribers: Sequence[QueueSubscriber]) -> int:
    """Take everything queued for *subscribers*; how many messages that was."""
    return sum(len(s.queue.get_batch_nowait()) for s in subscribers)


async def measure(
    size: str, name: str, clients: int, publishes: int, freeze: bool = True
) -> dict[str, Any]:
    """*publishes* publishes of a *size* snapshot to *clients* clients of each kind of
    the set *name*, after one not counted (the hub's first publish of a stream); with
    *freeze*, what the process holds before the first is frozen out of the garbage
    collector's full collections, as the server's command does once started."""
    topics, partitions, groups = (int(n) for n in size.split("x"))
    kinds = CLIENT_SETS[name]
    hub = Hub()
    bus = MemoryBus(hub)
    subscribers = add_clients(hub, kinds, clients)
    watch, ticker, pause = StepWatch(), Ticker(), GcPause()
    costs: list[PublishCost] = []
    lateness: list[float] = []
    pauses: list[float] = []
    delivered = 0
    trio.lowlevel.add_instrument(watch)
    gc.callbacks.append(pause)
    thresholds = gc.get_threshold()  # freeze_startup changes them
    if freeze:
        gc.collect()
        freeze_startup()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            for seed in range(publishes + 1):
                payload = snapshot(topics, partitions, groups, seed=seed)
                await trio.sleep(SETTLE)
                ticker.late = 0.0
                pause.reset()
                cost = await publish_once(bus, payload, watch)
                await trio.sleep(SETTLE)
                received = drain(subscribers)
                # any work the publish left to other tasks counts too
                cost = attrs.evolve(
                    cost, step_ms=watch.longest * 1000, step_cpu_ms=watch.longest_cpu * 1000
                )
                if seed:  # the first one warms the hub up
                    costs.append(cost)
                    lateness.append(ticker.late * 1000)
                    pauses.append(pause.longest * 1000)
                    delivered += received
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(watch)
        gc.callbacks.remove(pause)
        gc.unfreeze()  # the next measure starts from the same heap
        gc.set_threshold(*thresholds)
    latest = hub.latest("metrics")
    assert latest is not None

    def stat(values: Sequence[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "max": max(values)}

    return {
        "size": size,
        "json_bytes": len(latest.payload),
        "set": name,
        "clients": clients * len(kinds),
        "publishes": len(costs),
        "delivered": delivered,
        "step_ms": stat([c.step_ms for c in costs]),
        "step_cpu_ms": stat([c.step_cpu_ms for c in costs]),
        "steps": stat([c.steps for c in costs]),
        "cpu_ms": stat([c.cpu_ms for c in costs]),
        "wall_ms": stat([c.wall_ms for c in costs]),
        "late_ms": stat(lateness),
        "gc_ms": stat(pauses),
    }


def row(result: dict[str, Any]) -> str:
    def pair(key: str, digits: int = 1) -> str:
        value = result[key]
        return f"{value['median']:.{digits}f} / {value['max']:.{digits}f}"

    return (
        f"| {result['size']} | {result['json_bytes'] / 1024:,.0f} KiB "
        f"| {result['set']} ({result['clients']}) "
        f"| {result['delivered']} | {pair('step_ms')} | {pair('step_cpu_ms')} "
        f"| {pair('steps', 0)} "
        f"| {pair('cpu_ms')} | {pair('wall_ms')} | {pair('late_ms')} | {pair('gc_ms')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.publish_step", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--sets", nargs="+", default=list(CLIENT_SETS), choices=CLIENT_SETS)
    parser.add_argument("--clients", type=int, default=2, help="clients of each kind per set")
    parser.add_argument("--publishes", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead")
    add_freeze_option(parser)
    args = parser.parse_args()
    if args.clients < 1 or args.publishes < 1:
        parser.error("--clients and --publishes take a positive number")
    if not args.json:
        print(
            "| cluster (topics x partitions x groups) | JSON | clients | delivered "
            "| longest step ms | its CPU ms | steps | CPU ms | wall ms | 1 ms ticker late ms"
            " | GC pause ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for name in args.sets:
            result = trio.run(measure, size, name, args.clients, args.publishes, args.freeze)
            print(orjson.dumps(result).decode() if args.json else row(result), flush=True)


if __name__ == "__main__":
    main()
