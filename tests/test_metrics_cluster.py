"""The metrics producer in cluster mode: the ``should_collect`` hook and a shared bus
(one node collects, holding a lease; its snapshots and events go through the bus)."""

from __future__ import annotations

import logging

import pytest
import trio

from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.core.metrics.snapshot import GroupInfo, Snapshot
from takhin_ws.core.series import Series
from takhin_ws.ingest.bus import BusUnavailableError, Published
from takhin_ws.ingest.ingress import EventIngress
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.wire.codec import encode
from takhin_ws.wire.messages import Envelope, GroupCreated, MonitoringMetrics, Payload, Throughput
from takhin_ws.wire.websocket.frames import Outbound


class Source:
    """Answers snapshots numbered 1, 2, ...; ``groups`` feeds the change events."""

    def __init__(self) -> None:
        self.served = 0
        self.fail = False
        self.groups: dict[str, GroupInfo] = {}

    async def collect(self) -> Snapshot:
        if self.fail:
            raise RuntimeError("broker unreachable")
        self.served += 1
        metrics = MonitoringMetrics(throughput=Throughput(produce_rate=self.served))
        return Snapshot(metrics=metrics, groups=self.groups)


class Lease:
    def __init__(self, held: bool = True) -> None:
        self.held = held
        self.asked = 0
        self.error: Exception | None = None

    async def __call__(self) -> bool:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return self.held


