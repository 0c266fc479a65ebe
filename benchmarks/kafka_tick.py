"""``python -m benchmarks.kafka_tick``: what one tick of ``--source kafka`` costs on a real
broker of a given size, the collector in its own process (as served) and, for
comparison, in a worker thread of the server process (the shape before issue 23).

It starts a single-node Apache Kafka broker (the one the tests use, ``tests/kafka_broker.py``:
Maven fetches it once, Java 17 runs it), creates TOPICS x PARTITIONS topics with a few
messages in every partition and GROUPS consumer groups that committed offsets on
TOPICS_PER_GROUP topics each (or uses the broker at ``--bootstrap`` as it is), then runs
the source the way the server does (one collect every INTERVAL seconds, deadline 0.9 x
INTERVAL) and reports per tick:

- ``wall_ms``: the collect's wall time;
- ``collector_cpu_ms``: CPU time of the collector (``process``: the collector process,
  from ``/proc``; ``thread``: this whole process, every thread);
- ``server_cpu_ms``: CPU time of this process, the server's (in ``thread`` mode the same
  as the collector's);
- ``loop_hold_ms``: the worst lateness of a 10 ms Trio timer during the collect (how long
  the server's event loop was kept from running); ``idle_hold_ms`` the same between two
  ticks (the machine's own noise: other processes, the scheduler), ``gc_pause_ms`` the
  longest pause of the cyclic garbage collector during the collect;
- ``step_ms``: the longest single step of any Trio task during the collect (a
  :class:`trio.abc.Instrument` around each step: how long this process's own code held
  the event loop, without the scheduler's noise that ``loop_hold_ms`` also sees between
  steps), ``step_cpu_ms`` the longest in the loop thread's CPU time (without other
  processes' time on the CPU within a step either);
- ``encode_ms``: encoding the 2.9 ``metrics`` envelope once with the codec, and its size;
- ``publish_step_ms``: the longest task step while the snapshot is published the way the
  server does after the collect (``await MemoryBus(hub).publish("metrics", metrics)``,
  :func:`benchmarks.publish_step.publish_once`) to a hub with a dashboard client
  (permessage-deflate ``metrics:lean,topics,groups``) and a 2.9 client (permessage-deflate
  ``metrics``), ``publish_step_cpu_ms`` the same in CPU time; ``publish_steps`` how many
  steps the publish took, ``publish_cpu_ms`` its CPU time (this process, every thread);
- with ``--producer``, a run of its own after the modes: the whole tick of the
  server's metrics producer over the Kafka source (collect, lag tracker, change
  detection, chart series, publish), measured as :mod:`benchmarks.tick_step` does
  (:mod:`benchmarks.kafka_producer_tick`), with where the longest steps ran;
- with ``--debug``, ``work``: what the tick asked besides the end offsets and the
  committed offsets (``metadata``, ``N start offsets``, ``N described`` groups), from
  the collector's debug log.

Example (from the repository root; ~3-5 min, most of it creating the partitions)::

    .venv/bin/python -m benchmarks.kafka_tick --topics 1000 --partitions 12 --groups 300
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchmarks.common import add_freeze_option, raise_nofile
from benchmarks.kafka_cluster import build_cluster
from benchmarks.kafka_producer_tick import add_producer_options, measure_producer
from benchmarks.publish_step import CLIENT_SETS, StepWatch, add_clients, drain, publish_once
from kafka_broker import KafkaBroker, java_binary, kafka_classpath
from takhin_ws import Hub
from takhin_ws.config.cli import freeze_startup
from takhin_ws.core.metrics.snapshot import MetricsSourceError, Snapshot
from takhin_ws.ingest.bus import MemoryBus
from takhin_ws.protocol import Envelope, encode
from takhin_ws.sources.kafka.collector import KafkaCollector
from takhin_ws.sources.kafka.source import PROCESS_SHARE, KafkaSource

#: Seconds of lateness probe period.
PROBE = 0.01
#: Clock ticks per second of /proc/PID/stat's CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MODES = ("process", "thread")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process *pid* so far; 0 without one."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


Collect = Callable[[], Awaitable[Snapshot]]


@asynccontextmanager
async def collector(
    mode: str, bootstrap: str, deadline: float
) -> AsyncIterator[tuple[Collect, Callable[[], int | None]]]:
    """The collect of *mode* (within *deadline* s) and the id of the process whose CPU
    is the collector's."""
    timeout = deadline
    if mode == "process":
        async with KafkaSource(bootstrap, timeout=timeout) as source:
            yield source.collect, lambda: source.collector_pid
        return
    own = KafkaCollector(bootstrap)
    limiter = trio.CapacityLimiter(1)

    async def collect() -> Snapshot:
        return await trio.to_thread.run_sync(
            own.collect, timeout * PROCESS_SHARE, limiter=limiter, abandon_on_cancel=True
        )

    try:
        yield collect, os.getpid
    finally:
        await trio.to_thread.run_sync(own.close, limiter=limiter)


