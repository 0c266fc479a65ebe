"""``python -m benchmarks.kafka_tick --producer``: the whole tick of the server's metrics
producer over the real Kafka source, as :mod:`benchmarks.tick_step` measures it over a
synthetic one.

A :class:`~takhin_ws.MetricsProducer` built as the server builds it
(:func:`benchmarks.tick_step.serving_producer`: the lag tracker, the chart series,
change detection, the ingress) over a :class:`~takhin_ws.sources.kafka.source.KafkaSource`
(its collector in a child process, deadline 0.9 x interval as served), publishing to a
hub with a ``dashboard`` and a ``deflate`` client, ticks every ``--interval`` seconds;
the benchmark calls ``await producer.tick()`` itself and measures each tick with
:class:`benchmarks.tick_step.TickProbe` (the longest step of any task and where it ran,
the steps, CPU and wall time, a 1 ms ticker, the garbage collector), plus the
collector process's CPU. The first ``--producer-warmup`` ticks (the tracker's window)
are not counted.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import orjson
import trio

from benchmarks.common import frozen_heap
from benchmarks.publish_step import CLIENT_SETS, add_clients, drain
from benchmarks.tick_step import TickProbe, serving_producer
from takhin_ws import Settings
from takhin_ws.net.services import new_hub
from takhin_ws.sources.kafka.source import KafkaSource

#: Places of long steps kept in the summary.
TOP = 8


async def measure_producer(
    bootstrap: str,
    args: argparse.Namespace,
    process_cpu: Callable[[int | None], float],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The summary of ``args.ticks`` producer ticks over the broker at *bootstrap*
    (*process_cpu*: a process's CPU seconds by pid; *log*: one line to stderr)."""
    settings = Settings(interval=args.interval)
    hub = new_hub(settings)
    clients = add_clients(hub, CLIENT_SETS["both"], 1)
    timeout = args.timeout or args.interval * 0.9  # as source_for sets it
    warmup = args.producer_warmup
    collector_cpu: list[float] = []
    stale = 0
    with TickProbe() as probe:
        async with (
            KafkaSource(bootstrap, timeout=timeout) as source,
            trio.open_nursery() as nursery,
        ):
            producer = serving_producer(hub, source, settings)
            with frozen_heap(args.freeze):  # as the server's command does once started
                nursery.start_soon(probe.run_ticker, name="ticker")
                start = trio.current_time()
                for tick in range(warmup + args.ticks):
                    await trio.sleep_until(start + tick * args.interval)
                    child = source.collector_pid
                    before = process_cpu(child)
                    cost = await probe.tick(producer, counted=tick >= warmup)
                    spent = (process_cpu(child) - before) * 1000
                    drain(clients)
                    if tick >= warmup:
                        collector_cpu.append(spent)
                        stale += producer.stale
                    log(
                        orjson.dumps(
                            {
                                "mode": "producer",
                                "tick": tick,
                                "counted": tick >= warmup,
                                "stale": producer.stale,
                                "step_ms": round(cost.step_ms, 1),
                                "step_cpu_ms": round(cost.step_cpu_ms, 1),
                                "steps": cost.steps,
                                "server_cpu_ms": round(cost.cpu_ms, 1),
                                "wall_ms": round(cost.wall_ms, 1),
                                "late_ms": round(cost.late_ms, 1),
                                "gc_ms": round(cost.gc_ms, 1),
                                "collector_cpu_ms": round(spent, 1),
                                "place": probe.watch.longest_place,
                            }
                        ).decode()
                    )
            nursery.cancel_scope.cancel()
    summary = probe.summary()
    summary["places"] = summary["places"][:TOP]
    return {
        "mode": "producer",
        "topics": args.topics,
        "partitions": args.topics * args.partitions,
        "groups": args.groups,
        "interval_s": args.interval,
        "stale_ticks": stale,
        "collector_cpu_ms": {
            "median": statistics.median(collector_cpu),
            "max": max(collector_cpu),
        },
        **summary,
    }


def add_producer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--producer",
        action="store_true",
        help="also measure the whole producer tick over the Kafka source (its own run)",
    )
    parser.add_argument(
        "--producer-warmup",
        type=int,
        default=Settings().lag_window,
        help="producer ticks not counted first (default: the lag tracker's window)",
    )
