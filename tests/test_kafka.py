"""The ``kafka`` source against a real Apache Kafka broker (``kafka_broker.py``).

Real confluent-kafka producers and consumers make known offsets, commits and groups;
:class:`KafkaSource` must report exactly those (and a known produce rate within 15 %).
The broker is shared by the session, so every test works on topics and groups of its
own and looks only at them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from kafka_broker import (
    KafkaBroker,
    commit,
    create_topic,
    delete_topic,
    free_port,
    produce,
    unique,
)
from takhin_ws import GroupInfo, Snapshot, TopicStats
from takhin_ws.sources import (
    PrometheusSource,
)
from takhin_ws.sources.kafka.collector import KafkaCollector
from takhin_ws.sources.kafka.source import KafkaSource, KafkaSourceError

pytestmark = pytest.mark.slow

#: Bound on waiting for the broker to show a change (a group joining...).
WAIT = 60.0


class StepClock:
    """A monotonic clock the test moves: rates over exactly known windows."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def source(broker: KafkaBroker, **kwargs: Any) -> AsyncIterator[KafkaSource]:
    """The source as the server runs it: its collector in a process of its own."""
    async with KafkaSource(broker.bootstrap, timeout=20.0, **kwargs) as src:
        yield src


class InProcess:
    """The collector run in a thread of the test, where a test clock can reach it."""

    def __init__(self, collector: KafkaCollector) -> None:
        self.collector = collector

    async def collect(self) -> Snapshot:
        return await trio.to_thread.run_sync(self.collector.collect, 20.0)


@asynccontextmanager
async def in_process(broker: KafkaBroker, **kwargs: Any) -> AsyncIterator[InProcess]:
    collector = KafkaCollector(broker.bootstrap, **kwargs)
    try:
        yield InProcess(collector)
    finally:
        await trio.to_thread.run_sync(collector.close)


def topic_of(snapshot: Snapshot, name: str) -> TopicStats | None:
    return next((t for t in snapshot.metrics.topic_stats if t.name == name), None)


async def run(fn: Callable[..., object], *args: Any) -> None:
    await trio.to_thread.run_sync(lambda: fn(*args))


async def until(src: KafkaSource | InProcess, done: Callable[[Snapshot], bool]) -> Snapshot:
    """Collect until *done* holds for a snapshot (bounded)."""
    with trio.fail_after(WAIT):
        while True:
            snapshot = await src.collect()
            if done(snapshot):
                return snapshot
            await trio.sleep(0.2)


async def test_topics_partitions_and_messages(kafka: KafkaBroker) -> None:
    name = unique("orders")
    await run(create_topic, kafka.bootstrap, name, 3)
    await run(produce, kafka.bootstrap, name, {0: 5, 1: 7, 2: 11})
    async with source(kafka) as src:
        snapshot = await src.collect()
    stats = topic_of(snapshot, name)
    assert stats == TopicStats(
        name=name,
        partitions=3,
        total_messages=23,
        total_bytes=0,
        produce_rate=0.0,  # no previous tick to measure from
        fetch_rate=0.0,
    )
    health = snapshot.metrics.cluster_health
    assert health.total_topics == len(snapshot.metrics.topic_stats)
    assert health.total_partitions == sum(t.partitions for t in snapshot.metrics.topic_stats)
    assert health.total_consumers == len(snapshot.groups)


async def test_internal_topics_are_hidden_unless_asked_for(kafka: KafkaBroker) -> None:
    internal = unique("__takhin_internal")
    await run(create_topic, kafka.bootstrap, internal, 1)
    async with source(kafka) as hidden, source(kafka, show_internal_topics=True) as shown:
        assert topic_of(await hidden.collect(), internal) is None
        assert topic_of(await shown.collect(), internal) is not None


async def test_produce_rate_from_end_offsets_exact_over_a_known_window(
    kafka: KafkaBroker,
) -> None:
    name = unique("rates")
    await run(create_topic, kafka.bootstrap, name, 2)
    clock = StepClock()
    async with in_process(kafka, clock=clock) as src:
        await src.collect()
        await run(produce, kafka.bootstrap, name, {0: 30, 1: 50})
        clock.now += 4.0
        snapshot = await src.collect()
    stats = topic_of(snapshot, name)
    assert stats is not None
    assert stats.produce_rate == pytest.approx(80 / 4.0)
    assert stats.total_messages == 80


async def test_a_known_produce_rate_shows_within_15_percent(kafka: KafkaBroker) -> None:
    """A real producer at about RATE messages/s on the real clock. The rate it really
    achieved (its acknowledged messages between the source's two observations, timed
    by the delivery reports) is the known rate: a loaded machine may slow the producer
    down, never the comparison."""
    rate, seconds = 200.0, 3.0
    name = unique("paced")
    await run(create_topic, kafka.bootstrap, name, 3)
    acked: list[float] = []
    observed: list[float] = []

    def observe() -> float:
        observed.append(time.monotonic())
        return observed[-1]

    def paced() -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < seconds + 2.0:
            due = int(elapsed * rate)
            while sent < due:
                producer.produce(
                    name,
                    value=b"x",
                    partition=sent % 3,
                    on_delivery=lambda *_: acked.append(time.monotonic()),
                )
                sent += 1
            producer.poll(0)
            time.sleep(0.01)
        producer.flush(30)

    async with in_process(kafka, clock=observe) as src, trio.open_nursery() as nursery:
        nursery.start_soon(run, paced)
        await trio.sleep(0.5)  # the producer is connected and on its schedule
        await src.collect()
        await trio.sleep(seconds)
        snapshot = await src.collect()
    first, second = observed
    known = sum(first < t <= second for t in acked) / (second - first)
    assert known > 0
    stats = topic_of(snapshot, name)
    assert stats is not None
    assert stats.produce_rate == pytest.approx(known, rel=0.15)