#: The collector's debug lines that say what a tick asked, and how ``work`` names it.
WORK: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r": metadata of \d+ topics"), lambda m: "metadata"),
    (re.compile(r"\((\d+) start offsets"), lambda m: f"{m[1]} start offsets"),
    (re.compile(r"\((\d+) described\)"), lambda m: f"{m[1]} described"),
)


class TickWork(logging.Handler):
    """What the ticks asked (see :data:`WORK`), from the collector's debug log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.work: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for pattern, name in WORK:
            found = pattern.search(text)
            if found and not found.group(0).startswith("(0 "):
                self.work.append(name(found))


class GcPauses:
    """The cyclic garbage collector's pauses in this process (seconds each)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._began)


async def measure(mode: str, bootstrap: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    lateness: list[float] = []
    rows: list[dict[str, Any]] = []
    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses)
    work = TickWork()
    logging.getLogger("takhin_ws.metrics").addHandler(work)
    steps = StepWatch()
    trio.lowlevel.add_instrument(steps)
    bus = MemoryBus(Hub())  # the serving hub, with a dashboard and a 2.9 client
    clients = add_clients(bus.hub, CLIENT_SETS["both"], 1)

    async def probe() -> None:
        while True:
            before = trio.current_time()
            await trio.sleep(PROBE)
            lateness.append(trio.current_time() - before - PROBE)

    timeout = args.timeout or args.interval * 0.9  # as source_for sets it
    async with collector(mode, bootstrap, timeout) as (collect, pid), trio.open_nursery() as n:
        if args.freeze:
            freeze_startup()  # as the server's command does once started
        n.start_soon(probe)
        start = trio.current_time()
        for tick in range(args.ticks + 1):
            await trio.sleep_until(start + tick * args.interval)
            await trio.sleep(PROBE * 2)  # the probe is waiting: a hold shows as lateness
            idle = max(lateness, default=0.0)  # between ticks: the machine's own noise
            lateness.clear()
            gc_pauses.pauses.clear()
            work.work.clear()
            steps.reset()
            child = pid()
            wall, cpu, child_cpu = time.perf_counter(), time.process_time(), process_cpu(child)
            try:
                with trio.fail_after(timeout):
                    snapshot = await collect()
            except (MetricsSourceError, trio.TooSlowError) as exc:  # past its deadline
                rows.append({"mode": mode, "tick": tick, "error": str(exc) or "deadline"})
                log(orjson.dumps(rows[-1]).decode())
                continue
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            child_cpu = process_cpu(child) - child_cpu if child != os.getpid() else cpu
            await trio.sleep(PROBE * 2)  # the probe's last lateness is in
            hold = max(lateness, default=0.0)
            step, step_cpu = steps.longest, steps.longest_cpu
            gc_pause = max(gc_pauses.pauses, default=0.0)
            metrics = snapshot.metrics
            began = time.perf_counter()
            frame = encode(Envelope(payload=metrics, timestamp=metrics.timestamp))
            encoded = time.perf_counter() - began
            published = await publish_once(bus, metrics, steps)
            drain(clients)
            rows.append(
                {
                    "mode": mode,
                    "tick": tick,
                    "wall_ms": round(wall * 1000, 1),
                    "collector_cpu_ms": round(child_cpu * 1000, 1),
                    "server_cpu_ms": round(cpu * 1000, 1),
                    "loop_hold_ms": round(hold * 1000, 1),
                    "step_ms": round(step * 1000, 1),
                    "step_cpu_ms": round(step_cpu * 1000, 1),
                    "idle_hold_ms": round(idle * 1000, 1),
                    "gc_pause_ms": round(gc_pause * 1000, 1),
                    "encode_ms": round(encoded * 1000, 1),
                    "publish_step_ms": round(published.step_ms, 1),
                    "publish_step_cpu_ms": round(published.step_cpu_ms, 1),
                    "publish_steps": published.steps,
                    "publish_cpu_ms": round(published.cpu_ms, 1),
                    "frame_bytes": len(frame),
                    "topics": len(metrics.topic_stats),
                    "groups": len(snapshot.groups),
                }
            )
            if args.debug:
                rows[-1]["work"] = work.work[:]
            log(orjson.dumps(rows[-1]).decode())
            lateness.clear()  # the idle window starts after the publish
        n.cancel_scope.cancel()
    gc.callbacks.remove(gc_pauses)
    trio.lowlevel.remove_instrument(steps)
    logging.getLogger("takhin_ws.metrics").removeHandler(work)
    return rows[1:]  # the first tick warms the client up (connections, metadata cache)


