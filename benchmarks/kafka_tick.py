"""``python -m benchmarks.kafka_tick``: what one tick of ``--source kafka`` costs on a real
broker of a given size.

It starts a single-node Apache Kafka broker (the one the tests use, ``tests/kafka_broker.py``:
Maven fetches it once, Java 17 runs it), creates TOPICS x PARTITIONS topics with a few
messages in every partition and GROUPS consumer groups that committed offsets on
TOPICS_PER_GROUP topics each, then runs :class:`~takhin_ws.sources.kafka.KafkaSource`
the way the server does (one collect every INTERVAL seconds, deadline 0.9 x INTERVAL)
and reports per tick: wall time, CPU time of this process (every thread: the Trio
thread, the worker threads, librdkafka's), the 2.9 ``metrics`` message in bytes, and the
worst lateness of a 10 ms Trio timer meanwhile (how long the event loop was held).

Example (from the repository root; ~3-5 min, most of it creating the partitions)::

    .venv/bin/python -m benchmarks.kafka_tick --topics 1000 --partitions 12 --groups 300
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from benchmarks.common import raise_nofile
from kafka_broker import KafkaBroker, java_binary, kafka_classpath
from takhin_ws.core.snapshot import MetricsSourceError
from takhin_ws.sources.kafka import KafkaSource
from takhin_ws.wire.codec import encode
from takhin_ws.wire.messages import Envelope

#: Topics created per CreateTopics request.
CREATE_BATCH = 100
#: Seconds of lateness probe period.
PROBE = 0.01
#: Messages written to every partition (so offsets and lag are not all zero).
MESSAGES_PER_PARTITION = 5


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_cluster(bootstrap: str, args: argparse.Namespace) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    names = [f"bench-{index:05d}" for index in range(args.topics)]
    started = time.monotonic()
    for start in range(0, len(names), CREATE_BATCH):
        batch = [NewTopic(n, args.partitions, 1) for n in names[start : start + CREATE_BATCH]]
        for future in admin.create_topics(batch, request_timeout=300).values():
            future.result(timeout=300)
    deadline = time.monotonic() + 600
    while True:  # every partition has a leader (a fresh metadata request each time)
        topics = admin.list_topics(timeout=60).topics
        led = sum(
            1
            for name in names
            if name in topics
            and len(topics[name].partitions) == args.partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
        )
        if led == len(names):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {led} of {len(names)} topics have leaders")
        time.sleep(1)
    log(f"{args.topics} topics x {args.partitions} created in {time.monotonic() - started:.0f} s")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    for name in names:
        for partition in range(args.partitions):
            for _ in range(MESSAGES_PER_PARTITION):
                producer.produce(name, value=b"x" * 100, partition=partition)
        producer.poll(0)
    assert producer.flush(120) == 0
    requests = {}
    for group in range(args.groups):
        first = group * args.topics_per_group
        topics = [names[(first + k) % len(names)] for k in range(args.topics_per_group)]
        offsets = [
            TopicPartition(t, p, 1 + (group + p) % MESSAGES_PER_PARTITION)
            for t in topics
            for p in range(args.partitions)
        ]
        group_id = f"bench-group-{group:04d}"
        requests[group_id] = ConsumerGroupTopicPartitions(group_id, offsets)
    deadline = time.monotonic() + 300
    while requests:  # commits made while __consumer_offsets is being created get lost
        futures = [
            future
            for request in requests.values()
            for future in admin.alter_consumer_group_offsets([request]).values()
        ]
        for future in futures:
            future.result(timeout=120)
        listed = {g.group_id for g in admin.list_consumer_groups().result(timeout=60).valid}
        requests = {g: r for g, r in requests.items() if g not in listed}
        if requests and time.monotonic() > deadline:
            raise RuntimeError(f"{len(requests)} groups could not commit")
    log(f"{args.groups} groups committed on {args.topics_per_group} topics each")


async def measure(bootstrap: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    lateness: list[float] = []
    rows: list[dict[str, Any]] = []

    async def probe() -> None:
        while True:
            before = trio.current_time()
            await trio.sleep(PROBE)
            lateness.append(trio.current_time() - before - PROBE)

    timeout = args.timeout or args.interval * 0.9  # as source_for sets it
    async with KafkaSource(bootstrap, timeout=timeout) as source, trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        start = trio.current_time()
        for tick in range(args.ticks + 1):
            await trio.sleep_until(start + tick * args.interval)
            lateness.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                snapshot = await source.collect()
            except MetricsSourceError as exc:  # a tick past its deadline: say so, go on
                row: dict[str, Any] = {"tick": tick, "error": str(exc)}
            else:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                metrics = snapshot.metrics
                frame = encode(Envelope(payload=metrics, timestamp=metrics.timestamp))
                row = {
                    "tick": tick,
                    "wall_ms": round(wall * 1000, 1),
                    "cpu_ms": round(cpu * 1000, 1),
                    "frame_bytes": len(frame),
                    "loop_late_ms": round(max(lateness, default=0.0) * 1000, 1),
                    "topics": len(metrics.topic_stats),
                    "groups": len(snapshot.groups),
                }
            rows.append(row)
            log(orjson.dumps(rows[-1]).decode())
        nursery.cancel_scope.cancel()
    return rows[1:]  # the first tick warms the client up (connections, metadata cache)


def summary(all_rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    rows = [row for row in all_rows if "error" not in row]

    def stat(key: str) -> dict[str, float] | None:
        values = [row[key] for row in rows]
        if not values:
            return None
        return {"median": statistics.median(values), "max": max(values)}

    return {
        "topics": args.topics,
        "partitions": args.topics * args.partitions,
        "groups": args.groups,
        "committed_partitions": args.groups * args.topics_per_group * args.partitions,
        "ticks": len(all_rows),
        "failed_ticks": len(all_rows) - len(rows),
        "interval_s": args.interval,
        "wall_ms": stat("wall_ms"),
        "cpu_ms": stat("cpu_ms"),
        "loop_late_ms": stat("loop_late_ms"),
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
    parser.add_argument(
        "--timeout", type=float, help="collect deadline (default: 0.9 x interval, as served)"
    )
    parser.add_argument("--debug", action="store_true", help="log each request's time")
    args = parser.parse_args()
    if args.debug:
        logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
        logging.getLogger("takhin_ws.metrics").setLevel(logging.DEBUG)
        logging.getLogger("takhin_ws.metrics.librdkafka").setLevel(logging.INFO)
    raise_nofile()  # the broker inherits it: a partition holds a few files open
    workdir = Path(tempfile.mkdtemp(prefix="takhin-ws-kafka-bench-"))
    broker = KafkaBroker(java_binary(), kafka_classpath(), workdir, heap=args.heap)
    try:
        broker.start()
        log(f"broker on {broker.bootstrap}")
        build_cluster(broker.bootstrap, args)
        rows = trio.run(measure, broker.bootstrap, args)
        print(orjson.dumps(summary(rows, args)).decode())
    except BaseException:
        log(f"failed; the broker's log ends with:\n{broker.log()}")
        raise
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
