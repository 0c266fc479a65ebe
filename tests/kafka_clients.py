"""Independent Kafka clients for the lag tests: a producer at a known rate and a consumer
the test steers (pause, resume, throttle, rewind, close), each in a thread of its own.

Both are context managers: leaving the ``with`` block stops the thread and closes the
client whatever happened. The consumer's client is only ever touched by its own thread
(confluent-kafka's ``Consumer`` is not thread-safe): the test hands it commands, which
run between two polls, and waits for them to be done.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

#: Seconds a command to the consumer's thread may take (a rebalance included).
COMMAND_TIMEOUT = 60.0
#: Messages the consumer asks for at most per poll, and how long a poll waits.
BATCH = 200
POLL = 0.05


class PacedProducer:
    """*rate* messages per second to *topic*, spread over *partitions* in turn."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float) -> None:
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.sent = 0
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"produce {topic}", daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            due = start + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                continue
            self._producer.produce(self.topic, value=b"m", partition=self.sent % self.partitions)
            self._producer.poll(0)
            self.sent += 1

    def __enter__(self) -> PacedProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._producer.flush(30)


class SteeredConsumer:
    """A member of *group* reading *topic*: it commits what it read after every batch
    (no auto-commit), at most *rate* messages per second (``None``: as fast as it can)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self.rate: float | None = None
        self.paused = False
        self._config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10_000,
            "log_level": 0,
        }
        self._commands: queue.Queue[tuple[Callable[[Consumer], Any], queue.Queue[Any]]] = (
            queue.Queue()
        )
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"consume {group}", daemon=True)

    # --- the thread ---

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            consumer.subscribe([self.topic])
            read, started = 0, time.monotonic()
            while not self._stop.is_set():
                self._serve(consumer)
                if self.rate is not None and read > self.rate * (time.monotonic() - started):
                    self._stop.wait(POLL)  # ahead of the allowed rate
                    continue
                messages = consumer.consume(num_messages=BATCH, timeout=POLL)
                if messages and not self.paused:
                    consumer.commit(asynchronous=False)
                read += len(messages)
                if self.rate is None:
                    read, started = 0, time.monotonic()
        finally:
            self._serve(consumer)
            consumer.close()  # leaves the group
            self._closed.set()

    def _serve(self, consumer: Consumer) -> None:
        while True:
            try:
                command, answer = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                answer.put(("ok", command(consumer)))
            except Exception as exc:  # handed back to the test
                answer.put(("error", exc))

    # --- the test's side (blocking: call from a worker thread) ---

    def do(self, command: Callable[[Consumer], Any]) -> Any:
        """Run *command* with the client in its thread; its result (or its exception)."""
        answer: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._commands.put((command, answer))
        kind, value = answer.get(timeout=COMMAND_TIMEOUT)
        if kind == "error":
            raise value
        return value

    def assigned(self) -> bool:
        return bool(self.do(lambda c: c.assignment()))

    def pause(self) -> None:
        """Stop reading (and so committing) while staying a member: it keeps polling."""

        def pause(consumer: Consumer) -> None:
            try:
                consumer.commit(asynchronous=False)  # what was read so far
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing new to commit
                    raise
            consumer.pause(consumer.assignment())
            self.paused = True

        self.do(pause)

    def resume(self, rate: float | None = None) -> None:
        def resume(consumer: Consumer) -> None:
            self.rate = rate
            self.paused = False
            consumer.resume(consumer.assignment())

        self.do(resume)

    def committed(self) -> dict[int, int]:
        """The group's committed offset of each partition it is assigned."""

        def ask(consumer: Consumer) -> dict[int, int]:
            found = consumer.committed(consumer.assignment(), timeout=10)
            return {tp.partition: tp.offset for tp in found}

        result: dict[int, int] = self.do(ask)
        return result

    def rewind(self, back: int) -> dict[int, int]:
        """Reset the committed offsets *back* messages (not below 0), as an operator's
        offset reset does, and read again from there. Returns the new offsets."""

        def rewind(consumer: Consumer) -> dict[int, int]:
            found = consumer.committed(consumer.assignment(), timeout=10)
            target = [
                TopicPartition(self.topic, tp.partition, max(tp.offset - back, 0)) for tp in found
            ]
            consumer.commit(offsets=target, asynchronous=False)
            for tp in target:
                consumer.seek(tp)
            return {tp.partition: tp.offset for tp in target}

        result: dict[int, int] = self.do(rewind)
        return result

    def close(self) -> None:
        """Leave the group now (the thread ends; members drop to 0)."""
        self._stop.set()
        self._closed.wait(COMMAND_TIMEOUT)


@contextmanager
def steered_consumer(bootstrap: str, group: str, topic: str) -> Iterator[SteeredConsumer]:
    consumer = SteeredConsumer(bootstrap, group, topic)
    consumer._thread.start()
    try:
        yield consumer
    finally:
        consumer.close()
        consumer._thread.join(timeout=COMMAND_TIMEOUT)
