"""One client's session over real sockets: welcome, snapshot, subscriptions, commands,
bad input and the drop-oldest ``gap``.

Clients are trio-websocket, the ``websockets`` package (asyncio, in a worker thread)
and a hand-driven wsproto client for the peer that stops reading.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
import trio
import trio.testing
import websockets.asyncio.client
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
)

from clients import Rejected, in_asyncio, loads, raw_client, recv_json, send_json, ws_connect
from conftest import (
    FakeSource,
    ServerFactory,
    make_settings,
    sample_metrics,
    wait_ready,
    wait_until,
)
from takhin_ws import (
    WS_PATH,
    GroupCreated,
    GroupUpdated,
    Server,
    TopicCreated,
    TopicDeleted,
    open_server,
)

pytestmark = pytest.mark.slow

WELCOME_KEYS = {
    "protocol",
    "clientId",
    "epoch",
    "channels",
    "heartbeat",
    "limits",
    "offsets",
    "source",
}


async def until_pong(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """Send a JSON ping and return every message received before its pong.

    Publishing writes to the sockets synchronously, so everything published before
    this call arrives before the pong: a barrier that needs no sleeps."""
    await send_json(ws, {"type": "ping"})
    seen = []
    while (msg := await recv_json(ws))["type"] != "pong":
        seen.append(msg)
    return seen


async def welcomed(ws: WebSocketConnection) -> dict[str, Any]:
    msg = await recv_json(ws)
    assert msg["type"] == "welcome", msg
    return msg


# --- welcome and snapshot ---


async def test_welcome_is_first_then_the_latest_snapshot(
    server: Server, fake_source: FakeSource
) -> None:
    async with ws_connect(server.ws_url) as ws:
        welcome = await recv_json(ws)
        assert welcome["type"] == "welcome"
        data = welcome["data"]
        assert set(data) >= WELCOME_KEYS
        assert data["protocol"] == 1
        assert data["clientId"]
        assert data["epoch"] == server.hub.epoch
        assert data["channels"] == ["groups", "metrics", "topics"]  # everything, as in 2.9
        assert data["heartbeat"] == {"interval": 54.0, "timeout": 60.0}
        assert data["limits"] == {
            "queueSize": 256,
            "maxMessageSize": 64 * 1024,
            "maxChannels": 256,
        }
        assert data["offsets"] == {"topics": 0, "groups": 0}
        assert data["source"] == "custom"  # the tests' source names no kind
        assert isinstance(welcome["timestamp"], int)

        snapshot = await recv_json(ws)
        assert snapshot["type"] == "metrics"
        assert snapshot["channel"] == "metrics"
        assert snapshot["offset"] == 1
        assert snapshot["stale"] is False
        expected = orjson.loads(server.hub.latest("metrics").payload)  # type: ignore[union-attr]
        assert snapshot["data"] == expected["data"]
        assert snapshot["data"]["clusterHealth"]["totalTopics"] == 1
        assert fake_source.collected == 1


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({}, "synthetic"),  # the default: simulated data, and welcome says so
        ({"source": "prometheus", "prometheus_url": "http://127.0.0.1:9/metrics"}, "prometheus"),
    ],
)
async def test_welcome_names_the_kind_of_the_source_the_settings_name(
    settings: dict[str, Any], kind: str
) -> None:
    async with (
        open_server(make_settings(**settings)) as server,
        ws_connect(server.ws_url + "?channels=") as ws,
    ):
        welcome = await recv_json(ws)
    assert welcome["data"]["source"] == kind


async def test_welcome_and_snapshot_with_the_websockets_client(server: Server) -> None:
    url = server.ws_url

    async def session() -> list[dict[str, Any]]:
        async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
            got = [loads(await ws.recv()), loads(await ws.recv())]
            await ws.send('{"type":"ping"}')
            got.append(loads(await ws.recv()))
            return got

    welcome, snapshot, pong = await in_asyncio(session)
    assert welcome["type"] == "welcome"
    assert set(welcome["data"]) >= WELCOME_KEYS
    assert snapshot["type"] == "metrics"
    assert snapshot["data"]["topicStats"][0]["name"] == "orders"
    assert pong["type"] == "pong"
    assert set(pong) == {"type", "timestamp"}  # the 2.9 shape: no data


async def test_no_snapshot_before_the_first_collect(make_server: ServerFactory) -> None:
    source = FakeSource(blocked=True)
    async with make_server(source) as server, ws_connect(server.ws_url) as ws:
        await welcomed(ws)
        assert await until_pong(ws) == []  # nothing to send yet
        source.release()
        msg = await recv_json(ws)  # the first snapshot, as it is published
        assert msg["type"] == "metrics"
        assert msg["offset"] == 1


async def test_channels_parameter_narrows_the_initial_subscription(server: Server) -> None:
    async with ws_connect(server.ws_url + "?channels=topic:orders,group:g1") as ws:
        welcome = await welcomed(ws)
        assert welcome["data"]["channels"] == ["group:g1", "topic:orders"]
        server.hub.publish_event(TopicCreated(name="payments", partitions=1))
        server.hub.publish_event(TopicCreated(name="orders", partitions=3))
        server.hub.publish_event(GroupCreated(group_id="g2", state="Empty", members=0))
        server.hub.publish_event(GroupCreated(group_id="g1", state="Stable", members=2))
        server.hub.publish("metrics", sample_metrics(2))
        got = await until_pong(ws)  # no snapshot: metrics is not subscribed
    assert [(m["type"], m["channel"], m["offset"]) for m in got] == [
        ("topic_created", "topics", 2),
        ("group_created", "groups", 2),
    ]
    assert got[0]["data"] == {"name": "orders", "partitions": 3}
    assert got[1]["data"] == {"groupId": "g1", "state": "Stable", "members": 2}


async def test_a_bad_channels_parameter_is_refused(server: Server) -> None:
    # (a raw client: trio-websocket leaks its socket when a handshake is rejected)
    with pytest.raises(Rejected) as info:
        async with raw_client(server.port, "/api/monitoring/ws?channels=metrics,bogus"):
            pass  # pragma: no cover
    assert info.value.status == 400
    body = orjson.loads(info.value.body)
    assert body["error"]["code"] == "bad_request"
    assert "bogus" in body["error"]["message"]


async def test_each_client_gets_only_its_channels(server: Server) -> None:
    hub = server.hub
    subscriptions = {
        "orders": "topic:orders",
        "metrics": "metrics",
        "groups": "groups",
        "topics": "topics",
        "all": None,
    }
    async with AsyncExitStack() as stack:
        clients: dict[str, WebSocketConnection] = {}
        for name, channels in subscriptions.items():
            query = "" if channels is None else f"?channels={channels}"
            clients[name] = await stack.enter_async_context(ws_connect(server.ws_url + query))
        for ws in clients.values():
            await welcomed(ws)
        # the snapshot on connect went to the metrics subscribers only
        for name in ("metrics", "all"):
            assert (await recv_json(clients[name]))["type"] == "metrics"

        hub.publish_event(TopicCreated(name="orders", partitions=3))
        hub.publish_event(TopicCreated(name="payments", partitions=1))
        hub.publish_event(GroupUpdated(group_id="g1", state="Stable", members=1))
        hub.publish("metrics", sample_metrics(2))
        hub.publish_event(TopicDeleted(name="orders"))

        seen = {name: await until_pong(ws) for name, ws in clients.items()}

    def summary(name: str) -> list[tuple[str, str, int]]:
        return [(m["type"], m["channel"], m["offset"]) for m in seen[name]]

    assert summary("orders") == [
        ("topic_created", "topics", 1),
        ("topic_deleted", "topics", 3),
    ]
    assert summary("metrics") == [("metrics", "metrics", 2)]
    assert summary("groups") == [("group_updated", "groups", 1)]
    assert summary("topics") == [
        ("topic_created", "topics", 1),
        ("topic_created", "topics", 2),
        ("topic_deleted", "topics", 3),
    ]
    assert summary("all") == [
        ("topic_created", "topics", 1),
        ("topic_created", "topics", 2),
        ("group_updated", "groups", 1),
        ("metrics", "metrics", 2),
        ("topic_deleted", "topics", 3),
    ]
    for name in seen:
        for msg in seen[name]:
            assert msg["epoch"] == hub.epoch


# --- subscribe / unsubscribe ---


async def test_29_string_subscribe_with_the_websockets_client(server: Server) -> None:
    """The Takhin 2.9 form: ``data`` is one channel name."""
    url = server.ws_url + "?channels=metrics"
    hub = server.hub
    results: list[dict[str, Any]] = []

    async def session() -> None:
        async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
            results.append(loads(await ws.recv()))  # welcome
            results.append(loads(await ws.recv()))  # snapshot
            await ws.send('{"type":"subscribe","data":"topic:orders","timestamp":1700000000}')
            results.append(loads(await ws.recv()))  # subscribed
            # the Trio side publishes once it sees the subscription
            async with asyncio.timeout(10):
                results.append(loads(await ws.recv()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(in_asyncio, session)
        with trio.fail_after(10):
            await wait_until(lambda: hub.subscribers("topic:orders") == 1)
        hub.publish_event(TopicCreated(name="payments", partitions=1))  # not subscribed
        hub.publish_event(TopicCreated(name="orders", partitions=6))

    welcome, snapshot, subscribed, event = results
    assert welcome["type"] == "welcome"
    assert welcome["data"]["channels"] == ["metrics"]
    assert snapshot["type"] == "metrics"
    assert subscribed == {
        "type": "subscribed",
        "data": {"channels": ["topic:orders"], "recovered": {}, "count": 2},
        "timestamp": subscribed["timestamp"],
    }
    assert event["type"] == "topic_created"
    assert event["data"] == {"name": "orders", "partitions": 6}
    assert event["offset"] == 2


async def test_subscribe_list_and_object_forms_then_unsubscribe(server: Server) -> None:
    hub = server.hub
    async with ws_connect(server.ws_url + "?channels=group:none") as ws:
        await welcomed(ws)

        # each answer lists what the request changed, and counts the whole subscription
        await send_json(ws, {"type": "subscribe", "data": ["topic:orders", "group:g1"]})
        msg = await recv_json(ws)
        assert msg["type"] == "subscribed"
        assert msg["data"]["channels"] == ["group:g1", "topic:orders"]
        assert msg["data"]["count"] == 3

        await send_json(ws, {"type": "subscribe", "data": {"channels": ["topics", "group:g1"]}})
        msg = await recv_json(ws)
        assert msg["data"]["channels"] == ["topics"]  # group:g1 was already there
        assert msg["data"]["count"] == 4
        assert msg["data"]["recovered"] == {}

        hub.publish_event(TopicCreated(name="payments", partitions=1))
        hub.publish_event(TopicCreated(name="orders", partitions=1))  # once, though twice matched
        hub.publish_event(GroupCreated(group_id="g1", state="Empty", members=0))
        got = await until_pong(ws)
        assert [(m["type"], m["offset"]) for m in got] == [
            ("topic_created", 1),
            ("topic_created", 2),
            ("group_created", 1),
        ]

        await send_json(ws, {"type": "unsubscribe", "data": "topics"})
        msg = await recv_json(ws)
        assert msg["type"] == "subscribed"
        assert msg["data"]["channels"] == ["topics"]  # removed
        assert msg["data"]["count"] == 3
        await send_json(ws, {"type": "unsubscribe", "data": ["group:g1", "group:none", "topic:x"]})
        msg = await recv_json(ws)
        assert msg["data"]["channels"] == ["group:g1", "group:none"]
        assert msg["data"]["count"] == 1

        hub.publish_event(TopicCreated(name="payments", partitions=2))
        hub.publish_event(GroupUpdated(group_id="g1", state="Stable", members=1))
        hub.publish_event(TopicDeleted(name="orders"))
        got = await until_pong(ws)
        assert [(m["type"], m["offset"]) for m in got] == [("topic_deleted", 4)]


async def test_subscribing_to_metrics_sends_the_snapshot_at_once(server: Server) -> None:
    async with ws_connect(server.ws_url + "?channels=topics") as ws:
        await welcomed(ws)
        await send_json(ws, {"type": "subscribe", "data": "metrics"})
        subscribed = await recv_json(ws)
        assert subscribed["type"] == "subscribed"
        assert subscribed["data"]["channels"] == ["metrics"]
        assert subscribed["data"]["count"] == 2
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "metrics"
        assert snapshot["offset"] == 1
        # already subscribed: no second snapshot
        await send_json(ws, {"type": "subscribe", "data": ["metrics"]})
        assert (await recv_json(ws))["type"] == "subscribed"
        assert await until_pong(ws) == []


# --- bad input ---


async def _expect_error(ws: WebSocketConnection, code: str) -> dict[str, Any]:
    msg = await recv_json(ws)
    assert msg["type"] == "error", msg
    assert msg["data"]["code"] == code, msg
    assert msg["data"]["message"]
    return msg["data"]  # type: ignore[no-any-return]


async def test_bad_messages_get_an_error_and_the_connection_stays(server: Server) -> None:
    async with ws_connect(server.ws_url + "?channels=topics") as ws:
        await welcomed(ws)

        await ws.send_message("{not json")
        err = await _expect_error(ws, "invalid_json")
        assert "path" not in err
        assert await until_pong(ws) == []  # still served

        await send_json(ws, {"type": "launch_missiles"})
        err = await _expect_error(ws, "unknown_type")
        assert err["path"] == "$.type"
        assert "launch_missiles" in err["message"]

        await send_json(ws, {"type": "subscribe", "data": ["topics", 5]})
        err = await _expect_error(ws, "invalid_field")
        assert err["path"] == "$.data[1]"

        await send_json(ws, {"type": "subscribe", "data": {"channels": "topics"}})
        err = await _expect_error(ws, "invalid_field")
        assert err["path"] == "$.data.channels"

        await send_json(ws, {"type": "subscribe", "data": "nonsense"})
        err = await _expect_error(ws, "invalid_field")
        assert "nonsense" in err["message"]

        await send_json(ws, [1, 2])
        err = await _expect_error(ws, "invalid_field")
        assert err["path"] == "$"

        # a rejected subscribe changed nothing
        server.hub.publish_event(GroupCreated(group_id="g", state="Empty", members=0))
        server.hub.publish_event(TopicCreated(name="t", partitions=1))
        got = await until_pong(ws)
        assert [m["type"] for m in got] == ["topic_created"]


async def test_bad_json_with_the_websockets_client(server: Server) -> None:
    url = server.ws_url

    async def session() -> list[dict[str, Any]]:
        async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
            await ws.recv()
            await ws.recv()
            await ws.send("this is not json")
            error = loads(await ws.recv())
            await ws.send('{"type":"ping"}')
            return [error, loads(await ws.recv())]

    error, pong = await in_asyncio(session)
    assert error["type"] == "error"
    assert error["data"]["code"] == "invalid_json"
    assert pong["type"] == "pong"


async def test_too_many_bad_messages_close_with_1008(make_server: ServerFactory) -> None:
    async with make_server(bad_message_limit=3) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            await welcomed(ws)
            for _ in range(3):
                await ws.send_message("nope")
                await _expect_error(ws, "invalid_json")
            assert await until_pong(ws) == []  # at the limit: still open
            await ws.send_message("nope")
            await _expect_error(ws, "invalid_json")
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1008
            assert info.value.reason.reason == "too many invalid messages"
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 0)


async def test_bad_since_counts_towards_the_abuse_limit(make_server: ServerFactory) -> None:
    """Regression: twenty ``subscribe`` messages with a bad ``since`` and a limit of
    three left the connection open (the counter's verdict was discarded)."""
    async with make_server(bad_message_limit=3) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            await welcomed(ws)
            bad = {"type": "subscribe", "data": {"channels": ["topics"], "since": {"metrics": 1}}}
            for _ in range(4):
                await send_json(ws, bad)
                error = await _expect_error(ws, "invalid_field")
                assert error["path"] == "$.data.since.metrics"
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1008
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 0)