async def test_exact_lag_per_partition_from_committed_offsets(kafka: KafkaBroker) -> None:
    name, group = unique("lagged"), unique("billing")
    await run(create_topic, kafka.bootstrap, name, 3)
    await run(produce, kafka.bootstrap, name, {0: 10, 1: 20, 2: 30})
    await run(commit, kafka.bootstrap, group, name, {0: 4, 1: 5, 2: 30})
    clock = StepClock()
    async with in_process(kafka, clock=clock) as src:
        snapshot = await src.collect()
        (lags,) = [c for c in snapshot.metrics.consumer_lags if c.group_id == group]
        assert lags.total_lag == 6 + 15 + 0
        (topic_lag,) = lags.topic_lags
        assert topic_lag.topic == name
        assert topic_lag.total_lag == 21
        observed = [
            (p.partition, p.current_offset, p.log_end_offset, p.lag)
            for p in topic_lag.partition_lags
        ]
        assert observed == [(0, 4, 10, 6), (1, 5, 20, 15), (2, 30, 30, 0)]
        assert snapshot.groups[group] == GroupInfo(state="Empty", members=0)

        # the group commits 6 more on partition 0 in 2 s: fetchRate 3/s, lag shrinks
        await run(commit, kafka.bootstrap, group, name, {0: 10})
        clock.now += 2.0
        snapshot = await src.collect()
    stats = topic_of(snapshot, name)
    assert stats is not None
    assert stats.fetch_rate == pytest.approx(3.0)
    (lags,) = [c for c in snapshot.metrics.consumer_lags if c.group_id == group]
    assert lags.total_lag == 15


async def test_group_is_stable_with_a_member_and_empty_after_it_leaves(
    kafka: KafkaBroker,
) -> None:
    from confluent_kafka import Consumer

    name, group = unique("joined"), unique("analytics")
    await run(create_topic, kafka.bootstrap, name, 2)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )
    consumer.subscribe([name])
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            consumer.poll(0.1)

    async with source(kafka) as src:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, poll)
            try:
                snapshot = await until(
                    src, lambda s: group in s.groups and s.groups[group].state == "Stable"
                )
                assert snapshot.groups[group] == GroupInfo(state="Stable", members=1)
            finally:
                stop.set()
        await run(consumer.close)
        snapshot = await until(
            src, lambda s: group in s.groups and s.groups[group].state == "Empty"
        )
        assert snapshot.groups[group] == GroupInfo(state="Empty", members=0)


def test_a_topic_deleted_in_the_middle_of_a_tick(kafka: KafkaBroker) -> None:
    """Metadata lists the topic, then it is deleted before its offsets are asked."""
    doomed, kept = unique("doomed"), unique("kept")
    create_topic(kafka.bootstrap, doomed, 2)
    create_topic(kafka.bootstrap, kept, 1)

    class DeletingCollector(KafkaCollector):
        def _metadata(self, deadline: float) -> dict[str, list[int]]:
            partitions = super()._metadata(deadline)
            assert doomed in partitions
            delete_topic(kafka.bootstrap, doomed)
            return partitions

    collector = DeletingCollector(kafka.bootstrap)
    try:
        snapshot = collector.collect(20.0)
    finally:
        collector.close()
    assert topic_of(snapshot, doomed) is None
    assert topic_of(snapshot, kept) is not None


async def test_an_unreachable_broker_is_one_clear_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    async with KafkaSource(bootstrap, timeout=1.0) as src:
        with pytest.raises(KafkaSourceError) as caught:
            await src.collect()
    message = str(caught.value)
    assert message.startswith(f"kafka {bootstrap}: ")
    assert "refused" in message.lower()
    assert "%3|" not in capfd.readouterr().err  # librdkafka's own lines stay in our logs


async def test_merged_with_the_brokers_exposition(kafka: KafkaBroker) -> None:
    """Bytes, latency and health from Prometheus; topics, rates and lag from Kafka."""
    name = unique("merged")
    await run(create_topic, kafka.bootstrap, name, 1)
    exposition = (
        f'takhin_storage_disk_usage_bytes{{topic="{name}",partition="0"}} 4096\n'
        "takhin_connections_active 7\n"
        "takhin_go_goroutines 42\n"
        "takhin_go_mem_sys_bytes 1048576\n"
    ).encode()
    statuses = [200, 503]

    def reply(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, stream=httpx.ByteStream(exposition))

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    scrape = PrometheusSource("http://broker.test/metrics", client=client)
    async with client, source(kafka, prometheus=scrape) as src:
        snapshot = await src.collect()
        health = snapshot.metrics.cluster_health
        assert (health.active_connections, health.goroutine_count) == (7, 42)
        assert health.memory_usage_bytes == 1048576
        stats = topic_of(snapshot, name)
        assert stats is not None
        assert (stats.total_bytes, stats.partitions) == (4096, 1)
        # a failed scrape: the Kafka figures still come, the merged ones are 0
        snapshot = await src.collect()
        assert snapshot.metrics.cluster_health.active_connections == 0
        assert topic_of(snapshot, name) is not None
