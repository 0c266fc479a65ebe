"""The metrics lease (``cluster/lease.py``): one node at a time collects the metrics.

Against a real ``redis-server`` (see ``redis_server.py``); every wait is bounded (a
hang guard, not a timing assertion).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from redis_server import RedisServer, free_port
from takhin_ws import Settings
from takhin_ws.cluster.connection import where
from takhin_ws.cluster.lease import MIN_LEASE_TTL, MetricsLease

GUARD = 20  # seconds: hang guard of every wait


@pytest.fixture(autouse=True)
def flushed(redis: RedisServer) -> None:
    if not redis.ping():
        redis.start()
    redis.command("FLUSHALL")


@asynccontextmanager
async def running(url: str, **options: Any) -> AsyncIterator[MetricsLease]:
    lease = MetricsLease(url, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(lease.run)
        yield lease
        nursery.cancel_scope.cancel()


def holder(redis: RedisServer) -> bytes:
    return redis.command("GET", "takhin:metrics-lease")


async def test_one_node_at_a_time_holds_the_metrics_lease(redis: RedisServer) -> None:
    async with running(redis.url, ttl=0.5) as a, running(redis.url, ttl=0.5) as b:
        assert await a.hold()
        assert not await b.hold()
        assert await a.hold()  # renewed
        assert a.held
        await a.release()
        assert await b.hold()  # free at once after a release
        assert not await a.hold()
        # b stops renewing (as if it died): a takes over once the lease expires
        with trio.fail_after(GUARD):
            while not await a.hold():
                await trio.sleep(0.05)
        assert not await b.hold()


async def test_the_lease_names_its_holder_and_expires(redis: RedisServer) -> None:
    async with running(redis.url, ttl=30, node_id="node-a") as a:
        assert await a.hold()
        assert holder(redis) == b"$6\r\nnode-a\r\n"
        ttl_ms = int(redis.command("PTTL", "takhin:metrics-lease").strip(b":\r\n"))
        assert 0 < ttl_ms <= 30_000
        await a.aclose()
        assert not a.held
        assert holder(redis) == b"$-1\r\n"
        await a.aclose()  # releasing what is not held: nothing to do


async def test_a_release_never_frees_another_nodes_lease(redis: RedisServer) -> None:
    async with running(redis.url, node_id="a") as a:
        assert await a.hold()
        redis.command("SET", "takhin:metrics-lease", "b")  # a lost it meanwhile
        await a.release()
        assert holder(redis) == b"$1\r\nb\r\n"


async def test_the_lease_prefix_names_the_key(redis: RedisServer) -> None:
    async with running(redis.url, prefix="other", node_id="x") as a:
        assert await a.hold()
    assert redis.command("GET", "other:metrics-lease") == b"$1\r\nx\r\n"
    assert holder(redis) == b"$-1\r\n"


async def test_not_running_or_redis_unreachable_means_not_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.cluster")
    lease = MetricsLease(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    assert not await lease.hold()  # run() is not running
    assert lease.holder is None
    async with running(lease.url, timeout=1.0) as down:
        assert not await down.hold()
        assert not await down.hold()
        assert down.holder == ""
        await down.release()  # never raises
    # the first answer is logged (once), so a node that collects nothing says why
    (line,) = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith(
        f"metrics lease: Redis at {where(lease.url)} does not answer"
    )
    assert line.getMessage().endswith("no node collects until it does")


async def test_taking_and_losing_the_lease_is_logged_once_each(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.cluster")
    async with running(redis.url, node_id="me") as a:
        for _ in range(3):
            assert await a.hold()
        redis.command("SET", "takhin:metrics-lease", "someone-else")
        for _ in range(3):
            assert not await a.hold()
        assert a.holder == "someone-else"
        redis.command("SET", "takhin:metrics-lease", "a-third")
        assert not await a.hold()
    lines = [r.getMessage() for r in caplog.records]
    follows = (
        "collects the metrics (it holds the lease); this node serves the snapshots it publishes"
    )
    assert lines == [
        "this node (me) now collects the metrics (lease taken)",
        f"this node (me) no longer collects the metrics: another node (someone-else) {follows}",
        f"another node (a-third) {follows}",
    ]


async def test_a_node_that_never_holds_the_lease_says_who_does(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.cluster")
    redis.command("SET", "takhin:metrics-lease", "node-a")
    async with running(redis.url, node_id="node-b") as b:
        for _ in range(3):
            assert not await b.hold()
    assert [r.getMessage() for r in caplog.records] == [
        "another node (node-a) collects the metrics (it holds the lease); this node serves "
        "the snapshots it publishes"
    ]


async def test_run_once_at_a_time(redis: RedisServer) -> None:
    async with running(redis.url) as lease:
        with pytest.raises(RuntimeError, match="already running"):
            await lease.run()


@pytest.mark.parametrize(
    ("interval", "collect_timeout", "ttl"),
    [(2.0, None, 6.0), (2.0, 5.0, 15.0), (0.1, None, MIN_LEASE_TTL), (0.5, 0.2, 1.5)],
)
def test_for_settings_outlives_three_collect_periods(
    interval: float, collect_timeout: float | None, ttl: float
) -> None:
    settings = Settings(interval=interval, collect_timeout=collect_timeout, redis_url="redis://h/0")
    assert MetricsLease.for_settings(settings).ttl == pytest.approx(ttl)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="redis_url is not set"):
        MetricsLease.for_settings(Settings())
    with pytest.raises(ValueError, match="positive"):
        MetricsLease("redis://h/0", ttl=0)
    with pytest.raises(ValueError, match="positive"):
        MetricsLease("redis://h/0", timeout=-1)