async def test_a_frame_over_max_message_size_closes_with_1009(
    make_server: ServerFactory,
) -> None:
    async with make_server(max_message_size=1024) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url) as ws:
            welcome = await welcomed(ws)
            assert welcome["data"]["limits"]["maxMessageSize"] == 1024
            # just under the limit is fine (an error, not a close: it is no message type)
            await send_json(ws, {"type": "ping", "pad": "x" * 900})
            assert (await recv_json(ws))["type"] == "metrics"
            await _expect_error(ws, "invalid_field")
            await ws.send_message("x" * 2000)
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1009
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 0)


# --- drop-oldest queue and gap ---


async def test_an_overflowing_client_gets_a_gap_then_exact_offsets(
    make_server: ServerFactory,
) -> None:
    """A reader that falls behind by more than its queue loses the oldest messages,
    is told exactly which (``gap`` before the next message), and nothing is ever
    duplicated or reordered."""
    async with make_server(queue_size=256) as server:
        await wait_ready(server)
        hub = server.hub
        async with raw_client(server.port, "/api/monitoring/ws?channels=topics", rcvbuf=4096) as c:
            assert (await c.message())["type"] == "welcome"
            (session,) = server.sessions
            transport = session.transport
            total = 0
            # publish until the kernel buffers are full and 1000 queued messages were
            # dropped; publish never waits for a reader
            with trio.testing.assert_no_checkpoints():
                while transport.queue.statistics().dropped_total < 1000:
                    total += 1
                    hub.publish_event(TopicCreated(name=f"t{total}-{'x' * 200}", partitions=1))
                    assert total < 1_000_000
            assert transport.backlogged
            assert len(transport.queue) == 256  # full: the oldest were dropped

            offsets: list[int] = []
            gaps: list[dict[str, Any]] = []
            while not offsets or offsets[-1] < total:
                msg = await c.message()
                if msg["type"] == "gap":
                    gaps.append(msg["data"])
                    offsets.append(-1)  # marks where the gap arrived
                else:
                    assert msg["type"] == "topic_created"
                    assert msg["data"]["name"].startswith(f"t{msg['offset']}-")
                    offsets.append(msg["offset"])

    assert len(gaps) == 1
    gap = gaps[0]
    cut = offsets.index(-1)
    before, after = offsets[:cut], offsets[cut + 1 :]
    assert before == list(range(1, len(before) + 1))
    assert gap == {
        "channel": "topics",
        "firstOffset": len(before) + 1,
        "lastOffset": gap["lastOffset"],
        "count": gap["lastOffset"] - len(before),
    }
    assert after == list(range(gap["lastOffset"] + 1, total + 1))
    assert len(after) == 256  # the queue's worth, exactly
    assert hub.statistics().dropped == gap["count"]


