"""The lag insight from a Takhin broker's exposition, over a real HTTP exporter: the
prometheus source reads ``takhin_consumer_group_lag_offsets`` and
``takhin_storage_log_end_offset``, the producer's tracker turns them into seconds and a
status, the way it does for every source."""

from __future__ import annotations

import pytest
import trio

from exporter import Broker, MetricsServer, start_exporter
from recorder import Recorder
from takhin_ws.core.hub import Hub
from takhin_ws.core.lag.tracker import LagTracker
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.sources.prometheus.source import PrometheusSource
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import GroupStatus, MonitoringMetrics

INTERVAL = 2.0
START = 1_700_000_000.0
RATE = 50  # messages a tick on each partition
WINDOW = 3


@pytest.fixture
async def exporter(nursery: trio.Nursery) -> MetricsServer:
    return await start_exporter(nursery)


async def test_a_group_that_stops_committing_falls_behind_in_seconds(
    exporter: MetricsServer,
) -> None:
    hub = Hub()
    sub = Recorder()
    hub.add_client(sub, ["metrics", "groups"])
    broker = Broker()
    broker.members.labels("billing").set(2)
    broker.state.labels("billing", "Stable").set(4)
    exporter.serve_registry(broker.registry)
    ticks = iter(range(1000))
    async with PrometheusSource(exporter.url, timeout=2.0) as source:
        producer = MetricsProducer(
            hub,
            source,
            interval=INTERVAL,
            lag=LagTracker(WINDOW),
            wall_clock=lambda: START + INTERVAL * next(ticks),
        )
        behind = 0
        for tick in range(10):
            for partition in (0, 1):
                broker.produce("orders", partition, RATE, 10)
            if tick >= 4:  # the group stops committing after tick 3
                behind += RATE
            for partition in (0, 1):
                broker.lag.labels("billing", "orders", str(partition)).set(behind)
            await producer.tick()
    snapshots = [
        e.payload
        for e in (decode(i.payload) for i in sub.items)
        if isinstance(e.payload, MonitoringMetrics)
    ]
    seconds = [s.consumer_lags[0].lag_seconds for s in snapshots]
    assert seconds[:4] == [0.0] * 4
    # the log end passed the group's position at tick 3: behind by the ticks since
    assert seconds[4:] == [pytest.approx(INTERVAL * k) for k in range(1, 7)]
    assert snapshots[-1].consumer_lags[0].status == "STALLED"
    first = snapshots[-1].consumer_lags[0].topic_lags[0].partition_lags[0]
    assert (first.lag, first.consume_rate) == (6 * RATE, 0.0)
    statuses = [
        e.payload
        for e in (decode(i.payload) for i in sub.items)
        if isinstance(e.payload, GroupStatus)
    ]
    assert [(s.previous, s.status) for s in statuses] == [("OK", "STALLED")]
