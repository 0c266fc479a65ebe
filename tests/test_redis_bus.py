"""The Redis Streams bus against a real ``redis-server`` (see ``redis_server.py``).

Several buses in one Trio run play several nodes: each has its own hub and its own
Redis clients, exactly as separate processes would. Every wait is a condition with a
generous deadline (a hang guard, not a timing assertion).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import trio

from redis_server import RedisServer
from takhin_ws import Settings, open_server
from takhin_ws.cluster import bus as bus_module
from takhin_ws.cluster.bus import MIN_STREAM_LENGTH, RedisBus
from takhin_ws.core.encoding import PIECE_WEIGHT
from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.core.metrics.snapshot import Snapshot
from takhin_ws.ingest.bus import BusUnavailableError, EventBus, MemoryBus, in_steps
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import EpochChanged, MonitoringMetrics, TopicCreated, TopicStats
from takhin_ws.wire.websocket.frames import Outbound, Variant

GUARD = 20  # seconds: hang guard of every wait


@pytest.fixture(autouse=True)
def flushed(redis: RedisServer) -> None:
    if not redis.ping():  # a failed test may have left it stopped
        redis.start()
    redis.command("FLUSHALL")


def topic(name: str) -> TopicCreated:
    return TopicCreated(name=name, partitions=1)


def drain(sub: QueueSubscriber) -> list[Outbound]:
    return sub.queue.get_batch_nowait() if sub.queue else []


def notice(item: Outbound) -> tuple[str, str] | None:
    """(epoch, previous) of an ``epoch`` message; None for any other message."""
    payload = decode(item.payload).payload
    if not isinstance(payload, EpochChanged):
        return None
    assert payload.recovered == {"topics": False, "groups": False}
    return payload.epoch, payload.previous


async def wait_until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(GUARD):
        while not predicate():
            await trio.sleep(0.01)


@asynccontextmanager
async def running(redis: RedisServer, **options: Any) -> AsyncIterator[RedisBus]:
    """A bus (and its hub) running until the block ends."""
    hub = Hub(history_size=options.pop("history_size", 50))
    options = {"block": 0.2, "backoff": (0.05, 0.2), **options}
    bus = RedisBus(hub, redis.url, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        yield bus
        nursery.cancel_scope.cancel()


async def test_a_publish_reaches_every_node_identically(redis: RedisServer) -> None:
    async with running(redis) as a, running(redis) as b:
        assert a.healthy
        assert b.healthy
        assert a.hub.epoch == b.hub.epoch
        subs = {}
        for bus in (a, b):
            subs[bus] = QueueSubscriber()
            bus.hub.add_client(subs[bus], ["topic:orders"])
        published = [
            await a.publish("topic:orders", topic("orders")),
            await b.publish("topic:payments", topic("payments")),
            await b.publish("topic:orders", topic("orders")),
        ]
        assert [p.offset for p in published] == [1, 2, 3]
        assert {p.epoch for p in published} == {a.hub.epoch}
        await wait_until(lambda: a.hub.offset("topics") == 3 and b.hub.offset("topics") == 3)
        got_a, got_b = drain(subs[a]), drain(subs[b])
        assert [i.offset for i in got_a] == [1, 3]  # the narrow channel only
        assert [i.payload for i in got_a] == [i.payload for i in got_b]  # byte for byte
        first = decode(got_a[0].payload)
        assert (first.channel, first.offset, first.epoch) == ("topics", 1, a.hub.epoch)
        assert first.payload == topic("orders")
        assert a.hub.replay("topics", 0, a.hub.epoch) == b.hub.replay("topics", 0, b.hub.epoch)


async def test_a_big_snapshot_crosses_in_steps_with_its_views_and_compression(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoded and read back in steps (the publisher's dicts, each reader's decode and
    encoding in pieces, ``in_steps`` letting other tasks run at each), every node's
    clients got the bytes a single node publishes, its lean view and its compressed
    frame included (built ahead of the fan-out)."""
    pieces: list[int] = []
    real = in_steps

    async def counting(steps: Generator[None, None, Any]) -> Any:
        seen = 0

        def counted() -> Generator[None, None, Any]:
            nonlocal seen
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    pieces.append(seen)
                    return done.value
                seen += 1
                yield

        return await real(counted())

    monkeypatch.setattr(bus_module, "in_steps", counting)
    snapshot = big_snapshot()
    single = Hub(epoch="e", wall_clock=lambda: 1.0)
    async with running(redis) as a, running(redis) as b:
        subs = {}
        for bus in (a, b):
            full, lean = QueueSubscriber(), QueueSubscriber()
            bus.hub.add_client(full, ["metrics"], variant=Variant(window_bits=15))
            bus.hub.add_client(lean, ["metrics:lean"])
            subs[bus] = (full, lean)
        published = await a.publish("metrics", snapshot, stale=False)
        await wait_until(lambda: b.hub.offset("metrics") == published.offset)
        await wait_until(lambda: len(pieces) == 3)
        # the publisher's dicts; each reader's decoding (nothing to let go of yet)
        assert sorted(pieces) == [8, 1 + 8 + 8, 1 + 8 + 8]
        single.reset(a.hub.epoch)
        expected = single.publish("metrics", snapshot, stale=False)
        lean_payloads = []
        for bus in (a, b):
            full, lean = subs[bus]
            (got,) = drain(full)
            assert got.frame[0] & 0x40  # compressed
            assert got.payload == replace_timestamp(expected.payload, got.payload)
            (view,) = drain(lean)
            assert view.route == "metrics:lean"
            lean_payloads.append(view.payload)
        assert lean_payloads[0] == lean_payloads[1]


