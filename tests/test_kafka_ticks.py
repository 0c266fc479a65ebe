"""A kafka tick is whole or it fails, and a stuck client is replaced (real broker).

The collector (``sources/kafka/collector.py``) runs here in the test's own thread;
errors the broker would give only under a restart or a leader move are put in front of
its real answers: one partition's ListOffsets answer replaced by ``NOT_LEADER`` (in the
answer read over the protocol directly, then in librdkafka's, which the source asks
next), a metadata request that fails. (Which groups a tick describes:
``test_kafka_groups.py``.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import pytest
import trio
from confluent_kafka import KafkaError

from kafka_broker import KafkaBroker, create_topic, produce, unique
from kafka_ops import delete_topic
from takhin_ws import Hub, MetricsProducer, Snapshot
from takhin_ws.sources.kafka import collector as collector_module
from takhin_ws.sources.kafka.admin import offsets as offsets_module
from takhin_ws.sources.kafka.admin.framing import Address
from takhin_ws.sources.kafka.admin.listoffsets import LATEST, Found
from takhin_ws.sources.kafka.admin.requests import Batch
from takhin_ws.sources.kafka.collector import KafkaCollector
from takhin_ws.sources.kafka.source import KafkaSourceError

pytestmark = pytest.mark.slow

#: A tick's time in these tests: generous, the broker is shared and the machine loaded.
TIMEOUT = 10.0
#: Bound on waiting for a deleted topic to be gone (seconds).
GONE_WAIT = 30.0
#: The partition error a leader that moved answers.
NOT_LEADER_OR_FOLLOWER = 6


def break_partition(
    monkeypatch: pytest.MonkeyPatch, collector: KafkaCollector, topic: str, times: float
) -> list[int]:
    """Partition 0 of *topic* answers NOT_LEADER to its first *times* end-offset
    askings through librdkafka (and to every asking over the protocol directly,
    which sends it to librdkafka); returns the list of librdkafka askings made (one
    item per asking)."""
    original: Callable[[list[Any], float], list[Batch]] = collector.admin._request_offsets
    target = ("end", (topic, 0))
    asked: list[int] = []
    direct = collector.admin.direct
    assert direct is not None
    read = direct.read

    def moved(
        by_broker: dict[Address, dict[str, list[int]]], timestamp: int, deadline: float
    ) -> tuple[Found, Found, dict[Address, str]]:
        found, errors, failed = read(by_broker, timestamp, deadline)
        if timestamp == LATEST and found.pop(target[1], None) is not None:
            errors[target[1]] = NOT_LEADER_OR_FOLLOWER
        return found, errors, failed

    monkeypatch.setattr(direct, "read", moved)

    def broken(unpack: Callable[[Any], Iterable[tuple[Any, Any]]]) -> Callable[[Any], Any]:
        def answers(result: Any) -> Iterator[tuple[Any, Any]]:
            for key, answer in unpack(result):
                if key == target:
                    asked.append(1)
                    if len(asked) <= times:
                        yield key, KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)
                        continue
                yield key, answer

        return answers

    def request(keys: list[Any], timeout: float) -> list[Batch]:
        return [(f, k, broken(unpack)) for f, k, unpack in original(keys, timeout)]

    monkeypatch.setattr(collector.admin, "_request_offsets", request)
    return asked


def topic_messages(snapshot: Snapshot, name: str) -> int | None:
    found = [t.total_messages for t in snapshot.metrics.topic_stats if t.name == name]
    return found[0] if found else None


def test_a_partition_that_fails_once_is_asked_again_and_the_tick_is_whole(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("retried")
    create_topic(kafka.bootstrap, name, 2)
    produce(kafka.bootstrap, name, {0: 4, 1: 6})
    collector = KafkaCollector(kafka.bootstrap)
    try:
        asked = break_partition(monkeypatch, collector, name, times=1)
        snapshot = collector.collect(TIMEOUT)
    finally:
        collector.close()
    assert len(asked) == 2  # the failed answer, then the good one
    assert topic_messages(snapshot, name) == 10


def test_a_partition_failing_to_the_deadline_fails_the_tick_naming_it(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("unled")
    create_topic(kafka.bootstrap, name, 2)
    collector = KafkaCollector(kafka.bootstrap)
    try:
        assert topic_messages(collector.collect(TIMEOUT), name) == 0
        asked = break_partition(monkeypatch, collector, name, times=float("inf"))
        with pytest.raises(KafkaSourceError) as caught:
            collector.collect(2.0)
    finally:
        collector.close()
    assert len(asked) > 2  # asked again and again within the deadline
    message = str(caught.value)
    assert message.startswith(f"kafka {kafka.bootstrap}: offsets request incomplete")
    assert f"{name}[0]" in message
    assert "not leader" in message.lower()


async def test_a_tick_with_a_failed_partition_is_published_stale_not_fresh(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("partial")
    create_topic(kafka.bootstrap, name, 2)
    produce(kafka.bootstrap, name, {0: 1, 1: 2})
    hub = Hub()
    collector = KafkaCollector(kafka.bootstrap)
    timeout = [TIMEOUT]

    class Source:  # the collector as a source, in a thread of the test
        async def collect(self) -> Snapshot:
            return await trio.to_thread.run_sync(collector.collect, timeout[0])

    try:
        producer = MetricsProducer(hub, Source(), collect_timeout=TIMEOUT + 1)
        await producer.tick()
        good = hub.latest("metrics")
        assert good is not None
        assert producer.ready
        assert not producer.statistics().stale
        break_partition(monkeypatch, collector, name, times=float("inf"))
        timeout[0] = 2.0
        produce(kafka.bootstrap, name, {1: 5})  # a change the partial tick must not show
        await producer.tick()
    finally:
        collector.close()
    latest = hub.latest("metrics")
    assert latest is not None
    assert producer.statistics().stale
    # the last whole snapshot again, marked stale
    assert orjson.loads(latest.payload)["data"] == orjson.loads(good.payload)["data"]
    assert orjson.loads(latest.payload)["stale"] is True
    assert producer.statistics().failures == 1


def test_k_failed_ticks_make_a_new_client_and_the_next_tick_is_fresh(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    failures = [KafkaSourceError("kafka test: metadata request failed: injected")] * 2

    class Flaky(KafkaCollector):
        def _metadata(self, deadline: float) -> dict[str, list[int]]:
            if failures:
                raise failures.pop()
            return super()._metadata(deadline)

    collector = Flaky(kafka.bootstrap, reset_after=2)
    try:
        first = collector.admin
        with pytest.raises(KafkaSourceError):
            collector.collect(TIMEOUT)
        assert collector.admin is first
        with pytest.raises(KafkaSourceError):
            collector.collect(TIMEOUT)
        assert collector.admin is not first  # closed, and a new one made
        assert collector.collect(TIMEOUT).metrics.cluster_health.total_topics >= 0
        assert collector.recovery.streak == 0
    finally:
        collector.close()
    (warning,) = [r for r in caplog.records if "opening a new one" in r.getMessage()]
    assert "injected" in warning.getMessage()  # the cause of now, not of the outage start


def test_every_list_offsets_path_gives_the_same_offsets(kafka: KafkaBroker) -> None:
    """ListOffsets over the protocol directly, librdkafka's per-call ListOffsets (one
    future a call: what the source asks when the first cannot be used) and its public
    one (a future a partition), which the source falls back to if the second is not
    there."""
    name = unique("paths")
    create_topic(kafka.bootstrap, name, 3)
    produce(kafka.bootstrap, name, {0: 2, 1: 3, 2: 4})
    collector = KafkaCollector(kafka.bootstrap)
    snapshots = []
    try:
        snapshots.append(collector.collect(TIMEOUT))
        assert collector.admin.direct is not None
        collector.admin.direct.close()
        collector.admin.direct = None
        for per_call in (True, False):
            collector.admin._per_call = per_call
            collector.admin._starts_read = float("-inf")  # start offsets read again too
            snapshots.append(collector.collect(TIMEOUT))
    finally:
        collector.close()
    assert [topic_messages(s, name) for s in snapshots] == [9, 9, 9]
    direct, *others = [{t.name: t.total_messages for t in s.metrics.topic_stats} for s in snapshots]
    assert all(stats == direct for stats in others)


def test_metadata_is_asked_again_after_its_refresh_or_once_a_topic_is_gone(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("remembered")
    create_topic(kafka.bootstrap, name, 2)
    asked: list[int] = []

    class Counting(KafkaCollector):
        def _metadata(self, deadline: float) -> dict[str, list[int]]:
            asked.append(1)
            return super()._metadata(deadline)

    collector = Counting(kafka.bootstrap)
    try:
        collector.collect(TIMEOUT)
        assert topic_messages(collector.collect(TIMEOUT), name) == 0
        assert len(asked) == 1  # the second tick took the first one's
        delete_topic(kafka.bootstrap, name)
        for _ in range(int(GONE_WAIT / 0.2)):  # (deleting takes the broker a moment)
            before = len(asked)
            if topic_messages(collector.collect(TIMEOUT), name) is None:
                break
            time.sleep(0.2)
        collector.collect(TIMEOUT)
        assert len(asked) > before  # a tick saw it gone: the next one asked
        monkeypatch.setattr(collector_module, "METADATA_REFRESH", 0.0)
        count = len(asked)
        collector.collect(TIMEOUT)
    finally:
        collector.close()
    assert len(asked) == count + 1


def test_a_start_offsets_refresh_due_on_a_metadata_tick_waits_one_tick(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both periodic reads of every partition due every tick: they take turns (the
    start offsets' refresh never waits two ticks in a row), and the offsets stay right."""
    name = unique("staggered")
    create_topic(kafka.bootstrap, name, 2)
    produce(kafka.bootstrap, name, {0: 2, 1: 3})
    monkeypatch.setattr(collector_module, "METADATA_REFRESH", 0.0)
    monkeypatch.setattr(offsets_module, "START_OFFSETS_REFRESH", 0.0)
    collector = KafkaCollector(kafka.bootstrap)
    metadata: list[int] = []
    starts: list[int] = []  # per tick: whether the start offsets of *name* were read
    original = collector.admin._read_directly

    def read(kind: str, topics: Any, deadline: float) -> Any:
        if kind == "start" and name in topics:
            starts[-1] = 1
        return original(kind, topics, deadline)

    def asked(deadline: float) -> dict[str, list[int]]:
        metadata[-1] = 1
        return KafkaCollector._metadata(collector, deadline)

    monkeypatch.setattr(collector.admin, "_read_directly", read)
    monkeypatch.setattr(collector, "_metadata", asked)
    try:
        for _ in range(5):
            metadata.append(0)
            starts.append(0)
            assert topic_messages(collector.collect(TIMEOUT), name) == 5
    finally:
        collector.close()
    assert metadata == [1, 1, 1, 1, 1]
    assert starts == [1, 0, 1, 0, 1]  # the first tick reads them: none is known yet
