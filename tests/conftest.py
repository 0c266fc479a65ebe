"""Shared fixtures, each defined once: a metrics source the test controls, a running
server on a free port, a bare hub, and a real ``redis-server``.

Kept generic on purpose: any test that needs a real server over real sockets can use
``server`` (default test settings, or a module's own through the ``server_settings``
marker) or ``make_server`` (its own settings per call), with the ``fake_source`` that
decides when the first snapshot exists. ``redis`` is a real ``redis-server`` per test
module (the cluster tests); ``kafka`` a real Kafka broker for the session
(``kafka_broker.py``, the Kafka source tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import pytest
import trio

from kafka_broker import kafka, kafka3  # noqa: F401  (the session's Kafka broker fixtures)
from redis_server import RedisServer, redis_binary
from takhin_ws import (
    ClusterHealth,
    Hub,
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "server_settings(**overrides): settings of the `server` fixture for these tests",
    )


@pytest.fixture
async def server(
    make_server: ServerFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Server]:
    """A server with test settings whose first snapshot has been published;
    ``@pytest.mark.server_settings(...)`` (on a test or a module) overrides settings."""
    marker = request.node.get_closest_marker("server_settings")
    overrides = marker.kwargs if marker is not None else {}
    async with make_server(**overrides) as srv:
        await wait_ready(srv)
        yield srv


#: The wall clock of the ``hub`` fixture: every envelope's timestamp is this.
HUB_WALL_CLOCK = 1_700_000_000.0


@pytest.fixture
def hub() -> Hub:
    """A hub with default limits, no clients, and a fixed wall clock (``HUB_WALL_CLOCK``)."""
    return Hub(wall_clock=lambda: HUB_WALL_CLOCK)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` for the module (skips when none is installed)."""
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
