"""The prometheus source end to end: a real HTTP exporter, a live broker stand-in, the producer.

The exporter (``tests/exporter.py``) answers a fixture or the current exposition of a
prometheus-client registry the tests drive like a Takhin broker would. Rates use an
injected clock, so the elapsed time between scrapes is known exactly and the expected
numbers are worked out by hand from what the test did.
"""

from __future__ import annotations

import logging
import threading

import attrs
import pytest
import trio

from exporter import WALL, Broker, FakeClock, MetricsServer, fixture, start_exporter
from recorder import Recorder
from takhin_ws import Settings
from takhin_ws.core.hub import Hub
from takhin_ws.core.metrics.snapshot import GroupInfo, Snapshot
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.sources import SCRAPE_SHARE, source_for
from takhin_ws.sources.prometheus.source import PrometheusSource, ScrapeError
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import (
    ClusterHealth,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
)
from test_promsnapshot import SNAPSHOT_1, SNAPSHOT_2


@pytest.fixture
async def exporter(nursery: trio.Nursery) -> MetricsServer:
    return await start_exporter(nursery)


def source_of(exporter: MetricsServer, clock: FakeClock, timeout: float = 5.0) -> PrometheusSource:
    return PrometheusSource(exporter.url, timeout=timeout, clock=clock, wall_clock=lambda: WALL)


async def test_golden_fixtures_over_http(exporter: MetricsServer) -> None:
    clock = FakeClock(0.0)
    async with source_of(exporter, clock) as source:
        exporter.serve(fixture("full_1.prom"))
        first = await source.collect()
        clock.now = 5.0
        exporter.serve(fixture("garbage.html"))
        with pytest.raises(
            ScrapeError,
            match=r"did not answer Prometheus text exposition: line 1 is not a sample: '<html>'",
        ):
            await source.collect()
        clock.now = 10.0
        exporter.serve(fixture("full_2.prom"), content_length=False, gzip=True)  # chunked, gzip
        second = await source.collect()
    assert attrs.evolve(first.metrics, timestamp=0) == attrs.evolve(SNAPSHOT_1, timestamp=0)
    # the failed scrape left the first as the base: the window is the full 10 s
    assert second.metrics.throughput == SNAPSHOT_2.throughput
    assert exporter.requests == 3


async def test_fetch_is_the_raw_body(exporter: MetricsServer) -> None:
    exporter.serve(fixture("full_1.prom"), gzip=True)
    async with source_of(exporter, FakeClock()) as source:
        assert await source.fetch() == fixture("full_1.prom")


async def test_an_empty_exposition_is_zeros_and_a_warning(
    exporter: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    exporter.serve(b"# HELP up whatever\nup 1\n")
    async with source_of(exporter, FakeClock()) as source:
        first = await source.collect()
        await source.collect()
    assert first.metrics == MonitoringMetrics(timestamp=1_700_000_000)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "exposes none of the takhin_* metrics" in warnings[0].getMessage()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="http"):
        PrometheusSource("ftp://broker/metrics")
    with pytest.raises(ValueError, match="timeout"):
        PrometheusSource("http://broker:9090/metrics", timeout=0)
    with pytest.raises(ValueError, match="max_body_bytes"):
        PrometheusSource("http://broker:9090/metrics", max_body_bytes=0)


def test_source_for_settings() -> None:
    url = "http://broker:9090/metrics"
    source = source_for(Settings(source="prometheus", prometheus_url=url, scrape_max_bytes=999))
    assert isinstance(source, PrometheusSource)
    assert (source.url, source.max_body_bytes) == (url, 999)
    assert source.timeout == pytest.approx(Settings().interval * SCRAPE_SHARE)
    slow = source_for(
        Settings(source="prometheus", prometheus_url=url, interval=10.0, collect_timeout=4.0)
    )
    assert isinstance(slow, PrometheusSource)
    assert slow.timeout == pytest.approx(4.0 * SCRAPE_SHARE)
    assert slow.max_body_bytes == 64 * 1024 * 1024


# --- off the event loop, within the deadline ---


