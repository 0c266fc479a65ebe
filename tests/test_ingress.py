"""Event ingress in-process and over ``POST /api/events`` (real sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from takhin_ws import (
    GroupUpdated,
    Hub,
    LocalProtocolError,
    MonitoringMetrics,
    Ping,
    QueueSubscriber,
    Settings,
    Snapshot,
    TopicCreated,
    TopicDeleted,
    open_server,
)
from takhin_ws._ingress import EventIngress
from takhin_ws._server import Server

KEY = "publish-secret"


class StaticSource:
    async def collect(self) -> Snapshot:
        return Snapshot(metrics=MonitoringMetrics(timestamp=1))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    settings = Settings(port=0, publish_keys=(KEY,), max_body_size=4096, interval=60)
    async with open_server(settings, source=StaticSource()) as srv:
        yield srv


def _event(name: str, partitions: int = 3) -> dict[str, object]:
    return {"type": "topic_created", "data": {"name": name, "partitions": partitions}}


async def _post(
    server: Server,
    body: object,
    *,
    key: str | None = KEY,
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{server.url}/api/events",
            content=raw if raw is not None else orjson.dumps(body),
            headers=headers,
        )


async def _next_event(ws: WebSocketConnection) -> dict[str, object]:
    """The next message that is not welcome/metrics/subscribed."""
    while True:
        msg = orjson.loads(await ws.get_message())
        if msg["type"] not in ("welcome", "metrics", "subscribed"):
            return dict(msg)


async def _nothing_pending(ws: WebSocketConnection) -> list[str]:
    """Types of every message that arrives before the answer to a ping."""
    await ws.send_message('{"type":"ping"}')
    seen: list[str] = []
    while True:
        msg = orjson.loads(await ws.get_message())
        if msg["type"] == "pong":
            return seen
        if msg["type"] not in ("welcome", "metrics"):
            seen.append(msg["type"])


# --- in-process ---


def test_publish_nowait_assigns_offsets_in_call_order() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub)
    ingress = EventIngress(hub)
    first = ingress.publish_nowait(TopicCreated(name="a", partitions=1))
    second = ingress.publish_nowait(GroupUpdated(group_id="g", state="Stable", members=2))
    third = ingress.publish_nowait(TopicDeleted(name="a"))
    assert (first.channel, first.offset) == ("topics", 1)
    assert (second.channel, second.offset) == ("groups", 1)
    assert (third.channel, third.offset) == ("topics", 2)
    assert first.epoch == hub.epoch
    queued = sub.queue.get_batch_nowait()
    assert [(i.channel, i.offset) for i in queued] == [("topics", 1), ("groups", 1), ("topics", 2)]


def test_batch_with_a_bad_item_publishes_nothing() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    bad: list[object] = [TopicCreated(name="ok", partitions=1), Ping()]
    with pytest.raises(LocalProtocolError, match="item 1"):
        ingress.publish_many_nowait(bad)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="item 0"):
        ingress.publish_nowait(TopicCreated(name="", partitions=1))
    assert hub.offset("topics") == 0
    assert ingress.statistics().rejected == 2
    assert ingress.statistics().published == 0


def test_a_name_no_channel_can_carry_still_reaches_the_stream() -> None:
    hub = Hub()
    wide, narrow = QueueSubscriber(), QueueSubscriber()
    hub.add_client(wide, ["groups"])
    hub.add_client(narrow, ["group:billing"])
    published = EventIngress(hub).publish_nowait(
        GroupUpdated(group_id="billing team", state="Stable", members=1)
    )
    assert published.offset == 1
    assert [i.offset for i in wide.queue.get_batch_nowait()] == [1]
    assert not narrow.queue


async def test_async_publish_returns_offset() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    published = await ingress.publish(TopicCreated(name="x", partitions=2))
    assert published.offset == 1
    many = await ingress.publish_many(
        [TopicDeleted(name="x"), TopicCreated(name="y", partitions=1)]
    )
    assert [p.offset for p in many] == [2, 3]


# --- over HTTP ---


async def test_http_publish_reaches_only_subscribed_clients(server: Server) -> None:
    async with (
        open_websocket_url(server.ws_url + "?channels=topic:orders") as orders,
        open_websocket_url(server.ws_url + "?channels=groups") as groups,
        open_websocket_url(server.ws_url + "?channels=metrics") as metrics_only,
    ):
        response = await _post(
            server,
            [
                _event("payments"),
                _event("orders", 6),
                {
                    "type": "group_updated",
                    "data": {"groupId": "g1", "state": "Stable", "members": 3},
                },
            ],
        )
        assert response.status_code == 202
        accepted = response.json()["accepted"]
        assert [(a["channel"], a["offset"]) for a in accepted] == [
            ("topics", 1),
            ("topics", 2),
            ("groups", 1),
        ]
        got = await _next_event(orders)
        assert got["type"] == "topic_created"
        assert got["data"] == {"name": "orders", "partitions": 6}
        assert (got["channel"], got["offset"], got["epoch"]) == ("topics", 2, server.hub.epoch)
        assert await _nothing_pending(orders) == []
        got = await _next_event(groups)
        assert got["data"] == {"groupId": "g1", "state": "Stable", "members": 3}
        assert await _nothing_pending(groups) == []
        assert await _nothing_pending(metrics_only) == []


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"body": _event("t"), "key": None}, 401, "publish key"),
        ({"body": _event("t"), "key": "wrong"}, 401, "publish key"),
        ({"body": _event("t"), "content_type": "text/plain"}, 415, "application/json"),
        ({"body": None, "raw": b"{not json"}, 400, "invalid_json"),
        ({"body": []}, 400, "empty"),
        ({"body": {"type": "metrics", "data": {}}}, 400, "unknown_type"),
        (
            {"body": [_event("good"), {"type": "topic_created", "data": {"name": "x"}}]},
            400,
            "$[1].data.partitions",
        ),
        ({"body": [_event("good"), _event("x", "5")]}, 400, "expected an integer"),  # type: ignore[arg-type]
        ({"body": None, "raw": b"[" + b" " * 5000 + b"]"}, 413, "limit"),
    ],
)
async def test_bad_bodies_get_a_status_and_change_nothing(
    server: Server, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    response = await _post(server, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]
    assert server.hub.offset("topics") == 0
    assert server.hub.offset("groups") == 0


async def test_publishing_is_refused_without_a_configured_key() -> None:
    async with open_server(Settings(port=0, interval=60), source=StaticSource()) as srv:
        response = await _post(srv, _event("t"))
        assert response.status_code == 403
        assert srv.hub.offset("topics") == 0


async def test_wrong_method_on_events_path(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/api/events")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_change_detector_events_flow_through_ingress() -> None:
    """Events found by diffing snapshots get offsets like any other event."""

    class Growing:
        def __init__(self) -> None:
            self.calls = 0

        async def collect(self) -> Snapshot:
            self.calls += 1
            from takhin_ws import TopicStats

            topics = tuple(
                TopicStats(
                    name=f"t{i}",
                    partitions=1,
                    total_messages=0,
                    total_bytes=0,
                    produce_rate=0.0,
                    fetch_rate=0.0,
                )
                for i in range(self.calls)
            )
            return Snapshot(metrics=MonitoringMetrics(topic_stats=topics))

    async with (
        open_server(Settings(port=0, interval=0.05), source=Growing()) as srv,
        open_websocket_url(srv.ws_url + "?channels=topics") as ws,
    ):
        with trio.fail_after(10):
            first = await _next_event(ws)
            second = await _next_event(ws)
        assert first["type"] == second["type"] == "topic_created"
        assert int(str(second["offset"])) == int(str(first["offset"])) + 1
        assert srv.ingress.statistics().published >= 2
