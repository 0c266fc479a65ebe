"""What the Kafka tests do to the broker (``kafka_broker.py`` re-exports these): create,
fill, delete topics, commit offsets, read end offsets. Blocking calls of confluent-kafka:
run them in a thread from async tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewTopic


def unique(prefix: str) -> str:
    """A topic or group name no other test uses (the broker is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def end_offsets(admin: AdminClient, topic: str, partitions: Iterable[int]) -> list[int]:
    """The end offsets of *partitions* of *topic*; raises ``KafkaException``."""
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    wanted = {TopicPartition(topic, p): latest for p in partitions}
    futures = admin.list_offsets(wanted, request_timeout=5)
    return [int(future.result(timeout=10).offset) for future in futures.values()]


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = admin_client(bootstrap)  # kept alive until the futures are done
    new = NewTopic(name, num_partitions=partitions, replication_factor=1)
    for future in admin.create_topics([new], request_timeout=30).values():
        future.result(timeout=30)
    # ready once every partition has a leader that answers for its offsets
    deadline = time.monotonic() + 30
    while True:
        try:
            end_offsets(admin, name, range(partitions))
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete *name* and wait until every partition of it answers "unknown topic"."""
    admin = admin_client(bootstrap)
    count = len(admin.list_topics(name, timeout=10).topics[name].partitions)
    for future in admin.delete_topics([name], request_timeout=30).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    remaining = set(range(count))
    while remaining and time.monotonic() < deadline:
        for partition in sorted(remaining):
            try:
                end_offsets(admin, name, [partition])
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    remaining.discard(partition)
        time.sleep(0.05)
    assert not remaining, f"topic {name} still answers after its deletion"


def produce(bootstrap: str, topic: str, counts: Mapping[int, int]) -> None:
    """``counts[p]`` messages to partition ``p``, all acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
    for partition, count in counts.items():
        for index in range(count):
            producer.produce(topic, value=b"m%d" % index, partition=partition)
    assert producer.flush(30) == 0, "messages not acknowledged"


def commit(bootstrap: str, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Commit *offsets* (partition -> offset) for *group*, without joining it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()
