"""The cluster ``benchmarks/kafka_tick.py`` measures: TOPICS x PARTITIONS topics with a
few messages in every partition, and GROUPS consumer groups that committed offsets on
TOPICS_PER_GROUP topics each (blocking; confluent-kafka's admin client and producer)."""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

#: Topics created per CreateTopics request.
CREATE_BATCH = 100
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
