"""The prometheus source: PromQL maths, golden expositions, a live broker stand-in.

The HTTP exporter is real (h11 on a Trio listener, in the test process). It answers
either a fixture of ``tests/fixtures/prometheus`` or the current exposition of a
prometheus-client registry that the tests drive like a Takhin broker would. Rates
use an injected clock, so the elapsed time between scrapes is known exactly and
the expected numbers are worked out by hand from what the test did.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

import attrs
import h11
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from takhin_ws._changes import diff
from takhin_ws._codec import decode
from takhin_ws._hub import Hub, QueueSubscriber
from takhin_ws._messages import (
    ClusterHealth,
    ConsumerLag,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicCreated,
    TopicDeleted,
    TopicLag,
    TopicStats,
)
from takhin_ws._producer import MetricsProducer
from takhin_ws._snapshot import GroupInfo, Snapshot
from takhin_ws.sources.prometheus import (
    PrometheusSource,
    Scrape,
    ScrapeError,
    compute_snapshot,
    group_state,
    parse_exposition,
)
from takhin_ws.sources.promql import counter_increase, histogram_quantile, merge_buckets

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INF = math.inf


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- the maths, on its own ---


def test_counter_increase() -> None:
    assert counter_increase(None, 5.0) == 5.0  # a series born since the last scrape
    assert counter_increase(10.0, 25.0) == 15.0
    assert counter_increase(10.0, 10.0) == 0.0
    assert counter_increase(1000.0, 30.0) == 30.0  # reset: counted from zero since
    assert counter_increase(10.0, math.nan) == 0.0
    assert counter_increase(math.nan, 7.0) == 7.0
    assert counter_increase(10.0, math.inf) == 0.0


# Results of Prometheus' own tests for histogram_quantile (promql testdata
# histograms.test), restated as cumulative buckets.
POSITIVE = [(0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 120.0)]
NEGATIVE = [(-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 30.0)]
AGGREGATED = [(0.1, 10.0), (0.2, 19.0), (INF, 25.0)]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.0, POSITIVE, 0.0),
        (0.2, POSITIVE, 0.048),
        (0.5, POSITIVE, 0.15),
        (0.8, POSITIVE, 0.72),
        (1.0, POSITIVE, 1.0),
        (0.0, NEGATIVE, -0.2),
        (0.2, NEGATIVE, -0.2),
        (0.5, NEGATIVE, -0.15),
        (0.8, NEGATIVE, 0.3),
        (1.0, NEGATIVE, 0.3),
        (0.3, AGGREGATED, 0.075),
        (0.5, AGGREGATED, 0.1277777777777778),
    ],
)
def test_histogram_quantile_matches_promql(
    q: float, buckets: list[tuple[float, float]], expected: float
) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected)
    assert histogram_quantile(q, list(reversed(buckets))) == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    # no observations, no +Inf bucket, a single bucket: PromQL says NaN, we say 0
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) == 0.0
    assert histogram_quantile(0.5, [(0.1, 3.0), (1.0, 5.0)]) == 0.0
    assert histogram_quantile(0.5, [(INF, 5.0)]) == 0.0
    assert histogram_quantile(0.5, []) == 0.0
    # everything above the last finite bound: that bound
    assert histogram_quantile(0.5, [(0.1, 0.0), (5.0, 0.0), (INF, 9.0)]) == 5.0
    # buckets of the same bound are summed (sum by le), counts forced monotonic
    assert merge_buckets([(0.1, 1.0), (INF, 2.0), (0.1, 3.0)]) == [(0.1, 4.0), (INF, 2.0)]
    assert histogram_quantile(0.5, [(0.1, 4.0), (0.2, 3.0), (INF, 4.0)]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, POSITIVE)


@settings(max_examples=300)
@given(
    observations=st.lists(
        st.floats(min_value=1e-4, max_value=10.0, allow_nan=False), min_size=1, max_size=200
    ),
    q=st.floats(min_value=0.01, max_value=1.0),
)
def test_histogram_quantile_lands_in_the_bucket_of_the_true_quantile(
    observations: list[float], q: float
) -> None:
    bounds = (*BUCKETS, INF)
    buckets = [(upper, float(sum(1 for o in observations if o <= upper))) for upper in bounds]
    estimate = histogram_quantile(q, buckets)
    ordered = sorted(observations)
    true = ordered[max(math.ceil(q * len(ordered)), 1) - 1]
    index = next(i for i, upper in enumerate(bounds) if true <= upper)
    if bounds[index] == INF:
        assert estimate == BUCKETS[-1]
    else:
        lower = bounds[index - 1] if index else 0.0
        assert lower <= estimate <= bounds[index]


# --- group state decoding ---


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        ([("Stable", 4.0)], "Stable"),  # Takhin: coded gauge, label agrees
        ([("Empty", 1.0)], "Empty"),
        ([("Dead", 0.0)], "Dead"),
        ([(None, 3.0)], "CompletingRebalance"),  # code only
        ([("Stable", 1.0)], "Stable"),  # state set with a single series
        ([("Dead", 0.0), ("Empty", 1.0), ("Stable", 0.0)], "Empty"),  # state set
        ([("Dead", 0.0), ("Stable", 0.0)], "Dead"),
        ([("Empty", 1.0), ("Stable", 4.0)], "Stable"),  # a stale coded series lingers
        ([(None, 9.0)], None),
        ([], None),
    ],
)
def test_group_state(series: list[tuple[str | None, float]], expected: str | None) -> None:
    assert group_state(series) == expected


# --- golden expositions (pure) ---


def scrape(name: str, at: float) -> Scrape:
    return Scrape(parse_exposition(fixture(name).decode()), at, 1_700_000_000.0 + at)


SNAPSHOT_1 = MonitoringMetrics(
    throughput=Throughput(),
    latency=Latency(),
    topic_stats=(
        TopicStats(
            name="orders",
            partitions=2,
            total_messages=3000,
            total_bytes=1048576 + 2097152,
            produce_rate=0.0,
            fetch_rate=0.0,
        ),
        TopicStats(
            name="payments",
            partitions=1,
            total_messages=500,
            total_bytes=4096,
            produce_rate=0.0,
            fetch_rate=0.0,
        ),
    ),
    consumer_lags=(
        ConsumerLag(
            group_id="audit",
            total_lag=500,
            topic_lags=(
                TopicLag(
                    topic="payments",
                    total_lag=500,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=0, log_end_offset=500, lag=500),
                    ),
                ),
            ),
        ),
        ConsumerLag(
            group_id="billing",
            total_lag=200,
            topic_lags=(
                TopicLag(
                    topic="orders",
                    total_lag=200,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=900, log_end_offset=1000, lag=100),
                        PartitionLag(
                            partition=1, current_offset=1900, log_end_offset=2000, lag=100
                        ),
                    ),
                ),
            ),
        ),
    ),
    cluster_health=ClusterHealth(
        active_connections=12,
        total_topics=2,
        total_partitions=3,
        total_consumers=2,
        disk_usage_bytes=1048576 + 2097152 + 4096,
        memory_usage_bytes=73400320,
        goroutine_count=87,
    ),
    timestamp=1_700_000_000,
)

SNAPSHOT_2 = MonitoringMetrics(
    # over 10 s: produced 600 + 150 (reset) + 0 + 40 (new series); fetched 600 + 50;
    # bytes in 60000 + 4000 (new series); bytes out 50000
    throughput=Throughput(
        produce_rate=79.0, fetch_rate=65.0, produce_bytes=6400.0, fetch_bytes=5000.0
    ),
    # 100 produce requests: 20 in (.001, .005], 60 in (.005, .01], 15 in (.01, .025],
    # 5 in (.025, .05]. p50: rank 50 is the 30th of 60 in (.005, .01] -> .0075;
    # p95: rank 95 is the last of 15 in (.01, .025] -> .025; p99: rank 99 is the 4th
    # of 5 in (.025, .05] -> .045. No fetch request in the window: 0.
    latency=Latency(produce_p50=0.0075, produce_p95=0.025, produce_p99=0.045),
    topic_stats=(
        TopicStats(
            name="clicks",
            partitions=2,
            total_messages=40,
            total_bytes=8192,
            produce_rate=4.0,
            fetch_rate=0.0,
        ),
        TopicStats(
            name="orders",
            partitions=2,
            total_messages=1600 + 2150,
            total_bytes=1200000 + 2097152,
            produce_rate=75.0,
            fetch_rate=65.0,
        ),
    ),
    consumer_lags=(
        ConsumerLag(
            group_id="billing",
            total_lag=250,
            topic_lags=(
                TopicLag(
                    topic="orders",
                    total_lag=250,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=1550, log_end_offset=1600, lag=50),
                        PartitionLag(
                            partition=1, current_offset=1950, log_end_offset=2150, lag=200
                        ),
                    ),
                ),
            ),
        ),
        ConsumerLag(
            group_id="search",
            total_lag=10,
            topic_lags=(
                TopicLag(
                    topic="clicks",
                    total_lag=10,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=30, log_end_offset=40, lag=10),
                    ),
                ),
            ),
        ),
    ),
    cluster_health=ClusterHealth(
        active_connections=15,
        total_topics=2,
        total_partitions=4,
        total_consumers=4,
        disk_usage_bytes=1200000 + 2097152 + 8192,
        memory_usage_bytes=75000000,
        goroutine_count=90,
    ),
    timestamp=1_700_000_010,
)


def test_golden_first_scrape() -> None:
    snapshot = compute_snapshot(None, scrape("full_1.prom", 0.0))
    assert snapshot.metrics == SNAPSHOT_1
    assert dict(snapshot.groups) == {
        "audit": GroupInfo(state="Empty", members=0),
        "billing": GroupInfo(state="Stable", members=2),
    }


def test_golden_second_scrape_reset_new_and_deleted_series() -> None:
    first = compute_snapshot(None, scrape("full_1.prom", 0.0))
    second = compute_snapshot(scrape("full_1.prom", 0.0), scrape("full_2.prom", 10.0))
    assert second.metrics.throughput == SNAPSHOT_2.throughput
    assert second.metrics.latency.produce_p50 == pytest.approx(0.0075)
    assert second.metrics.latency.produce_p95 == pytest.approx(0.025)
    assert second.metrics.latency.produce_p99 == pytest.approx(0.045)
    assert second.metrics == attrs.evolve(SNAPSHOT_2, latency=second.metrics.latency)
    assert dict(second.groups) == {
        "billing": GroupInfo(state="PreparingRebalance", members=3),
        "search": GroupInfo(state="Stable", members=1),
    }
    assert diff(first, second) == [
        TopicCreated(name="clicks", partitions=2),
        TopicDeleted(name="payments"),
        GroupCreated(group_id="search", state="Stable", members=1),
        GroupUpdated(group_id="billing", state="PreparingRebalance", members=3),
        GroupDeleted(group_id="audit", state="Dead", members=0),
    ]


def test_golden_no_time_elapsed_means_no_rates() -> None:
    again = compute_snapshot(scrape("full_1.prom", 5.0), scrape("full_2.prom", 5.0))
    assert again.metrics.throughput == Throughput()
    assert again.metrics.latency == Latency()


def test_golden_missing_families_are_zeros() -> None:
    first = compute_snapshot(None, scrape("missing_families.prom", 0.0))
    assert first.metrics == MonitoringMetrics(
        topic_stats=(
            TopicStats(
                name="orders",
                partitions=2,
                total_messages=40,
                total_bytes=0,
                produce_rate=0.0,
                fetch_rate=0.0,
            ),
        ),
        cluster_health=ClusterHealth(active_connections=3, total_topics=1, total_partitions=2),
        timestamp=1_700_000_000,
    )
    assert dict(first.groups) == {}
    later = compute_snapshot(scrape("missing_families.prom", 0.0), scrape("full_1.prom", 2.0))
    # series born since the previous scrape count in full (as a reset would):
    # 200 produce requests, rank 100 is the last of 90 in (0.001, 0.005]
    assert later.metrics.latency.produce_p50 == pytest.approx(0.005)
    assert later.metrics.throughput.fetch_rate == pytest.approx((900 + 1900) / 2.0)
    empty = compute_snapshot(None, Scrape({}, 0.0, 5.0))
    assert empty.metrics == MonitoringMetrics(timestamp=5)


def test_golden_state_set_and_go_runtime_fallbacks() -> None:
    snapshot = compute_snapshot(None, scrape("state_set.prom", 0.0))
    assert dict(snapshot.groups) == {
        "billing": GroupInfo(state="CompletingRebalance", members=4),
        "gone": GroupInfo(state="Dead", members=0),
        "lonely": GroupInfo(state="Stable", members=2),  # no state series: from members
    }
    health = snapshot.metrics.cluster_health
    assert (health.goroutine_count, health.memory_usage_bytes) == (42, 16777216)
    assert health.total_consumers == 6
    assert [lag.group_id for lag in snapshot.metrics.consumer_lags] == ["billing", "gone", "lonely"]


@pytest.mark.parametrize("name", ["garbage.html", "truncated.prom"])
def test_golden_garbage_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_exposition(fixture(name).decode())


@pytest.mark.parametrize(
    "text",
    [
        "hello world\n",
        '{"status": "ok"}\n',
        'takhin_connections_active 3\nsome_other_metric{a="b"}\n',
        "takhin_connections_active three\n",
        'takhin_storage_log_end_offset{topic="orders" 1\n',
    ],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_exposition(text)


def test_only_the_families_read_are_kept() -> None:
    text = (
        "# HELP process_cpu_seconds_total CPU\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 12.5\n"
        'takhin_kafka_requests_total{api_key="0",version="9"} 7 1700000000000\n'
        'other_gauge{path="/a b}c"} 1e3\n'
        "\n"
        '  takhin_consumer_group_state{group_id="odd } id",state="Stable"} 4  \n'
        "go_goroutines 12\n"
    )
    assert parse_exposition(text) == {
        "takhin_consumer_group_state": {(("group_id", "odd } id"), ("state", "Stable")): 4.0},
        "go_goroutines": {(): 12.0},
    }


# --- a real HTTP exporter ---


@attrs.define
class Reply:
    status: int = 200
    body: bytes = b""
    content_length: bool = True
    delay: float = 0.0


class MetricsServer:
    """HTTP/1.1 on a Trio listener (h11): every request gets ``reply()``."""

    def __init__(self) -> None:
        self.url = ""
        self.reply: Callable[[], Reply] = Reply
        self.requests = 0
        #: How each answer ended: "sent" (every byte) or "hung up" (client left).
        self.outcomes: list[str] = []

    def serve(self, body: bytes, **kwargs: object) -> None:
        self.reply = lambda: Reply(body=body, **kwargs)  # type: ignore[arg-type]

    def serve_registry(self, registry: CollectorRegistry) -> None:
        self.reply = lambda: Reply(body=generate_latest(registry))

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    self.requests += 1
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            reply = self.reply()
            if reply.delay:
                await trio.sleep(reply.delay)
            headers = [("Content-Type", "text/plain; version=0.0.4"), ("Connection", "close")]
            if reply.content_length:
                headers.append(("Content-Length", str(len(reply.body))))
            await stream.send_all(
                conn.send(h11.Response(status_code=reply.status, headers=headers))
            )
            for start in range(0, len(reply.body), 65536):
                chunk = reply.body[start : start + 65536]
                await stream.send_all(conn.send(h11.Data(data=chunk)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            self.outcomes.append("sent")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.outcomes.append("hung up")  # the client left (a refused body)
        finally:
            await stream.aclose()


@pytest.fixture
async def exporter(nursery: trio.Nursery) -> MetricsServer:
    srv = MetricsServer()
    listeners: list[trio.SocketListener] = await nursery.start(
        partial(trio.serve_tcp, srv.handle, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    srv.url = f"http://127.0.0.1:{port}/metrics"
    return srv


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def source_for(exporter: MetricsServer, clock: FakeClock, timeout: float = 5.0) -> PrometheusSource:
    return PrometheusSource(
        exporter.url, timeout=timeout, clock=clock, wall_clock=lambda: 1_700_000_000.0
    )


async def test_golden_fixtures_over_http(exporter: MetricsServer) -> None:
    clock = FakeClock(0.0)
    async with source_for(exporter, clock) as source:
        exporter.serve(fixture("full_1.prom"))
        first = await source.collect()
        clock.now = 5.0
        exporter.serve(fixture("garbage.html"))
        with pytest.raises(ScrapeError, match="did not answer Prometheus text exposition"):
            await source.collect()
        clock.now = 10.0
        exporter.serve(fixture("full_2.prom"), content_length=False)  # chunked this time
        second = await source.collect()
    assert attrs.evolve(first.metrics, timestamp=0) == attrs.evolve(SNAPSHOT_1, timestamp=0)
    # the failed scrape left the first as the base: the window is the full 10 s
    assert second.metrics.throughput == SNAPSHOT_2.throughput
    assert exporter.requests == 3


async def test_a_non_200_answer_is_a_clear_error(exporter: MetricsServer) -> None:
    exporter.serve(b"broker is starting, try again\n", status=503)
    async with source_for(exporter, FakeClock()) as source:
        with pytest.raises(ScrapeError, match=r"HTTP 503 Service Unavailable: broker is starting"):
            await source.collect()


async def test_a_slow_answer_times_out(exporter: MetricsServer) -> None:
    exporter.serve(fixture("full_1.prom"), delay=30.0)
    async with source_for(exporter, FakeClock(), timeout=0.25) as source:
        with pytest.raises(ScrapeError, match=r"timed out after 0\.25 s"):
            await source.collect()


@pytest.mark.parametrize(
    ("content_length", "message"),
    [(True, "10000000 bytes announced"), (False, "more than 8388608 bytes sent")],
)
async def test_a_10_mb_body_is_refused(
    exporter: MetricsServer, content_length: bool, message: str
) -> None:
    body = b"# padding padding padding padding padding padding padding padding\n"
    body = (body * (10_000_000 // len(body) + 1))[:10_000_000]
    exporter.serve(body, content_length=content_length)
    async with source_for(exporter, FakeClock()) as source:
        assert source.max_body_bytes == 8 * 1024 * 1024
        with pytest.raises(ScrapeError, match="body too large") as info:
            await source.collect()
    assert message in str(info.value)
    assert "max_body_bytes=8388608" in str(info.value)


async def test_a_large_body_is_not_read_to_its_end(exporter: MetricsServer) -> None:
    exporter.serve(b"#" * 64 * 1024 * 1024, content_length=False)  # far beyond socket buffers
    async with PrometheusSource(exporter.url, max_body_bytes=100_000) as source:
        with pytest.raises(ScrapeError, match="more than 100000 bytes sent"):
            await source.collect()
    with trio.fail_after(10):
        while not exporter.outcomes:
            await trio.sleep(0.01)
    assert exporter.outcomes == ["hung up"]


async def test_an_unreachable_broker_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with PrometheusSource(f"http://127.0.0.1:{port}/metrics", timeout=2.0) as source:
        with pytest.raises(ScrapeError, match=rf"scrape of http://127.0.0.1:{port}/metrics failed"):
            await source.collect()


async def test_an_empty_exposition_is_zeros_and_a_warning(
    exporter: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    exporter.serve(b"# HELP up whatever\nup 1\n")
    async with source_for(exporter, FakeClock()) as source:
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


async def test_a_shared_client_stays_open(exporter: MetricsServer) -> None:
    exporter.serve(fixture("full_1.prom"))
    async with httpx.AsyncClient() as client:
        async with PrometheusSource(exporter.url, client=client) as source:
            await source.collect()
        assert not client.is_closed
        response = await client.get(exporter.url)
        assert response.status_code == 200


# --- a live broker stand-in: a prometheus-client registry driven by the test ---


class Broker:
    """The ``takhin_*`` families of a broker, in a prometheus-client registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        tp = ["topic", "partition"]
        self.produced = Counter("takhin_produce_messages", "", tp, registry=registry)
        self.fetched = Counter("takhin_fetch_messages", "", tp, registry=registry)
        self.bytes_in = Counter("takhin_produce_bytes", "", ["topic"], registry=registry)
        self.bytes_out = Counter("takhin_fetch_bytes", "", ["topic"], registry=registry)
        self.produce_latency = Histogram(
            "takhin_produce_latency_seconds", "", ["topic"], buckets=BUCKETS, registry=registry
        )
        self.fetch_latency = Histogram(
            "takhin_fetch_latency_seconds", "", ["topic"], buckets=BUCKETS, registry=registry
        )
        self.connections = Gauge("takhin_connections_active", "", registry=registry)
        self.log_end = Gauge("takhin_storage_log_end_offset", "", tp, registry=registry)
        self.disk = Gauge("takhin_storage_disk_usage_bytes", "", tp, registry=registry)
        self.members = Gauge("takhin_consumer_group_members", "", ["group_id"], registry=registry)
        self.state = Gauge(
            "takhin_consumer_group_state", "", ["group_id", "state"], registry=registry
        )
        self.lag = Gauge(
            "takhin_consumer_group_lag_offsets",
            "",
            ["group_id", "topic", "partition"],
            registry=registry,
        )
        self.goroutines = Gauge("takhin_go_goroutines", "", registry=registry)
        self.memory = Gauge("takhin_go_mem_sys_bytes", "", registry=registry)

    def produce(self, topic: str, partition: int, count: int, size: int) -> None:
        self.produced.labels(topic, str(partition)).inc(count)
        self.bytes_in.labels(topic).inc(count * size)
        self.log_end.labels(topic, str(partition)).inc(count)
        self.disk.labels(topic, str(partition)).inc(count * size)

    def fetch(self, topic: str, partition: int, count: int, size: int) -> None:
        self.fetched.labels(topic, str(partition)).inc(count)
        self.bytes_out.labels(topic).inc(count * size)


async def test_rates_and_quantiles_from_a_live_registry(exporter: MetricsServer) -> None:
    broker = Broker()
    exporter.serve_registry(broker.registry)
    clock = FakeClock(50.0)
    async with source_for(exporter, clock) as source:
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
            total_consumers=2,
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
    sub = QueueSubscriber(capacity=100)
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
    envelopes = [decode(item.payload) for item in sub.queue.get_batch_nowait()]
    assert [e.stale for e in envelopes] == [False, True, False]
    assert envelopes[0].payload == envelopes[1].payload
    snapshot = producer.snapshot
    assert isinstance(snapshot, Snapshot)
    assert snapshot.metrics.topic_stats[0].total_messages == 10
