"""Two real ``python -m takhin_ws`` nodes sharing one real ``redis-server``.

Each test starts its own pair of nodes (``--interval 0.5``) on a Redis emptied for it.
Every wait is a condition with a generous deadline (a hang guard, not a timing
assertion).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url
from websockets.sync.client import connect as sync_connect

from redis_server import PUBLISH_KEY, Node, RedisServer

pytestmark = pytest.mark.slow

GUARD = 20.0  # seconds: hang guard of every wait


@pytest.fixture
def nodes(redis: RedisServer, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Nodes A and B, both ready, on an empty Redis."""
    if not redis.ping():
        redis.start()
    redis.command("FLUSHALL")
    a = Node("A", redis.url, tmp_path / "a.log")
    b = Node("B", redis.url, tmp_path / "b.log")
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


# --- helpers ---


async def read(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(GUARD):
        message = orjson.loads(await ws.get_message())
    assert isinstance(message, dict)
    return message


async def next_of(ws: WebSocketConnection, kind: str) -> dict[str, Any]:
    while True:
        message = await read(ws)
        if message["type"] == kind:
            return message


async def events_until_pong(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """Every topic event the server sends before answering a ping (in order)."""
    await ws.send_message('{"type":"ping"}')
    events: list[dict[str, Any]] = []
    while True:
        message = await read(ws)
        if message["type"] == "pong":
            return events
        if message["type"].startswith("topic_"):
            events.append(message)


@asynccontextmanager
async def client(url: str) -> AsyncIterator[tuple[WebSocketConnection, dict[str, Any]]]:
    """A WebSocket client and its ``welcome``."""
    async with open_websocket_url(url) as ws:
        yield ws, await next_of(ws, "welcome")


async def publish(node: Node, *names: str) -> httpx.Response:
    body = [{"type": "topic_created", "data": {"name": n, "partitions": 1}} for n in names]
    headers = {"Authorization": f"Bearer {PUBLISH_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=node.url, timeout=GUARD) as http:
        return await http.post("/api/events", content=orjson.dumps(body), headers=headers)


async def published_offsets(node: Node, *names: str) -> list[int]:
    answer = await publish(node, *names)
    assert answer.status_code == 202, answer.text
    return [entry["offset"] for entry in answer.json()["accepted"]]


async def readyz(node: Node) -> int:
    async with httpx.AsyncClient(base_url=node.url, timeout=GUARD) as http:
        return (await http.get("/readyz")).status_code


async def wait_readyz(node: Node, status: int) -> None:
    with trio.fail_after(GUARD):
        while await readyz(node) != status:
            await trio.sleep(0.05)


# --- the cases ---


async def test_an_event_published_at_a_reaches_clients_of_both_nodes(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    async with (
        client(a.ws_url + "?channels=topics") as (ws_a, hello_a),
        client(b.ws_url + "?channels=topics") as (ws_b, hello_b),
    ):
        epoch = hello_a["data"]["epoch"]
        assert hello_b["data"]["epoch"] == epoch
        assert await published_offsets(a, "orders") == [1]
        assert await published_offsets(b, "payments", "audit") == [2, 3]
        got_a = [await next_of(ws_a, "topic_created") for _ in range(3)]
        got_b = [await next_of(ws_b, "topic_created") for _ in range(3)]
    assert got_a == got_b  # the same messages, offsets and epoch on every node
    assert [(m["offset"], m["epoch"], m["channel"]) for m in got_a] == [
        (1, epoch, "topics"),
        (2, epoch, "topics"),
        (3, epoch, "topics"),
    ]
    assert [m["data"]["name"] for m in got_a] == ["orders", "payments", "audit"]


async def test_a_client_of_a_resumes_on_b_with_exactly_the_missed_events(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    async with client(b.ws_url + "?channels=topics") as (observer, _):
        async with client(a.ws_url + "?channels=topics") as (ws, hello):
            epoch = hello["data"]["epoch"]
            await published_offsets(a, "seen1", "seen2")
            seen = [await next_of(ws, "topic_created") for _ in range(2)]
        last = seen[-1]["offset"]
        missed = await published_offsets(a, "missed1")
        missed += await published_offsets(b, "missed2", "missed3")
        assert missed == [last + 1, last + 2, last + 3]
        # B has them (its observer saw the last one) before the client comes back
        while (await next_of(observer, "topic_created"))["offset"] != missed[-1]:
            pass
        url = f"{b.ws_url}?channels=topics&since=topics:{last}&epoch={epoch}"
        async with client(url) as (back, _):
            subscribed = await next_of(back, "subscribed")
            assert subscribed["data"]["recovered"] == {"topics": True}
            replayed = await events_until_pong(back)
    assert [(m["offset"], m["data"]["name"]) for m in replayed] == [
        (missed[0], "missed1"),
        (missed[1], "missed2"),
        (missed[2], "missed3"),
    ]
    assert {m["epoch"] for m in replayed} == {epoch}


async def test_killing_the_lease_holder_moves_metrics_to_the_other_node(
    nodes: tuple[Node, Node], redis: RedisServer
) -> None:
    a, b = nodes

    def holder() -> Node | None:
        reply = redis.command("GET", "takhin:metrics-lease").decode()
        pids = {f":{node.pid}:": node for node in (a, b)}
        return next((node for pid, node in pids.items() if pid in reply), None)

    with trio.fail_after(GUARD):
        while holder() is None:
            await trio.sleep(0.05)
    first = holder()
    assert first is not None
    survivor = b if first is a else a
    async with client(survivor.ws_url + "?channels=metrics") as (ws, _):
        before = await next_of(ws, "metrics")  # collected by the holder, sent by the survivor
        first.kill()
        with trio.fail_after(GUARD):
            while holder() is not survivor:
                await trio.sleep(0.05)
        # snapshots keep coming, now collected by the survivor
        after = [await next_of(ws, "metrics") for _ in range(3)]
    assert [m["offset"] for m in after] == sorted(m["offset"] for m in after)
    assert after[0]["offset"] > before["offset"]
    assert all(m["epoch"] == before["epoch"] for m in after)
    assert "now collects the metrics" in survivor.log()
    assert await readyz(survivor) == 200


async def test_a_redis_restart_drops_no_client_and_loses_no_later_event(
    nodes: tuple[Node, Node], redis: RedisServer
) -> None:
    a, b = nodes
    async with (
        client(a.ws_url + "?channels=topics") as (ws_a, hello),
        client(b.ws_url + "?channels=topics") as (ws_b, _),
    ):
        old_epoch = hello["data"]["epoch"]
        await published_offsets(a, "before")
        for ws in (ws_a, ws_b):
            assert (await next_of(ws, "topic_created"))["data"]["name"] == "before"

        await trio.to_thread.run_sync(redis.stop)
        await wait_readyz(a, 503)
        await wait_readyz(b, 503)
        refused = await publish(a, "while-down")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"

        await trio.to_thread.run_sync(redis.start)  # empty: persistence is off
        await wait_readyz(a, 200)
        await wait_readyz(b, 200)
        assert await published_offsets(b, "after1") == [1]  # a new epoch starts at 1
        assert await published_offsets(a, "after2") == [2]
        for ws in (ws_a, ws_b):  # the same connections, still open
            got = [await next_of(ws, "topic_created") for _ in range(2)]
            assert await events_until_pong(ws) == []  # nothing twice
            assert [(m["offset"], m["data"]["name"]) for m in got] == [
                (1, "after1"),
                (2, "after2"),
            ]
            assert len({m["epoch"] for m in got}) == 1
            assert got[0]["epoch"] != old_epoch
    for node in (a, b):
        assert node.proc.poll() is None
        assert "Redis at 127.0.0.1" in node.log()


async def test_a_live_client_is_told_of_a_new_epoch_before_its_first_event(
    nodes: tuple[Node, Node], redis: RedisServer
) -> None:
    """A ``websockets`` client stays connected to A while Redis restarts empty; the
    scenario is synchronous (that client's sync API), run in a worker thread."""
    a, b = nodes

    def scenario() -> list[dict[str, Any]]:
        with sync_connect(a.ws_url + "?channels=topics", open_timeout=GUARD) as ws:

            def read() -> dict[str, Any]:
                message = orjson.loads(ws.recv(GUARD))
                assert isinstance(message, dict)
                return message

            hello = read()
            assert b.publish_topic("before") == 1
            before = read()
            redis.restart()  # empty: persistence is off
            a.wait_ready()
            b.wait_ready()
            assert b.publish_topic("after") == 1  # a new epoch starts at 1
            return [hello, before, read(), read()]

    hello, before, told, after = await trio.to_thread.run_sync(scenario)
    old_epoch = hello["data"]["epoch"]
    assert (before["type"], before["offset"], before["epoch"]) == ("topic_created", 1, old_epoch)
    new_epoch = after["epoch"]
    assert new_epoch != old_epoch
    assert told["type"] == "epoch"  # before the first event of the new epoch
    assert told["data"] == {
        "epoch": new_epoch,
        "previous": old_epoch,
        "recovered": {"topics": False, "groups": False},
    }
    assert set(told) == {"type", "data", "timestamp"}
    assert (after["type"], after["offset"], after["data"]["name"]) == ("topic_created", 1, "after")