class Bus:
    """A shared bus (an :class:`EventBus`) that records what is published on it and
    delivers nothing to the hub; fails while ``down``."""

    def __init__(self) -> None:
        self.sent: list[tuple[Payload, bool | None]] = []
        self.down = False

    @property
    def healthy(self) -> bool:
        return not self.down

    @property
    def unavailable(self) -> str | None:
        return "down" if self.down else None

    def publish_nowait(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        raise BusUnavailableError("a shared bus: use await publish")

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        if self.down:
            raise ConnectionError("bus down")
        self.sent.append((payload, stale))
        return Published(payload.TYPE, channel, len(self.sent), "shared")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


def through(bus: Bus) -> EventIngress:
    """The ingress of a node on *bus* (what ``open_server`` builds)."""
    return EventIngress(bus)


def rates(bus: Bus) -> list[tuple[float, bool | None]]:
    return [
        (p.throughput.produce_rate, stale)
        for p, stale in bus.sent
        if isinstance(p, MonitoringMetrics)
    ]


def is_ready(producer: MetricsProducer) -> bool:
    """Read ``ready`` through a call, so mypy does not narrow it between ticks."""
    return producer.ready


async def test_without_a_lease_hook_nothing_changes(hub: Hub) -> None:
    sub = QueueSubscriber()
    hub.add_client(sub, ["metrics"])
    producer = MetricsProducer(hub, Source())
    assert await producer.tick()
    assert producer.collecting
    assert len(sub.queue) == 1


async def test_the_lease_holder_publishes_through_the_bus_only(hub: Hub) -> None:
    sub = QueueSubscriber()
    hub.add_client(sub)
    source, lease, bus = Source(), Lease(), Bus()
    producer = MetricsProducer(hub, source, should_collect=lease, ingress=through(bus))
    assert not is_ready(producer)
    assert await producer.tick()
    source.groups = {"billing": GroupInfo(state="Stable", members=2)}
    assert await producer.tick()
    source.fail = True
    assert await producer.tick()
    assert lease.asked == 3
    assert producer.collecting
    assert is_ready(producer)
    assert len(sub.queue) == 0  # nothing went to the hub directly: the bus delivers
    assert rates(bus) == [(1.0, False), (2.0, False), (2.0, True)]
    events = [(p, s) for p, s in bus.sent if not isinstance(p, MonitoringMetrics)]
    assert events == [(GroupCreated(group_id="billing", state="Stable", members=2), None)]
    assert bus.sent.index(events[0]) == 1  # the event goes before its snapshot
    stats = producer.statistics()
    assert (stats.events, stats.snapshots, stats.stale_snapshots) == (1, 2, 1)


async def test_a_single_node_publishes_through_its_bus_only_too(hub: Hub) -> None:
    sub = QueueSubscriber()
    hub.add_client(sub)
    source, bus = Source(), Bus()
    producer = MetricsProducer(hub, source, ingress=through(bus))  # no lease: always collects
    assert await producer.tick()
    source.groups = {"billing": GroupInfo(state="Stable", members=2)}
    assert await producer.tick()
    assert len(sub.queue) == 0  # the hub has only what the bus delivers
    assert [(p.TYPE, stale) for p, stale in bus.sent] == [
        ("metrics", False),
        ("group_created", None),
        ("metrics", False),
    ]


async def test_a_node_without_the_lease_neither_collects_nor_publishes(hub: Hub) -> None:
    source, lease, bus = Source(), Lease(held=False), Bus()
    producer = MetricsProducer(hub, source, should_collect=lease, ingress=through(bus))
    assert await producer.tick()
    assert await producer.tick()
    assert source.served == 0
    assert bus.sent == []
    assert not producer.collecting
    assert producer.ready  # the holder answers for the source
    assert producer.statistics().ticks == 0
    assert not producer.statistics().collecting
    lease.error = RuntimeError("redis down")  # an unanswerable lease counts as not held
    assert await producer.tick()
    assert source.served == 0


async def test_a_takeover_does_not_diff_against_a_stale_snapshot(hub: Hub) -> None:
    source, lease, bus = Source(), Lease(), Bus()
    producer = MetricsProducer(hub, source, should_collect=lease, ingress=through(bus))
    await producer.tick()
    lease.held = False  # another node collects for a while; groups appear meanwhile
    await producer.tick()
    assert producer.snapshot is None
    source.groups = {"billing": GroupInfo(state="Stable", members=1)}
    lease.held = True
    await producer.tick()
    assert [type(p) for p, _ in bus.sent] == [MonitoringMetrics, MonitoringMetrics]
    await producer.tick()  # from then on, changes are found again
    source.groups = {}
    await producer.tick()
    assert [p.TYPE for p, _ in bus.sent][-2:] == ["group_deleted", "metrics"]


async def test_publish_failures_are_logged_once_per_streak(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    source, bus = Source(), Bus()
    producer = MetricsProducer(hub, source, should_collect=Lease(), ingress=through(bus))
    caplog.set_level(logging.DEBUG, logger="takhin_ws.metrics")
    bus.down = True
    for _ in range(3):
        assert await producer.tick()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "bus down" in warnings[0].getMessage()
    assert producer.statistics().snapshots == 0  # collected, never published
    bus.down = False
    assert await producer.tick()
    assert rates(bus) == [(4.0, False)]
    assert (producer.statistics().ticks, producer.statistics().snapshots) == (4, 1)
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_hub_closed_stops_the_producer(hub: Hub) -> None:
    producer = MetricsProducer(
        hub, Source(), should_collect=Lease(held=False), ingress=through(Bus())
    )
    hub.close()
    assert not await producer.tick()
    producer = MetricsProducer(hub, Source(), should_collect=Lease(), ingress=through(Bus()))
    assert not await producer.tick()


async def test_a_node_without_the_lease_charts_what_the_bus_delivers(hub: Hub) -> None:
    lease = Lease(held=False)
    series = Series(window=60.0, interval=2.0)
    producer = MetricsProducer(
        hub,
        Source(),
        should_collect=lease,
        ingress=through(Bus()),
        series=series,
        wall_clock=lambda: 1010.0,
    )
    await producer.tick()  # nothing delivered yet
    assert series.points() == ()

    def deliver(offset: int, rate: float, *, stale: bool = False) -> None:
        payload = MonitoringMetrics(throughput=Throughput(produce_rate=rate))
        envelope = Envelope(payload=payload, timestamp=1000 + offset, offset=offset, stale=stale)
        hub.deliver("metrics", Outbound.of(encode(envelope), "metrics", offset))

    deliver(1, 5.0)
    await producer.tick()
    await producer.tick()  # the same snapshot again: charted once
    deliver(2, 6.0, stale=True)  # the collecting node's source fails: no point
    await producer.tick()
    deliver(3, 7.0)
    await producer.tick()
    assert [(p.timestamp, p.throughput.produce_rate) for p in series.points()] == [
        (1001.0, 5.0),
        (1003.0, 7.0),
    ]
    # taking the lease over: the node's own snapshots follow
    lease.held = True
    await producer.tick()
    assert [p.throughput.produce_rate for p in series.points()] == [5.0, 7.0, 1.0]