async def test_history_with_the_websockets_client(server: Server) -> None:
    """A page that reloads asks for the chart series and gets every tick's point."""
    url = server.ws_url + "?channels=topics"

    async def session() -> dict[str, Any]:
        async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
            assert loads(await ws.recv())["type"] == "welcome"
            await ws.send('{"type":"history"}')
            return loads(await ws.recv())

    history = await in_asyncio(session)
    assert history["type"] == "history"
    assert history["data"]["interval"] == server.settings.interval
    (point,) = history["data"]["points"]  # the one tick so far (interval 3600 s)
    assert point["throughput"]["produceRate"] == sample_metrics().throughput.produce_rate
    assert point["timestamp"] > 1_700_000_000


# --- how each session ended, as the server logs it (found by make mutation) ---


def endings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [
        (r.closed_by, r.close_code, r.close_reason)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "takhin_ws.server" and hasattr(r, "closed_by")
    ]


async def closed_with(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Read until the server closes; its close code and reason."""
    with trio.fail_after(10):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
    assert reason is not None
    return reason.code, reason.reason


async def _ended(server: Server, caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    with trio.fail_after(10):
        await wait_until(lambda: len(server.hub) == 0 and bool(endings(caplog)))
    return endings(caplog)


@pytest.mark.parametrize(("code", "reason"), [(4000, "bye"), (1000, None)])
async def test_a_client_close_is_logged_with_its_code_and_reason(
    server: Server, caplog: pytest.LogCaptureFixture, code: int, reason: str | None
) -> None:
    caplog.set_level("INFO", logger="takhin_ws.server")
    async with ws_connect(server.ws_url + "?channels=topics") as ws:
        await welcomed(ws)
        with trio.fail_after(10):
            await ws.aclose(code, reason)
    assert await _ended(server, caplog) == [("client", code, reason or "")]


async def test_a_server_close_is_logged_with_its_code_and_reason(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="takhin_ws.server")
    async with make_server(bad_message_limit=0) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            await welcomed(ws)
            await ws.send_message("nope")
            assert (await closed_with(ws))[0] == 1008
        assert await _ended(server, caplog) == [("server", 1008, "too many invalid messages")]


async def test_shutdown_closes_each_session_with_1001(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="takhin_ws.server")
    async with make_server() as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            await welcomed(ws)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                code, reason = await closed_with(ws)
    assert code == 1001
    assert endings(caplog) == [("server", 1001, reason)]


async def test_a_peer_that_vanishes_is_logged_as_dropped(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="takhin_ws.server")
    async with raw_client(server.port, WS_PATH + "?channels=topics") as client:
        await client.stream.aclose()  # no Close frame: the TCP connection just ends
    ((by, code, reason),) = await _ended(server, caplog)
    assert (by, code) == ("dropped", 1006)
    assert reason


async def test_a_silent_peer_is_logged_as_dropped_with_the_reason(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="takhin_ws.server")
    async with make_server(ping_interval=0.1, ping_timeout=0.3) as server:
        await wait_ready(server)
        async with raw_client(server.port, WS_PATH + "?channels=topics"):
            # it never answers a ping: the heartbeat drops it
            assert await _ended(server, caplog) == [
                ("dropped", 1006, "heartbeat timeout: no pong within 0.3 s")
            ]


async def test_since_on_connect_resumes_in_that_epoch_only(server: Server) -> None:
    for name in "abc":
        server.hub.publish_event(TopicCreated(name=name, partitions=1))
    query = f"?channels=topics&since=topics:1&epoch={server.hub.epoch}"
    async with ws_connect(server.ws_url + query) as ws:
        await welcomed(ws)
        subscribed = await recv_json(ws)
        assert (subscribed["type"], subscribed["data"]["recovered"]) == (
            "subscribed",
            {"topics": True},
        )
        assert [m["offset"] for m in await until_pong(ws)] == [2, 3]
    async with ws_connect(server.ws_url + "?channels=topics&since=topics:1&epoch=other") as ws:
        await welcomed(ws)
        subscribed = await recv_json(ws)
        assert subscribed["data"]["recovered"] == {"topics": False}
        assert await until_pong(ws) == []
