"""The kafka source reads both major versions of Apache Kafka the compatibility table
names (``docs/operations.md``): 4.x (every other Kafka test) and 3.x here, as served
(the collector in its own process), topics, offsets, lag and a group with a member."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
from confluent_kafka import Consumer

from kafka_broker import KafkaBroker, commit, create_topic, produce, unique
from takhin_ws import GroupInfo, Snapshot
from takhin_ws.sources.kafka.source import KafkaSource

pytestmark = pytest.mark.slow

#: Bound on waiting for the group to be stable with its member.
WAIT = 60.0


async def run(fn: Callable[..., object], *args: Any) -> None:
    await trio.to_thread.run_sync(lambda: fn(*args))


async def test_a_3x_broker_is_read_whole(kafka3: KafkaBroker) -> None:
    topic, lagging, joined = unique("orders"), unique("billing"), unique("live")
    await run(create_topic, kafka3.bootstrap, topic, 3)
    await run(produce, kafka3.bootstrap, topic, {0: 5, 1: 7, 2: 9})
    await run(commit, kafka3.bootstrap, lagging, topic, {0: 2, 1: 7})
    consumer = Consumer({"bootstrap.servers": kafka3.bootstrap, "group.id": joined, "log_level": 0})
    consumer.subscribe([topic])
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            consumer.poll(0.1)

    async with KafkaSource(kafka3.bootstrap, timeout=10.0) as source, trio.open_nursery() as n:
        n.start_soon(run, poll)
        try:
            with trio.fail_after(WAIT):
                while True:
                    snapshot: Snapshot = await source.collect()
                    if snapshot.groups.get(joined) == GroupInfo(state="Stable", members=1):
                        break
                    await trio.sleep(0.5)
        finally:
            stop.set()
    await run(consumer.close)
    (stats,) = [t for t in snapshot.metrics.topic_stats if t.name == topic]
    assert (stats.partitions, stats.total_messages) == (3, 21)
    (lag,) = [c for c in snapshot.metrics.consumer_lags if c.group_id == lagging]
    assert lag.total_lag == 3 + 0  # partition 2 has no commit: not counted
    assert snapshot.groups[lagging] == GroupInfo(state="Empty", members=0)
