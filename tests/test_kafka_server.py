"""takhin-ws on ``--source kafka`` against a real broker, over real sockets.

Change events reach a subscribed WebSocket client; a stopped broker gives stale
snapshots and ``/readyz`` 503, and the same server recovers when it comes back;
``python -m takhin_ws --source kafka`` serves the broker's topics end to end.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from clients import http_exchange, recv_json, status_of, ws_connect
from conftest import wait_ready
from kafka_broker import KafkaBroker, commit, create_topic, delete_topic, produce, unique
from takhin_ws import MetricsSource, Server, Settings, Snapshot, open_server
from takhin_ws.sources import source_for
from takhin_ws.sources.kafka.source import KafkaSource
from test_cli import SERVING, clean_env, command

pytestmark = pytest.mark.slow

#: Seconds between snapshots in these tests (each collect must fit in it).
INTERVAL = 1.0
#: Bound on waiting for a change to show (a few ticks, a broker restart).
WAIT = 90.0


def kafka_settings(broker: KafkaBroker, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "port": 0,
        "interval": INTERVAL,
        "source": "kafka",
        "kafka_bootstrap": broker.bootstrap,
    }
    return Settings(**{**values, **overrides})


async def run(fn: Callable[..., object], *args: Any) -> None:
    await trio.to_thread.run_sync(lambda: fn(*args))


async def next_message(
    ws: WebSocketConnection, kind: str, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The next message of type *kind* whose envelope satisfies *match*."""
    with trio.fail_after(WAIT):
        while True:
            message = await recv_json(ws, timeout=WAIT)
            if message["type"] == kind and match(message):
                return message


async def readyz(server: Server) -> int:
    response = await http_exchange(server.port, b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return status_of(response)


async def test_topic_created_and_deleted_reach_a_subscribed_client(kafka: KafkaBroker) -> None:
    name = unique("announced")
    async with open_server(kafka_settings(kafka)) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await run(create_topic, kafka.bootstrap, name, 2)
            created = await next_message(ws, "topic_created", lambda m: m["data"]["name"] == name)
            assert created["data"] == {"name": name, "partitions": 2}
            await run(delete_topic, kafka.bootstrap, name)
            deleted = await next_message(ws, "topic_deleted", lambda m: m["data"]["name"] == name)
            assert deleted["data"] == {"name": name}
            assert deleted["offset"] > created["offset"]


class Counting:
    """A source that numbers its collects and remembers which ones gave a snapshot."""

    def __init__(self, inner: MetricsSource) -> None:
        self.inner = inner
        self.started = 0
        self.fresh: list[int] = []

    async def collect(self) -> Snapshot:
        self.started += 1
        number = self.started
        snapshot = await self.inner.collect()
        self.fresh.append(number)
        return snapshot


async def test_a_restarted_broker_gives_stale_then_whole_fresh_snapshots_within_2_ticks(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped: stale snapshots and /readyz 503; started again on the same ports: a
    fresh snapshot within 2 ticks of the broker answering, whole (every topic and group
    of before, with its offsets), and /readyz 200 with the same server and client."""
    caplog.set_level(logging.DEBUG, logger="takhin_ws.metrics")
    caplog.set_level(logging.INFO, logger="takhin_ws")
    name, group = unique("survivor"), unique("steady")
    await run(create_topic, kafka.bootstrap, name, 3)
    await run(produce, kafka.bootstrap, name, {0: 3, 1: 4, 2: 5})
    await run(commit, kafka.bootstrap, group, name, {0: 1, 1: 4})
    settings = kafka_settings(kafka, unready_after=2)
    kafka_source = source_for(settings)
    assert isinstance(kafka_source, KafkaSource)
    source = Counting(kafka_source)
    async with kafka_source, open_server(settings, source=source) as server:
        await wait_ready(server)
        assert await readyz(server) == 200
        async with ws_connect(server.ws_url + "?channels=metrics") as ws:
            before = await next_message(ws, "metrics", lambda m: not m.get("stale"))
            kafka.stop()
            try:
                stale = await next_message(ws, "metrics", lambda m: m.get("stale") is True)
                assert stale["data"]["topicStats"] == before["data"]["topicStats"]
                with trio.fail_after(WAIT):
                    while await readyz(server) != 503:
                        await trio.sleep(0.2)
            finally:
                await run(kafka.start)
            ready = source.started  # the collect under way now is the first chance
            fresh = await next_message(ws, "metrics", lambda m: not m.get("stale"))
            assert min(n for n in source.fresh if n >= ready) <= ready + 2, (ready, source.fresh)
            (topic,) = [t for t in fresh["data"]["topicStats"] if t["name"] == name]
            assert (topic["partitions"], topic["totalMessages"]) == (3, 12)
            (lags,) = [c for c in fresh["data"]["consumerLags"] if c["groupId"] == group]
            assert lags["totalLag"] == 2 + 0
        with trio.fail_after(WAIT):
            while await readyz(server) != 200:
                await trio.sleep(0.2)
    # one clear line for the outage, one for the recovery, nothing from librdkafka
    failures = [r for r in caplog.records if r.getMessage().startswith("metrics source failed:")]
    assert len(failures) == 1, caplog.text
    assert f"kafka {kafka.bootstrap}: " in failures[0].getMessage()
    assert "metrics source recovered" in caplog.text
    assert not [r for r in caplog.records if "librdkafka" in r.name and r.levelno > logging.DEBUG]


async def test_python_m_takhin_ws_source_kafka_end_to_end(kafka: KafkaBroker) -> None:
    name = unique("cli")
    await run(create_topic, kafka.bootstrap, name, 4)
    await run(produce, kafka.bootstrap, name, {0: 1, 3: 2})
    args = ["--port", "0", "--interval", str(INTERVAL), "--source", "kafka"]
    args += ["--kafka-bootstrap", kafka.bootstrap, "--log-level", "info"]
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command(*args),
                env=clean_env(),
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stderr is not None
        with trio.fail_after(WAIT):
            while not (match := SERVING.search(stderr.decode())):
                chunk = await process.stderr.receive_some()
                assert chunk, f"exited before serving: {stderr.decode()}"
                stderr += chunk

        async def drain() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some():
                stderr.extend(chunk)

        nursery.start_soon(drain)
        async with ws_connect(match.group(3)) as ws:
            metrics = await next_message(
                ws, "metrics", lambda m: any(t["name"] == name for t in m["data"]["topicStats"])
            )
        (topic,) = [t for t in metrics["data"]["topicStats"] if t["name"] == name]
        assert (topic["partitions"], topic["totalMessages"]) == (4, 3)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            assert await process.wait() == 0
    log = stderr.decode()
    assert "Traceback" not in log
    assert "%3|" not in log  # librdkafka's own lines are not on stderr