async def test_scanning_runs_off_the_event_loop_within_the_deadline(
    exporter: MetricsServer,
) -> None:
    exporter.serve(fixture("full_1.prom"))
    release = threading.Event()
    scans: list[str] = []
    async with source_of(exporter, FakeClock(), timeout=0.5) as source:
        original = source._scanner.scan

        def slow_scan(text: str, *, prefixed: bool = False) -> object:
            scans.append(threading.current_thread().name)
            release.wait(10)
            return original(text, prefixed=prefixed)

        source._scanner.scan = slow_scan  # type: ignore[assignment,method-assign]
        with trio.fail_after(5):  # a scan on the event loop would hang this test
            with pytest.raises(ScrapeError, match=r"did not finish within 0\.5 s") as info:
                await source.collect()
        assert "--collect-timeout" in str(info.value)
        assert scans
        assert scans[0] != threading.current_thread().name
        # the abandoned scan still holds the worker: the next collect waits for it
        async with trio.open_nursery() as nursery:

            def release_soon() -> None:
                release.wait(0.2)
                release.set()

            nursery.start_soon(trio.to_thread.run_sync, release_soon)
            with trio.fail_after(5):
                snapshot = await source.collect()
    assert snapshot.metrics.topic_stats == SNAPSHOT_1.topic_stats
    assert len(scans) == 2


# --- a live broker stand-in: a prometheus-client registry driven by the test ---


async def test_rates_and_quantiles_from_a_live_registry(exporter: MetricsServer) -> None:
    broker = Broker()
    exporter.serve_registry(broker.registry)
    clock = FakeClock(50.0)
    async with source_of(exporter, clock) as source:
        # before the first scrape: history that must not count in any window
        broker.produce("orders", 0, 1000, 100)
        broker.produce("orders", 1, 500, 100)
        for _ in range(50):
            broker.produce_latency.labels("orders").observe(2.0)
        broker.connections.set(7)
        broker.members.labels("billing").set(2)
        broker.state.labels("billing", "Stable").set(4)
        broker.lag.labels("billing", "orders", "0").set(25)
        broker.goroutines.set(61)
        broker.memory.set(50_000_000)
        first = await source.collect()

        m = first.metrics
        assert m.throughput == Throughput()
        assert m.latency == Latency()
        assert [(t.name, t.partitions, t.total_messages, t.total_bytes) for t in m.topic_stats] == [
            ("orders", 2, 1500, 150_000)
        ]
        assert m.consumer_lags[0].topic_lags[0].partition_lags == (
            PartitionLag(partition=0, current_offset=975, log_end_offset=1000, lag=25),
        )
        assert m.cluster_health == ClusterHealth(
            active_connections=7,
            total_topics=1,
            total_partitions=2,
            total_consumers=1,  # one group (of 2 members)
            disk_usage_bytes=150_000,
            memory_usage_bytes=50_000_000,
            goroutine_count=61,
        )
        assert dict(first.groups) == {"billing": GroupInfo(state="Stable", members=2)}

        # the window: 2.5 s of traffic
        broker.produce("orders", 0, 300, 100)
        broker.produce("orders", 1, 100, 100)
        broker.produce("clicks", 0, 40, 50)  # a new topic: its series are new
        broker.fetch("orders", 0, 200, 100)
        for _ in range(60):
            broker.produce_latency.labels("orders").observe(0.003)
        for _ in range(30):
            broker.produce_latency.labels("clicks").observe(0.003)
        for _ in range(10):
            broker.produce_latency.labels("clicks").observe(0.2)
        for _ in range(100):
            broker.fetch_latency.labels("orders").observe(7.0)  # beyond the last bucket
        broker.state.labels("billing", "Stable").set(0)
        broker.state.labels("billing", "PreparingRebalance").set(2)
        clock.now = 52.5
        second = await source.collect()

        m = second.metrics
        assert m.throughput.produce_rate == pytest.approx(440 / 2.5)
        assert m.throughput.fetch_rate == pytest.approx(200 / 2.5)
        assert m.throughput.produce_bytes == pytest.approx((400 * 100 + 40 * 50) / 2.5)
        assert m.throughput.fetch_bytes == pytest.approx(200 * 100 / 2.5)
        rates = {t.name: (t.produce_rate, t.fetch_rate) for t in m.topic_stats}
        assert rates == {"clicks": (pytest.approx(16.0), 0.0), "orders": (160.0, 80.0)}
        # 90 produce requests of 3 ms in (0.001, 0.005] and 10 of 200 ms in (0.1, 0.25]:
        # rank 50 is the 50th of 90 in the first; ranks 95 and 99 the 5th and 9th of 10
        assert m.latency.produce_p50 == pytest.approx(0.001 + 0.004 * 50 / 90)
        assert m.latency.produce_p95 == pytest.approx(0.1 + 0.15 * 5 / 10)
        assert m.latency.produce_p99 == pytest.approx(0.1 + 0.15 * 9 / 10)
        # every fetch took longer than the last finite bucket: its bound, 5 s
        assert (m.latency.fetch_p50, m.latency.fetch_p95, m.latency.fetch_p99) == (5.0, 5.0, 5.0)
        assert second.groups["billing"] == GroupInfo(state="PreparingRebalance", members=2)

        # a quiet window: no traffic, no observations
        clock.now = 54.5
        quiet = await source.collect()
        assert quiet.metrics.throughput == Throughput()
        assert quiet.metrics.latency == Latency()

        # the broker restarts: every counter starts again from zero
        restarted = Broker()
        restarted.produce("orders", 0, 70, 10)
        for _ in range(4):
            restarted.produce_latency.labels("orders").observe(0.03)
        exporter.serve_registry(restarted.registry)
        clock.now = 56.5
        after = await source.collect()
        assert after.metrics.throughput.produce_rate == pytest.approx(70 / 2.0)
        assert after.metrics.throughput.produce_bytes == pytest.approx(700 / 2.0)
        # the 4 requests of the new process, all in (0.025, 0.05]
        assert after.metrics.latency.produce_p50 == pytest.approx(0.025 + 0.025 * 2 / 4)
        assert after.metrics.latency.produce_p99 == pytest.approx(0.025 + 0.025 * 3.96 / 4)