def summary(mode: str, all_rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    rows = [row for row in all_rows if "error" not in row]

    def stat(key: str) -> dict[str, float] | None:
        values = [row[key] for row in rows]
        if not values:
            return None
        return {"median": statistics.median(values), "max": max(values)}

    return {
        "mode": mode,
        "topics": args.topics,
        "partitions": args.topics * args.partitions,
        "groups": args.groups,
        "ticks": len(all_rows),
        "failed_ticks": len(all_rows) - len(rows),
        "interval_s": args.interval,
        "wall_ms": stat("wall_ms"),
        "collector_cpu_ms": stat("collector_cpu_ms"),
        "server_cpu_ms": stat("server_cpu_ms"),
        "loop_hold_ms": stat("loop_hold_ms"),
        "step_ms": stat("step_ms"),
        "step_cpu_ms": stat("step_cpu_ms"),
        "idle_hold_ms": stat("idle_hold_ms"),
        "gc_pause_ms": stat("gc_pause_ms"),
        "encode_ms": stat("encode_ms"),
        "publish_step_ms": stat("publish_step_ms"),
        "publish_step_cpu_ms": stat("publish_step_cpu_ms"),
        "publish_steps": stat("publish_steps"),
        "publish_cpu_ms": stat("publish_cpu_ms"),
        "frame_bytes": rows[-1]["frame_bytes"] if rows else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kafka_tick", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--topics-per-group", type=int, default=2)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--heap", default="2g", help="the broker's Java heap")
    parser.add_argument("--modes", default=",".join(MODES), help="process, thread or both")
    parser.add_argument(
        "--bootstrap", help="measure the broker at HOST:PORT as it is (no broker, no set-up)"
    )
    parser.add_argument(
        "--timeout", type=float, help="collect deadline (default: 0.9 x interval, as served)"
    )
    parser.add_argument("--debug", action="store_true", help="log each request's time")
    add_producer_options(parser)
    add_freeze_option(parser)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        parser.error(f"--modes takes {' and '.join(MODES)}, got {args.modes!r}")
    if args.debug:
        logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
        logging.getLogger("takhin_ws.metrics").setLevel(logging.DEBUG)
        logging.getLogger("takhin_ws.metrics.librdkafka").setLevel(logging.INFO)
    raise_nofile()  # the broker inherits it: a partition holds a few files open
    if args.bootstrap:
        for mode in modes:
            print(
                orjson.dumps(
                    summary(mode, trio.run(measure, mode, args.bootstrap, args), args)
                ).decode()
            )
        if args.producer:
            producer = trio.run(measure_producer, args.bootstrap, args, process_cpu, log)
            print(orjson.dumps(producer).decode())
        return
    workdir = Path(tempfile.mkdtemp(prefix="takhin-ws-kafka-bench-"))
    broker = KafkaBroker(java_binary(), kafka_classpath(), workdir, heap=args.heap)
    try:
        broker.start()
        log(f"broker on {broker.bootstrap}")
        build_cluster(broker.bootstrap, args)
        for mode in modes:
            rows = trio.run(measure, mode, broker.bootstrap, args)
            print(orjson.dumps(summary(mode, rows, args)).decode())
        if args.producer:
            producer = trio.run(measure_producer, broker.bootstrap, args, process_cpu, log)
            print(orjson.dumps(producer).decode())
    except BaseException:
        log(f"failed; the broker's log ends with:\n{broker.log()}")
        raise
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