def big_snapshot() -> MonitoringMetrics:
    """A snapshot of ~8 pieces (PIECE_WEIGHT objects each): 8,000 topics."""
    stats = tuple(
        TopicStats(
            name=f"t{t}",
            partitions=1,
            total_messages=t,
            total_bytes=t,
            produce_rate=0.5,
            fetch_rate=0.25,
        )
        for t in range(PIECE_WEIGHT * 8)
    )
    return MonitoringMetrics(topic_stats=stats, timestamp=9)


def replace_timestamp(expected: bytes, got: bytes) -> bytes:
    """*expected* with the envelope timestamp of *got* (the publishing node's clock)."""
    want, have = orjson.loads(expected), orjson.loads(got)
    want["timestamp"] = have["timestamp"]
    return orjson.dumps(want)


async def test_publish_nowait_and_a_stopped_bus_refuse(redis: RedisServer) -> None:
    bus = RedisBus(Hub(), redis.url)
    with pytest.raises(BusUnavailableError, match="await publish"):
        bus.publish_nowait("topics", topic("x"))
    with pytest.raises(BusUnavailableError, match="not running"):
        await bus.publish("topics", topic("x"))
    assert not bus.healthy
    async with running(redis) as live:
        with pytest.raises(BusUnavailableError, match="await publish"):
            live.publish_nowait("topics", topic("x"))  # running or not: never
        assert live.hub.offset("topics") == 0
    assert int(redis.command("XLEN", "takhin:stream:topics").strip(b":\r\n")) == 0


