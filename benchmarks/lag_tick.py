"""What the lag insight adds to one tick: CPU of the tracker, bytes on the wire, memory.

``python -m benchmarks.lag_tick [--size 1000x12x300] [--ticks 30] [--window 10]``
builds the deterministic snapshot of ``benchmarks.wire`` (topics x partitions x groups,
each group reading four topics), advances it tick by tick (every partition gains a
few hundred messages; most groups keep up, some fall behind, some stall), and measures
in one process, per tick after a window of warm-up ticks:

- ``observe``: ``LagTracker.observe`` (samples, windows, statuses, the new snapshot);
- ``encode`` before and after: what ``Hub.publish`` does with the snapshot without the
  insight (the peer: the tick's existing cost) and with it;
- the JSON size of both, and of the 2.9 message (the same without the new keys);
- the memory the tracker holds once every sample table is full (tracemalloc, a
  separate run of ``DEFAULT_CAPACITY`` + window ticks), per 10,000 partition lags.

Times are CPU time of this process (``time.process_time``), median of the ticks.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from typing import Any

import attrs

from benchmarks.wire import snapshot
from takhin_ws import ConsumerLag, LagTracker, MonitoringMetrics, PartitionLag, Snapshot, TopicLag
from takhin_ws.core.lag.timeline import DEFAULT_CAPACITY
from takhin_ws.core.metrics.snapshot import GroupInfo
from takhin_ws.core.metrics.views import dumps, metrics_data, metrics_envelope

#: The keys the insight adds to 2.9 objects (stripped for the size of a 2.9 message).
V1_KEYS = frozenset({"lagSeconds", "consumeRate", "status", "drainSeconds"})

#: Messages every partition gains per tick, and what a stalled group commits.
PRODUCED = 200
#: One group in this many stops committing (STALLED), one in this many reads slowly.
STALLS_EVERY = 7
SLOW_EVERY = 5
INTERVAL = 2.0
START = 1_700_000_000.0


def advance(base: MonitoringMetrics, tick: int) -> Snapshot:
    """The cluster *tick* intervals after *base*."""
    lags = []
    for g, group in enumerate(base.consumer_lags):
        stalled = g % STALLS_EVERY == 0
        slow = g % SLOW_EVERY == 0
        topic_lags = []
        for tl in group.topic_lags:
            parts = []
            for p in tl.partition_lags:
                end = p.log_end_offset + tick * PRODUCED
                if stalled:
                    committed = p.current_offset
                elif slow:
                    committed = p.current_offset + tick * (PRODUCED - 10)
                else:
                    committed = end - p.lag
                parts.append(
                    PartitionLag(
                        partition=p.partition,
                        current_offset=committed,
                        log_end_offset=end,
                        lag=end - committed,
                    )
                )
            topic_lags.append(
                TopicLag(
                    topic=tl.topic,
                    total_lag=sum(p.lag for p in parts),
                    partition_lags=tuple(parts),
                )
            )
        lags.append(
            ConsumerLag(
                group_id=group.group_id,
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=tuple(topic_lags),
            )
        )
    groups = {c.group_id: GroupInfo(state="Stable", members=2) for c in lags}
    return Snapshot(metrics=attrs.evolve(base, consumer_lags=tuple(lags)), groups=groups)


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in V1_KEYS}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def encode_ms(metrics: MonitoringMetrics) -> tuple[float, int]:
    fields: dict[str, Any] = {"timestamp": 1, "channel": "metrics", "offset": 1, "epoch": "e"}
    start = time.process_time()
    payload = dumps(metrics_envelope(metrics_data(metrics), stale=False, **fields))
    return (time.process_time() - start) * 1000, len(payload)


def run(size: str, ticks: int, window: int) -> dict[str, Any]:
    topics, partitions, groups = (int(n) for n in size.split("x"))
    base = snapshot(topics, partitions, groups)
    lag_count = sum(len(t.partition_lags) for c in base.consumer_lags for t in c.topic_lags)
    tracker = LagTracker(window)
    observe, before, after, sizes = [], [], [], (0, 0)
    for tick in range(ticks):
        snap = advance(base, tick)
        start = time.process_time()
        observed, _ = tracker.observe(snap, START + tick * INTERVAL)
        spent = (time.process_time() - start) * 1000
        plain_ms, plain_bytes = encode_ms(snap.metrics)
        rich_ms, rich_bytes = encode_ms(observed.metrics)
        if tick >= window:
            observe.append(spent)
            before.append(plain_ms)
            after.append(rich_ms)
            sizes = (plain_bytes, rich_bytes)
    bytes_29 = len(dumps(strip(metrics_envelope(metrics_data(snap.metrics), timestamp=1))))
    statuses: dict[str, int] = {}
    for c in observed.metrics.consumer_lags:
        statuses[c.status] = statuses.get(c.status, 0) + 1

    # memory, in a run of its own (tracemalloc slows everything down)
    del tracker, observed
    tracemalloc.start()
    held = LagTracker(window)
    baseline = tracemalloc.get_traced_memory()[0]
    for tick in range(DEFAULT_CAPACITY + window):
        snap = advance(base, tick)
        out, _ = held.observe(snap, START + tick * INTERVAL)
        del out, snap
    memory = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    return {
        "size": size,
        "partitions": topics * partitions,
        "lags": lag_count,
        "observe_ms": statistics.median(observe),
        "encode_before_ms": statistics.median(before),
        "encode_after_ms": statistics.median(after),
        "bytes_before": sizes[0],
        "bytes_after": sizes[1],
        "bytes_29": bytes_29,
        "memory": memory,
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1000x12x300")
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    r = run(args.size, args.ticks, args.window)
    extra = r["observe_ms"] + r["encode_after_ms"] - r["encode_before_ms"]
    print(f"cluster {r['size']}: {r['partitions']:,} partitions, {r['lags']:,} partition lags")
    print(f"statuses at the end: {r['statuses']}")
    print("| per tick (CPU, median) | ms |")
    print("|---|---:|")
    print(f"| encode without the insight (the peer) | {r['encode_before_ms']:.1f} |")
    print(f"| LagTracker.observe | {r['observe_ms']:.1f} |")
    print(f"| encode with the insight | {r['encode_after_ms']:.1f} |")
    print(
        f"| extra per tick (observe + encode growth) | {extra:.1f} "
        f"({extra / r['encode_before_ms']:.1f}x the peer) |"
    )
    print(
        f"metrics JSON: 2.9 keys only {r['bytes_29'] / 1024:,.0f} KiB; with the new keys "
        f"null {r['bytes_before'] / 1024:,.0f} KiB; filled in {r['bytes_after'] / 1024:,.0f} KiB "
        f"(+{r['bytes_after'] / r['bytes_29'] - 1:.0%} over 2.9)"
    )
    print(
        f"tracker memory: {r['memory'] / 2**20:.1f} MiB, "
        f"{r['memory'] / r['lags'] * 10_000 / 2**20:.1f} MiB per 10,000 partition lags"
    )


if __name__ == "__main__":
    main()
