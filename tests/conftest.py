"""Shared fixtures: a metrics source the test controls and a running server on a free port.

Kept generic on purpose: any test that needs a real server over real sockets can use
``server`` (default test settings) or ``make_server`` (its own settings), with the
``fake_source`` that decides when the first snapshot exists. ``redis`` is a real
``redis-server`` per test module (the cluster tests); ``kafka`` a real Kafka broker
for the session (``kafka_broker.py``, the Kafka source tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import pytest
import trio

from kafka_broker import kafka  # noqa: F401  (the session's Kafka broker fixture)
from redis_server import RedisServer, redis_binary
from takhin_ws import (
    ClusterHealth,
    MonitoringMetrics,
    Server,
    Settings,
    Snapshot,
    Throughput,
    TopicStats,
    open_server,
)


def sample_metrics(n: int = 1) -> MonitoringMetrics:
    """A small, recognisable metrics payload (``clusterHealth.totalTopics == n``)."""
    return MonitoringMetrics(
        throughput=Throughput(produce_rate=10.0 * n, fetch_rate=5.0 * n),
        topic_stats=(
            TopicStats(
                name="orders",
                partitions=3,
                total_messages=100 * n,
                total_bytes=1000 * n,
                produce_rate=1.5,
                fetch_rate=0.5,
            ),
        ),
        cluster_health=ClusterHealth(total_topics=n, total_partitions=3 * n),
        timestamp=1_700_000_000 + n,
    )


class FakeSource:
    """A :class:`~takhin_ws.MetricsSource` the test drives.

    ``collect`` returns ``Snapshot(metrics=self.metrics)``; while ``gate`` is not
    set it waits (so the server stays unready). ``collected`` counts the answers.
    """

    def __init__(self, metrics: MonitoringMetrics | None = None, *, blocked: bool = False) -> None:
        self.metrics = metrics or sample_metrics()
        self.gate = trio.Event()
        if not blocked:
            self.gate.set()
        self.collected = 0

    def release(self) -> None:
        self.gate.set()

    async def collect(self) -> Snapshot:
        await self.gate.wait()
        self.collected += 1
        return Snapshot(metrics=self.metrics)


#: Settings for tests: a free port, and a producer that ticks once (at start) so
#: no snapshot arrives unannounced in the middle of a test.
TEST_DEFAULTS: dict[str, Any] = {"port": 0, "interval": 3600.0}


def make_settings(**overrides: Any) -> Settings:
    return Settings(**{**TEST_DEFAULTS, **overrides})


class ServerFactory(Protocol):
    def __call__(
        self, source: FakeSource | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[Server]: ...


async def wait_until(predicate: Callable[[], bool], *, poll: float = 0.005) -> None:
    """Poll *predicate* until it holds (callers bound the wait with ``fail_after``)."""
    while not predicate():
        await trio.sleep(poll)


async def wait_ready(server: Server) -> None:
    """Until the first metrics snapshot has been published."""
    with trio.fail_after(10):
        await wait_until(lambda: server.hub.latest("metrics") is not None)


@pytest.fixture
def fake_source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def make_server(fake_source: FakeSource) -> ServerFactory:
    """``async with make_server(source=None, **settings) as server``: a running server
    (``Settings(port=0, interval=3600, **settings)``) fed by *source* or ``fake_source``."""

    @asynccontextmanager
    async def factory(source: FakeSource | None = None, **overrides: Any) -> AsyncIterator[Server]:
        async with open_server(make_settings(**overrides), source=source or fake_source) as srv:
            yield srv

    return factory


@pytest.fixture
async def server(make_server: ServerFactory) -> AsyncIterator[Server]:
    """A server with test settings whose first snapshot has been published."""
    async with make_server() as srv:
        await wait_ready(srv)
        yield srv


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` (no persistence) for the module's tests; skips without
    one (see ``redis_server.py``)."""
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