@asynccontextmanager
async def any_bus(kind: str, redis: RedisServer) -> AsyncIterator[tuple[EventBus, Hub]]:
    if kind == "memory":
        memory = MemoryBus(Hub(history_size=50))
        yield memory, memory.hub
    else:
        async with running(redis) as bus:
            yield bus, bus.hub


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_await_publish_means_the_same_on_every_bus(kind: str, redis: RedisServer) -> None:
    """Once ``await publish`` returns, this node's hub holds the message at the returned
    offset and its clients have been offered it: no waiting for the reader."""
    async with any_bus(kind, redis) as (bus, hub):
        sub = QueueSubscriber()
        hub.add_client(sub)
        for n in range(1, 4):
            published = await bus.publish("topic:orders", topic(f"t{n}"))
            assert (published.channel, published.offset) == ("topics", n)
            assert published.epoch == hub.epoch
            assert hub.offset("topics") == n
            (item,) = drain(sub)
            assert decode(item.payload).payload == topic(f"t{n}")
        snapshot = await bus.publish("metrics", MonitoringMetrics(timestamp=1), stale=True)
        latest = hub.latest("metrics")
        assert latest is not None
        assert latest.offset == snapshot.offset == 1
        assert decode(latest.payload).stale is True


async def test_a_publish_whose_echo_never_comes_still_returns(redis: RedisServer) -> None:
    async with running(redis, timeout=0.5) as bus:
        stuck = trio.Event()

        async def never() -> None:
            stuck.set()
            await trio.sleep_forever()

        bus._read_once = never  # type: ignore[method-assign]
        with trio.fail_after(GUARD):
            await stuck.wait()
            published = await bus.publish("topics", topic("x"))  # waits its timeout only
        assert published.offset == 1
        assert bus.hub.offset("topics") == 0  # the reader never brought it back


async def test_a_starting_node_loads_the_history_without_sending_it(redis: RedisServer) -> None:
    async with running(redis) as a:
        for name in "abcde":
            await a.publish(f"topic:{name}", topic(name))
        snapshot = MonitoringMetrics(timestamp=7)
        await a.publish("metrics", snapshot, stale=True)
        await wait_until(lambda: a.hub.offset("topics") == 5 and a.hub.offset("metrics") == 1)
        hub = Hub(history_size=3)
        local_epoch = hub.epoch
        sub = QueueSubscriber()
        hub.add_client(sub)
        late = RedisBus(hub, redis.url, block=0.2)
        async with trio.open_nursery() as nursery:
            await nursery.start(late.run)
            got = drain(sub)
            # the past is for resumes, not for live clients; a client that came
            # before the epoch of Redis was adopted is told of the change
            assert [i for i in got if i.offset is not None] == []
            assert [notice(i) for i in got] == [(a.hub.epoch, local_epoch)]
            assert hub.epoch == a.hub.epoch
            assert hub.offset("topics") == 5
            replay = hub.replay("topics", 2, hub.epoch)
            assert replay == a.hub.replay("topics", 2, a.hub.epoch)
            assert replay is not None
            assert [i.offset for i in replay] == [3, 4, 5]
            assert hub.replay("topics", 1, hub.epoch) is None  # beyond its history size
            latest = hub.latest("metrics")
            assert latest is not None
            assert latest.payload == a.hub.latest("metrics").payload  # type: ignore[union-attr]
            assert decode(latest.payload).stale is True
            nursery.cancel_scope.cancel()


async def test_streams_are_capped(redis: RedisServer) -> None:
    async with running(redis, history_size=10) as bus:
        total = 2 * MIN_STREAM_LENGTH + 50
        for n in range(total):
            await bus.publish("topics", topic(f"t{n}"))
        for n in range(40):
            await bus.publish("metrics", MonitoringMetrics(timestamp=n), stale=False)
        await wait_until(lambda: bus.hub.offset("topics") == total)
    length = int(redis.command("XLEN", "takhin:stream:topics").strip(b":\r\n"))
    assert MIN_STREAM_LENGTH <= length < total  # approximate MAXLEN, never below the bound
    assert int(redis.command("XLEN", "takhin:stream:metrics").strip(b":\r\n")) <= 16


def _reader_ids(redis: RedisServer) -> list[str]:
    listing = redis.command("CLIENT", "LIST").decode()
    return [
        field.removeprefix("id=")
        for line in listing.splitlines()
        if "cmd=xread" in line
        for field in line.split()
        if field.startswith("id=")
    ]


