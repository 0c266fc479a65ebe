"""What one publish of a big snapshot costs on the wire side, per cluster size.

``python -m benchmarks.wire [--sizes 8x4x4 200x6x50 1000x12x300 3000x12x1000]``
builds a deterministic snapshot of each size (topics x partitions x groups, each
group reading four topics) and measures, in one process, the best of ``--repeat``
runs of:

- ``encode``: what ``Hub.publish`` does with a snapshot (its ``data`` dict through the
  codec's unstructure functions, then orjson; the bytes of ``takhin_ws.protocol.encode``);
- ``deflate``: the one permessage-deflate compression per publish (window 15);
- ``decode``: parsing the JSON, what views of a snapshot that came through a bus need;
- ``lean``, ``group``, ``topic``: building each view once from the decoded snapshot;

and the sizes: JSON, compressed, and the lean view. Times are CPU time of this
process (``time.process_time``), the best of the runs. Nothing here is per client: these
costs are paid once per tick whatever the number of clients.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from takhin_ws import (
    ConsumerLag,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicLag,
    TopicStats,
)
from takhin_ws.core.metrics.views import MetricsViews, dumps, metrics_data, metrics_envelope
from takhin_ws.protocol import Envelope, encode
from takhin_ws.wire.websocket.deflate import deflate
from takhin_ws.wire.websocket.frames import Outbound

TOPICS_PER_GROUP = 4
DEFAULT_SIZES = ("8x4x4", "200x6x50", "1000x12x300", "3000x12x1000")


def snapshot(topics: int, partitions: int, groups: int, seed: int = 0) -> MonitoringMetrics:
    """A cluster of that size with plausible names, offsets and rates."""
    rng = random.Random(seed)
    stats = tuple(
        TopicStats(
            name=f"orders.region-{i:04d}.events",
            partitions=partitions,
            total_messages=rng.randrange(10**9),
            total_bytes=rng.randrange(10**12),
            produce_rate=rng.random() * 1000,
            fetch_rate=rng.random() * 1000,
        )
        for i in range(topics)
    )
    lags = []
    for g in range(groups):
        topic_lags = []
        for t in rng.sample(range(topics), min(TOPICS_PER_GROUP, topics)):
            parts = []
            for p in range(partitions):
                end, behind = rng.randrange(10**8), rng.randrange(1000)
                parts.append(
                    PartitionLag(
                        partition=p, current_offset=end - behind, log_end_offset=end, lag=behind
                    )
                )
            topic_lags.append(
                TopicLag(
                    topic=stats[t].name,
                    total_lag=sum(p.lag for p in parts),
                    partition_lags=tuple(parts),
                )
            )
        lags.append(
            ConsumerLag(
                group_id=f"consumer-group-{g:04d}",
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=tuple(topic_lags),
            )
        )
    return MonitoringMetrics(
        throughput=Throughput(produce_rate=1500.0, fetch_rate=1400.0),
        topic_stats=stats,
        consumer_lags=tuple(lags),
        timestamp=1_700_000_000,
    )


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    """The least CPU time (this process's, so other load on the machine counts less)
    of *repeat* calls, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1000


def measure(size: str, repeat: int) -> dict[str, Any]:
    topics, partitions, groups = (int(n) for n in size.split("x"))
    metrics = snapshot(topics, partitions, groups)
    fields: dict[str, Any] = {"timestamp": 1, "channel": "metrics", "offset": 1, "epoch": "e"}
    envelope = Envelope(payload=metrics, stale=False, **fields)

    def hub_encode() -> bytes:
        return dumps(metrics_envelope(metrics_data(metrics), stale=False, **fields))

    payload = hub_encode()
    assert payload == encode(envelope)
    item = Outbound.of(payload, "metrics", 1, "metrics")
    decoded = orjson.loads(payload)
    group = f"metrics:group:{metrics.consumer_lags[0].group_id}" if groups else "metrics:lean"
    topic = f"metrics:topic:{metrics.topic_stats[0].name}"

    def view(channel: str) -> Callable[[], Any]:
        def build() -> Any:
            views = MetricsViews()
            views.source(item, decoded)
            return views.view(channel)

        return build

    lean = view("metrics:lean")()
    return {
        "size": size,
        "json_bytes": len(payload),
        "deflated_bytes": len(deflate(payload)),
        "lean_bytes": len(lean.payload),
        "encode_ms": best_ms(hub_encode, repeat),
        "deflate_ms": best_ms(lambda: deflate(payload), repeat),
        "decode_ms": best_ms(lambda: orjson.loads(payload), repeat),
        "lean_ms": best_ms(view("metrics:lean"), repeat),
        "group_ms": best_ms(view(group), repeat),
        "topic_ms": best_ms(view(topic), repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        "| cluster (topics x partitions x groups) | JSON | deflated | lean view "
        "| encode ms | deflate ms | decode ms | lean ms | group ms | topic ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        r = measure(size, args.repeat)
        ratio = r["deflated_bytes"] / r["json_bytes"]
        print(
            f"| {size} | {r['json_bytes'] / 1024:,.1f} KiB "
            f"| {r['deflated_bytes'] / 1024:,.1f} KiB ({ratio:.0%}) "
            f"| {r['lean_bytes'] / 1024:,.1f} KiB "
            f"| {r['encode_ms']:.2f} | {r['deflate_ms']:.2f} | {r['decode_ms']:.2f} "
            f"| {r['lean_ms']:.2f} | {r['group_ms']:.3f} | {r['topic_ms']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
