"""The in-memory bus: ``await publish`` cuts a big snapshot's publish into steps (its
dicts in pieces, its compression in a worker thread) with the bytes of
``publish_nowait``; offsets stay consecutive whatever publishes in between."""

from __future__ import annotations

import threading

import orjson
import pytest
import trio

from takhin_ws.core.encoding import PIECE_WEIGHT, Prepared
from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.ingest.bus import THREAD_MIN_SIZE, MemoryBus, Published
from takhin_ws.wire.messages import MonitoringMetrics, TopicCreated, TopicStats
from takhin_ws.wire.websocket.frames import Outbound, Variant

DEFLATE = Variant(window_bits=15)


def cluster(topics: int) -> MonitoringMetrics:
    stats = tuple(
        TopicStats(
            name=f"topic-{t}",
            partitions=12,
            total_messages=t,
            total_bytes=t * 100,
            produce_rate=1.5,
            fetch_rate=0.5,
        )
        for t in range(topics)
    )
    return MonitoringMetrics(topic_stats=stats, timestamp=1)


#: Three pieces' worth of topics, and over the size compressed in a worker thread.
BIG = cluster(PIECE_WEIGHT * 3)


def hub() -> Hub:
    return Hub(epoch="e1", wall_clock=lambda: 1_700_000_000.0)


def drain(sub: QueueSubscriber) -> list[Outbound]:
    return sub.queue.get_batch_nowait() if sub.queue else []


def offsets(sub: QueueSubscriber) -> list[int]:
    return [orjson.loads(item.payload)["offset"] for item in drain(sub)]


async def test_a_big_snapshot_is_published_in_steps_with_the_same_bytes() -> None:
    bus, twin = MemoryBus(hub()), MemoryBus(hub())
    sub = QueueSubscriber()
    bus.hub.add_client(sub, ["metrics"])
    ran = 0
    done = False

    async def other_task() -> None:
        nonlocal ran
        while not done:
            ran += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        ran = 0
        published = await bus.publish("metrics", BIG, stale=False)
        done = True
    assert ran >= 3  # it ran between the pieces
    assert published == Published("metrics", "metrics", 1, "e1")
    (item,) = drain(sub)
    assert twin.publish_nowait("metrics", BIG, stale=False) == published
    assert item.frame == twin.hub.latest("metrics").frame  # type: ignore[union-attr]


async def test_a_big_compression_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = Prepared.compress

    def compress(self: Prepared) -> None:
        threads.append(threading.current_thread())
        real(self)

    monkeypatch.setattr(Prepared, "compress", compress)
    bus = MemoryBus(hub())
    full, lean = QueueSubscriber(), QueueSubscriber()
    bus.hub.add_client(full, ["metrics"], variant=DEFLATE)
    bus.hub.add_client(lean, ["metrics:lean"], variant=DEFLATE)
    assert len(bus.hub.prepare("metrics", BIG).item.payload) >= THREAD_MIN_SIZE
    await bus.publish("metrics", BIG)
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()
    (got,) = drain(full)
    assert got.frame[0] & 0x40  # RSV1: compressed
    (view,) = drain(lean)
    assert view.route == "metrics:lean"
    assert view.frame[0] & 0x40
    # a small snapshot is compressed in the fan-out: no thread
    await bus.publish("metrics", cluster(3))
    assert len(threads) == 1
    assert len(drain(full)) == 1


async def test_a_publish_in_between_takes_the_next_offset_and_order_holds() -> None:
    bus = MemoryBus(hub())
    sub = QueueSubscriber()
    bus.hub.add_client(sub, ["metrics"])
    seen: list[int] = []

    async def interloper() -> None:
        await trio.lowlevel.checkpoint()  # the big publish is between two pieces now
        bus.publish_nowait("metrics", cluster(1))
        seen.extend(offsets(sub))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interloper)
        published = await bus.publish("metrics", BIG)
    assert seen == [1]
    assert published.offset == 2
    assert offsets(sub) == [2]
    assert bus.hub.offset("metrics") == 2


async def test_a_cancelled_publish_publishes_nothing() -> None:
    bus = MemoryBus(hub())
    sub = QueueSubscriber()
    bus.hub.add_client(sub, ["metrics"])
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_soon() -> None:
                await trio.lowlevel.checkpoint()
                scope.cancel()

            nursery.start_soon(cancel_soon)
            await bus.publish("metrics", BIG)
    assert scope.cancelled_caught
    assert bus.hub.offset("metrics") == 0
    assert drain(sub) == []
    assert (await bus.publish("metrics", cluster(1))).offset == 1


async def test_an_event_is_published_as_by_publish_nowait() -> None:
    bus, twin = MemoryBus(hub()), MemoryBus(hub())
    sub = QueueSubscriber()
    bus.hub.add_client(sub, ["topics"])
    event = TopicCreated(name="orders", partitions=3)
    published = await bus.publish("topic:orders", event)
    assert published == twin.publish_nowait("topic:orders", event)
    assert [item.frame for item in drain(sub)] == [twin.hub.latest("topics").frame]  # type: ignore[union-attr]


async def test_an_event_costs_one_checkpoint() -> None:
    """Nothing to let go of after an event: no step more than the one it always takes."""
    bus = MemoryBus(hub())
    with trio.testing.assert_checkpoints():
        await bus.publish("topics", TopicCreated(name="orders", partitions=1))
    steps = 0

    class Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal steps
            if task is me:
                steps += 1

    me = trio.lowlevel.current_task()
    count = Count()
    trio.lowlevel.add_instrument(count)
    await bus.publish("topics", TopicCreated(name="payments", partitions=1))
    trio.lowlevel.remove_instrument(count)
    assert steps == 1  # resumed once: after its one checkpoint