async def test_a_reader_that_loses_its_connection_resumes_where_it_left_off(
    redis: RedisServer,
) -> None:
    async with running(redis) as a, running(redis, backoff=(0.5, 0.5)) as b:
        sub = QueueSubscriber()
        b.hub.add_client(sub)
        await a.publish("topics", topic("before"))
        await wait_until(lambda: b.hub.offset("topics") == 1)
        epoch = b.hub.epoch
        await wait_until(lambda: len(_reader_ids(redis)) == 2)
        for ident in _reader_ids(redis):
            redis.command("CLIENT", "KILL", "ID", ident)
        await wait_until(lambda: not b.healthy)
        for name in ("during1", "during2"):  # b's reader is away (backing off)
            await a.publish("topics", topic(name))
        await wait_until(lambda: b.healthy and b.hub.offset("topics") == 3)
        assert b.reconnects >= 1
        assert b.hub.epoch == epoch  # same Redis state: same epoch, no reset
        got = [decode(i.payload) for i in drain(sub)]
        assert [(e.offset, e.payload) for e in got] == [
            (1, topic("before")),
            (2, topic("during1")),
            (3, topic("during2")),
        ]


async def test_a_redis_restart_is_survived_under_a_new_epoch(redis: RedisServer) -> None:
    async with running(redis) as a, running(redis) as b:
        subs = {}
        for bus in (a, b):
            subs[bus] = QueueSubscriber()
            bus.hub.add_client(subs[bus])
        await a.publish("topics", topic("old"))
        await wait_until(lambda: b.hub.offset("topics") == 1)
        old_epoch = a.hub.epoch
        await trio.to_thread.run_sync(redis.stop)
        await wait_until(lambda: not a.healthy and not b.healthy)
        with pytest.raises(BusUnavailableError, match="Redis at"):
            await a.publish("topics", topic("lost"))
        await trio.to_thread.run_sync(redis.start)  # empty: persistence is off
        await wait_until(lambda: a.healthy and b.healthy)
        assert a.hub.epoch == b.hub.epoch != old_epoch
        published = await b.publish("topics", topic("new"))
        assert (published.offset, published.epoch) == (1, a.hub.epoch)
        await wait_until(lambda: a.hub.offset("topics") == 1 and b.hub.offset("topics") == 1)
        for bus in (a, b):
            assert len(bus.hub) == 1  # the client is still there
            items = drain(subs[bus])
            got = [decode(i.payload) for i in items if i.offset is not None]
            assert [(e.offset, e.epoch, e.payload) for e in got] == [
                (1, old_epoch, topic("old")),
                (1, a.hub.epoch, topic("new")),
            ]
            # told of the new epoch once, between the last old and the first new event
            assert [notice(i) for i in items] == [None, (a.hub.epoch, old_epoch), None]
            assert bus.hub.replay("topics", 1, old_epoch) is None  # a resume must refetch


async def test_a_node_started_while_redis_is_down_catches_up(redis: RedisServer) -> None:
    async with running(redis) as a:
        await a.publish("topics", topic("earlier"))
        await trio.to_thread.run_sync(redis.stop)
        hub = Hub()
        local_epoch = hub.epoch
        early = QueueSubscriber()  # connected while this node still had its own epoch
        hub.add_client(early)
        late = RedisBus(hub, redis.url, block=0.2, backoff=(0.05, 0.2))
        async with trio.open_nursery() as nursery:
            await nursery.start(late.run)  # does not wait for Redis
            assert not late.healthy
            with pytest.raises(BusUnavailableError):
                await late.publish("topics", topic("refused"))
            await trio.to_thread.run_sync(redis.start)
            await wait_until(lambda: late.healthy and a.healthy)
            assert hub.epoch == a.hub.epoch != local_epoch
            published = await late.publish("topics", topic("now"))
            await wait_until(lambda: a.hub.offset("topics") == published.offset == 1)
            await wait_until(lambda: hub.offset("topics") == 1)
            items = drain(early)
            assert [notice(i) for i in items] == [(a.hub.epoch, local_epoch), None]
            assert decode(items[1].payload).payload == topic("now")
            nursery.cancel_scope.cancel()