async def test_the_producer_on_a_real_scrape(exporter: MetricsServer) -> None:
    hub = Hub()
    sub = Recorder()  # every publish: a queue would keep only the latest snapshot
    hub.add_client(sub, ["metrics"])
    broker = Broker()
    broker.produce("orders", 0, 10, 10)
    exporter.serve_registry(broker.registry)
    async with PrometheusSource(exporter.url, timeout=2.0) as source:
        producer = MetricsProducer(hub, source, interval=2.0, unready_after=1)
        readiness = []
        await producer.tick()
        readiness.append(producer.ready)
        exporter.serve(b"", status=500)
        await producer.tick()
        readiness.append(producer.ready)
        exporter.serve_registry(broker.registry)
        await producer.tick()
        readiness.append(producer.ready)
    assert readiness == [True, False, True]
    envelopes = [decode(item.payload) for item in sub.get_batch_nowait()]
    assert [e.stale for e in envelopes] == [False, True, False]
    assert envelopes[0].payload == envelopes[1].payload
    snapshot = producer.snapshot
    assert isinstance(snapshot, Snapshot)
    assert snapshot.metrics.topic_stats[0].total_messages == 10


@pytest.mark.parametrize(
    ("reply", "hint"),
    [
        ({"body": b"#" * 2000}, "raise --scrape-max-bytes"),
        ({"body": b"up 1\n", "delay": 30.0}, "raise one of them"),
    ],
)
async def test_a_snapshot_that_cannot_be_collected_keeps_the_last_one_stale(
    exporter: MetricsServer,
    caplog: pytest.LogCaptureFixture,
    reply: dict[str, object],
    hint: str,
) -> None:
    hub = Hub()
    sub = Recorder()  # every publish: a queue would keep only the latest snapshot
    hub.add_client(sub, ["metrics"])
    async with PrometheusSource(exporter.url, timeout=0.5, max_body_bytes=1000) as source:
        producer = MetricsProducer(hub, source, interval=2.0)
        exporter.serve(b"takhin_connections_active 3\n")
        await producer.tick()
        exporter.serve(**reply)  # type: ignore[arg-type]
        with trio.fail_after(10):
            await producer.tick()
    envelopes = [decode(item.payload) for item in sub.get_batch_nowait()]
    assert [e.stale for e in envelopes] == [False, True]
    assert envelopes[0].payload == envelopes[1].payload
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "republishing the last snapshot as stale" in warnings[0]
    assert hint in warnings[0]
