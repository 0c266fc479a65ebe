"""The kafka collector process dies or hangs; the server and its clients do not notice
beyond stale snapshots (a real broker, a real server, real WebSocket clients)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from clients import recv_json, ws_connect
from conftest import wait_ready
from kafka_broker import KafkaBroker, create_topic, free_port, produce, unique
from takhin_ws import Server, Settings, open_server
from takhin_ws.sources.kafka.pipe import FrameReader, frame
from takhin_ws.sources.kafka.source import KafkaSource
from takhin_ws.sources.kafka.worker import COMMAND, READ_SIZE

pytestmark = pytest.mark.slow

#: Seconds between snapshots in these tests.
INTERVAL = 1.0
#: Bound on waiting for a snapshot of a kind.
WAIT = 60.0


def source_of(server: Server) -> KafkaSource:
    assert server.producer is not None
    source = server.producer.source
    assert isinstance(source, KafkaSource)
    return source


async def metrics_until(ws: WebSocketConnection, stale: bool) -> dict[str, Any]:
    """The next ``metrics`` message whose stale flag is *stale* (others skipped)."""
    with trio.fail_after(WAIT):
        while True:
            message = await recv_json(ws, timeout=WAIT)
            if message["type"] == "metrics" and bool(message.get("stale")) is stale:
                return message


async def answers_a_ping(ws: WebSocketConnection) -> bool:
    await ws.send_message('{"type": "ping"}')
    with trio.fail_after(WAIT):
        while (await recv_json(ws))["type"] != "pong":
            pass
    return True


async def test_kill_9_of_the_collector_leaves_the_server_and_its_clients_alone(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws")
    name = unique("unshaken")
    await trio.to_thread.run_sync(create_topic, kafka.bootstrap, name, 2)
    await trio.to_thread.run_sync(produce, kafka.bootstrap, name, {0: 2, 1: 3})
    settings = Settings(port=0, interval=INTERVAL, source="kafka", kafka_bootstrap=kafka.bootstrap)
    async with open_server(settings) as server:
        await wait_ready(server)
        source = source_of(server)
        async with (
            ws_connect(server.ws_url + "?channels=metrics") as watcher,
            ws_connect(server.ws_url + "?channels=topics") as bystander,
        ):
            assert (await recv_json(bystander))["type"] == "welcome"
            await metrics_until(watcher, stale=False)
            victim = source.collector_pid
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            with trio.fail_after(WAIT):
                while source.collector_pid in (None, victim):
                    await trio.sleep(0.05)
            assert await answers_a_ping(bystander)  # served all along
            # only a live collector sees what is produced after the kill
            await trio.to_thread.run_sync(produce, kafka.bootstrap, name, {1: 4})
            with trio.fail_after(WAIT):
                while True:
                    fresh = await metrics_until(watcher, stale=False)
                    topics = {t["name"]: t for t in fresh["data"]["topicStats"]}
                    if topics[name]["totalMessages"] == 9:
                        break
            assert await answers_a_ping(bystander)
        assert server.ready
    (death,) = [r for r in caplog.records if " died: " in r.getMessage()]
    assert f"(pid {victim}) died: killed by signal SIGKILL" in death.getMessage()
    assert death.levelno == logging.WARNING


async def test_a_hung_collector_gives_stale_snapshots_then_is_killed_and_replaced(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        port=0,
        interval=INTERVAL,
        source="kafka",
        kafka_bootstrap=kafka.bootstrap,
        kafka_reset_after=2,
    )
    async with open_server(settings) as server:
        await wait_ready(server)
        source = source_of(server)
        async with ws_connect(server.ws_url + "?channels=metrics") as watcher:
            await metrics_until(watcher, stale=False)
            victim = source.collector_pid
            assert victim is not None
            os.kill(victim, signal.SIGSTOP)  # alive, silent
            await metrics_until(watcher, stale=True)
            await metrics_until(watcher, stale=False)
            assert source.collector_pid not in (None, victim)
    (death,) = [r for r in caplog.records if " died: " in r.getMessage()]
    assert "killed by signal SIGKILL (it did not answer 2 ticks in a row)" in death.getMessage()


def test_a_crash_in_c_leaves_the_python_stack_of_every_thread_on_stderr() -> None:
    """The collector process run as the server runs it, ready, then crashed (a
    fatal signal on its main thread): its standard error, which the server logs,
    says where its Python threads were (one so far: the groups' helper starts with
    the first tick)."""
    settings = {
        "bootstrap": f"127.0.0.1:{free_port()}",
        "config": [],
        "show_internal_topics": False,
        "describe_batch": 1,
        "reset_after": 1,
    }
    with subprocess.Popen(
        COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(frame(settings))
        child.stdin.flush()
        reader = FrameReader()
        while (message := reader.next()) is None:
            data = os.read(child.stdout.fileno(), READ_SIZE)
            assert data, "the collector process ended before it was ready"
            reader.feed(data)
        assert message == {"ready": True}
        child.send_signal(signal.SIGSEGV)
        _out, err = child.communicate(timeout=WAIT)
    assert child.returncode == -signal.SIGSEGV
    text = err.decode()
    assert "Fatal Python error: Segmentation fault" in text
    assert "takhin_ws/sources/kafka/process.py" in text, text