async def test_a_flush_without_restart_is_noticed(redis: RedisServer) -> None:
    async with running(redis) as a:
        sub = QueueSubscriber()
        a.hub.add_client(sub, ["groups"])  # told too, though no event of its own came
        for name in "abc":
            await a.publish("topics", topic(name))
        await wait_until(lambda: a.hub.offset("topics") == 3)
        old_epoch = a.hub.epoch
        redis.command("FLUSHALL")  # connections stay up
        await wait_until(lambda: a.hub.epoch != old_epoch)
        published = await a.publish("topics", topic("d"))
        assert published.offset == 1
        await wait_until(lambda: a.hub.offset("topics") == 1)
        assert [notice(i) for i in drain(sub)] == [(a.hub.epoch, old_epoch)]


# --- the server wired to Redis (in process) ---


class StaticSource:
    def __init__(self) -> None:
        self.collected = 0

    async def collect(self) -> Snapshot:
        self.collected += 1
        return Snapshot(metrics=MonitoringMetrics(timestamp=self.collected))


async def test_one_server_collects_the_metrics_for_all(redis: RedisServer) -> None:
    settings = Settings(port=0, interval=0.05, redis_url=redis.url)
    sources = [StaticSource(), StaticSource()]
    async with (
        open_server(settings, source=sources[0]) as one,
        open_server(settings, source=sources[1]) as two,
    ):
        await wait_until(lambda: one.hub.offset("metrics") >= 10)
        assert one.producer is not None
        assert two.producer is not None
        collecting = [one.producer.collecting, two.producer.collecting]
        assert sorted(collecting) == [False, True]
        assert 0 in [s.collected for s in sources]  # the other one never asked its source
        await wait_until(lambda: two.hub.offset("metrics") >= one.hub.offset("metrics"))
        latest = one.hub.latest("metrics"), two.hub.latest("metrics")
        assert latest[0] is not None
        assert latest[1] is not None
        assert one.ready
        assert two.ready


async def test_server_with_redis_answers_503_while_redis_is_down(redis: RedisServer) -> None:
    settings = Settings(port=0, interval=0.2, redis_url=redis.url, publish_keys=("k",))
    async with open_server(settings, source=StaticSource()) as server:
        assert server.bus is not None
        await wait_until(lambda: server.ready)
        async with httpx.AsyncClient(base_url=server.url) as http:
            headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
            body = orjson.dumps({"type": "topic_created", "data": {"name": "x", "partitions": 1}})
            answer = await http.post("/api/events", content=body, headers=headers)
            assert answer.status_code == 202
            assert answer.json()["accepted"][0]["epoch"] == server.hub.epoch
            await wait_until(lambda: server.hub.offset("topics") == 1)
            await wait_until(lambda: server.hub.latest("metrics") is not None)
            assert redis.command("GET", "takhin:metrics-lease").startswith(b"$")
            await trio.to_thread.run_sync(redis.stop)
            await wait_until(lambda: not server.ready)
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert "event bus unavailable (Redis unreachable)" in ready.json()["reasons"]
            assert "takhin_ws_bus_healthy 0.0" in (await http.get("/metrics")).text
            answer = await http.post("/api/events", content=body, headers=headers)
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            await trio.to_thread.run_sync(redis.start)
            await wait_until(lambda: server.ready)
            assert (await http.get("/readyz")).status_code == 200
            assert "takhin_ws_bus_healthy 1.0" in (await http.get("/metrics")).text
            answer = await http.post("/api/events", content=body, headers=headers)
            assert answer.status_code == 202
    # the lease was released on the way out
    assert redis.command("GET", "takhin:metrics-lease") == b"$-1\r\n"
