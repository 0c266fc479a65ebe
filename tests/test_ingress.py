"""Event ingress in-process and over ``POST /api/events`` (real sockets)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from conftest import FakeSource, ServerFactory, wait_until
from takhin_ws import (
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    Hub,
    LocalProtocolError,
    MonitoringMetrics,
    Settings,
    Snapshot,
    TopicCreated,
    TopicDeleted,
    TopicStats,
    open_server,
)
from takhin_ws.ingest.ingress import (
    MAX_ANNOUNCED,
    Event,
    EventIngress,
    IngressStatistics,
    decode_events,
)
from takhin_ws.lowlevel import QueueSubscriber
from takhin_ws.net.server import Server
from takhin_ws.protocol import Ping
from takhin_ws.wire.codec import decode
from takhin_ws.wire.http import HttpError
from takhin_ws.wire.messages import GroupStatus

KEY = "publish-secret"
PUBLISHING: dict[str, object] = {"publish_keys": (KEY,), "max_body_size": 4096}


@pytest.fixture
async def publisher(make_server: ServerFactory) -> AsyncIterator[Server]:
    """A server that takes events over HTTP with the publish key *KEY*."""
    async with make_server(FakeSource(MonitoringMetrics(timestamp=1)), **PUBLISHING) as srv:
        yield srv


def _event(name: str, partitions: int = 3) -> dict[str, object]:
    return {"type": "topic_created", "data": {"name": name, "partitions": partitions}}


def _group(group_id: str, members: int = 1) -> dict[str, object]:
    data = {"groupId": group_id, "state": "Stable", "members": members}
    return {"type": "group_updated", "data": data}


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
    with pytest.raises(LocalProtocolError) as info:
        ingress.publish_many_nowait(bad)  # type: ignore[arg-type]
    assert info.value.message.startswith("item 1: Ping is not an event (one of group_created")
    assert info.value.path == "$[1]"
    with pytest.raises(LocalProtocolError) as info:
        ingress.publish_nowait(TopicCreated(name="", partitions=1))
    assert info.value.message == "data.name: a topic name must not be empty"
    assert (info.value.code, info.value.path) == ("invalid_field", "$.data.name")
    assert hub.offset("topics") == 0
    assert ingress.statistics().rejected == 2
    assert ingress.statistics().published == 0


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (TopicCreated(name="a b", partitions=1), "$.data.name"),
        (TopicCreated(name="orders", partitions=0), "$.data.partitions"),
        (TopicDeleted(name=".."), "$.data.name"),
        (GroupUpdated(group_id="", state="Stable", members=1), "$.data.groupId"),
        (GroupUpdated(group_id="g", state="Stable", members=-1), "$.data.members"),
    ],
)
async def test_every_in_process_door_refuses_a_bad_event(event: Event, path: str) -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    good = TopicCreated(name="fine", partitions=1)
    with pytest.raises(LocalProtocolError) as info:
        ingress.publish_nowait(event)
    assert info.value.path == path
    with pytest.raises(LocalProtocolError) as info:
        await ingress.publish(event)
    assert info.value.path == path
    with pytest.raises(LocalProtocolError) as info:
        ingress.publish_many_nowait([good, event])
    assert info.value.path == path.replace("$", "$[1]", 1)
    assert info.value.message.startswith("item 1: data.")
    with pytest.raises(LocalProtocolError) as info:
        await ingress.publish_many([good, event])
    assert info.value.path == path.replace("$", "$[1]", 1)
    with pytest.raises(LocalProtocolError):
        ingress.detected_nowait(event)
    with pytest.raises(LocalProtocolError):
        await ingress.detected(event)
    assert hub.offset("topics") == hub.offset("groups") == 0  # all or nothing, every time
    assert ingress.statistics() == IngressStatistics(published=0, rejected=6, suppressed=0)


# --- what the ingress announced, the change detector does not announce again ---


def _offsets(hub: Hub) -> tuple[int, int]:
    return hub.offset("topics"), hub.offset("groups")


def test_detected_event_already_announced_is_not_published_again() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    ingress.publish_nowait(TopicCreated(name="orders", partitions=3))
    ingress.publish_nowait(GroupCreated(group_id="g", state="Empty", members=0))
    # the source catches up: the diff finds what the console announced
    assert ingress.detected_nowait(TopicCreated(name="orders", partitions=3)) is None
    assert ingress.detected_nowait(GroupCreated(group_id="g", state="Empty", members=0)) is None
    assert _offsets(hub) == (1, 1)
    assert ingress.statistics().suppressed == 2
    # from then on the snapshots' differences are news again
    assert ingress.detected_nowait(TopicDeleted(name="orders")) is not None
    assert ingress.detected_nowait(GroupUpdated(group_id="g", state="Stable", members=2))
    assert _offsets(hub) == (2, 2)


def test_detected_partitions_do_not_matter_for_a_creation() -> None:
    ingress = EventIngress(Hub())
    ingress.publish_nowait(TopicCreated(name="orders", partitions=3))
    assert ingress.detected_nowait(TopicCreated(name="orders", partitions=6)) is None


def test_detected_deletion_already_announced() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    ingress.publish_nowait(TopicDeleted(name="old"))
    ingress.publish_nowait(GroupDeleted(group_id="gone", state="Dead", members=0))
    assert ingress.detected_nowait(TopicDeleted(name="old")) is None
    assert ingress.detected_nowait(GroupDeleted(group_id="gone", state="Dead", members=0)) is None
    assert _offsets(hub) == (1, 1)


def test_detected_change_that_differs_from_the_announcement_is_published() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub)
    ingress = EventIngress(hub)
    ingress.publish_nowait(TopicCreated(name="t", partitions=1))
    ingress.publish_nowait(GroupCreated(group_id="g", state="Empty", members=0))
    ingress.publish_nowait(GroupUpdated(group_id="h", state="Stable", members=1))
    sub.queue.get_batch_nowait()
    # the console announced the topic; the snapshots saw it come and go already
    assert ingress.detected_nowait(TopicDeleted(name="t")) is not None
    # the group exists for the clients, but the snapshots see another state: an update
    assert ingress.detected_nowait(GroupCreated(group_id="g", state="Stable", members=2))
    assert ingress.detected_nowait(GroupUpdated(group_id="h", state="Stable", members=4))
    sent = [decode(item.payload).payload for item in sub.queue.get_batch_nowait()]
    assert sent == [
        TopicDeleted(name="t"),
        GroupUpdated(group_id="g", state="Stable", members=2),
        GroupUpdated(group_id="h", state="Stable", members=4),
    ]
    assert ingress.statistics().suppressed == 0


def test_the_latest_announcement_counts() -> None:
    ingress = EventIngress(Hub())
    ingress.publish_nowait(TopicCreated(name="t", partitions=1))
    ingress.publish_nowait(TopicDeleted(name="t"))
    assert ingress.detected_nowait(TopicDeleted(name="t")) is None
    ingress.publish_nowait(GroupUpdated(group_id="g", state="Stable", members=1))
    ingress.publish_nowait(GroupUpdated(group_id="g", state="Stable", members=2))
    assert ingress.detected_nowait(GroupUpdated(group_id="g", state="Stable", members=1))
    assert ingress.statistics().suppressed == 1


def test_detected_events_are_not_remembered() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    assert ingress.detected_nowait(TopicCreated(name="t", partitions=1)) is not None
    assert ingress.detected_nowait(TopicCreated(name="t", partitions=1)) is not None
    assert hub.offset("topics") == 2


def test_group_status_passes_both_doors_on_its_group_channel() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, channels=("group:billing",))
    ingress = EventIngress(hub)
    status = GroupStatus(group_id="billing", status="STALLED", previous="OK", reason="t[0]")
    # a console may announce a status; the lag tracker's is never suppressed by it
    ingress.publish_nowait(status)
    assert ingress.detected_nowait(status) is not None
    assert ingress.detected_nowait(GroupCreated(group_id="billing", state="Empty", members=0))
    items = sub.queue.get_batch_nowait()
    assert [decode(item.payload).payload for item in items] == [
        status,
        status,
        GroupCreated(group_id="billing", state="Empty", members=0),
    ]
    assert [item.channel for item in items] == ["groups"] * 3
    assert [item.route for item in items] == ["group:billing"] * 3
    assert (hub.offset("groups"), ingress.statistics().suppressed) == (3, 0)


def test_announcements_are_bounded() -> None:
    ingress = EventIngress(Hub())
    ingress.publish_many_nowait(
        [TopicCreated(name=f"t{i}", partitions=1) for i in range(MAX_ANNOUNCED + 1)]
    )
    # the oldest was forgotten (it costs one repeated event), the newest is known
    assert ingress.detected_nowait(TopicCreated(name="t0", partitions=1)) is not None
    assert ingress.detected_nowait(TopicCreated(name=f"t{MAX_ANNOUNCED}", partitions=1)) is None


async def test_async_detected() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    await ingress.publish(TopicCreated(name="t", partitions=1))
    assert await ingress.detected(TopicCreated(name="t", partitions=1)) is None
    published = await ingress.detected(TopicDeleted(name="t"))
    assert published is not None
    assert published.offset == 2


# --- the HTTP body ---


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"type":"topic_created","data":{"name":"","partitions":1}}',
            "invalid_field: data.name: a topic name must not be empty (at $.data.name)",
        ),
        (
            b'[{"type":"topic_deleted","data":{"name":"ok"}},'
            b'{"type":"topic_deleted","data":{"name":"a/b"}}]',
            "invalid_field: data.name: a topic name may only contain ASCII letters, digits, "
            "'.', '_' and '-', got 'a/b' (at $[1].data.name)",
        ),
        (b"[]", "invalid_field: the list of events is empty"),
        (b"{", "invalid_json: unexpected end of data: line 1 column 2 (char 1)"),
    ],
)
def test_decode_events_errors(body: bytes, message: str) -> None:
    with pytest.raises(HttpError) as info:
        decode_events(body)
    assert (info.value.status, info.value.message) == (400, message)


@pytest.mark.parametrize("depth", [33, 255, 1000])
def test_decode_events_refuses_deep_nesting(depth: int) -> None:
    """The body is not encoded again (orjson's encoder stops at 254 levels: a
    ``TypeError`` and no answer): deep nesting is a 400 naming the limit."""
    data = "[" * depth + "]" * depth
    body = f'{{"type":"topic_created","data":{data}}}'.encode()
    with pytest.raises(HttpError) as info:
        decode_events(body)
    assert (info.value.status, info.value.message) == (
        400,
        "too_large: JSON nests deeper than the limit of 32 levels",
    )


def test_decode_events_one_or_many() -> None:
    one = b'{"type":"topic_deleted","data":{"name":"a"}}'
    assert decode_events(one) == [TopicDeleted(name="a")]
    assert decode_events(b"[" + one + b"," + one + b"]") == [TopicDeleted(name="a")] * 2


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


# --- one check per event, at the door it came in by ---


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every event the event check is asked about, wherever it is called from."""
    from takhin_ws.ingest import ingress as ingress_module
    from takhin_ws.wire import codec as codec_module
    from takhin_ws.wire.events import check_event

    seen: list[object] = []

    def counting(event: object) -> Event:
        seen.append(event)
        return check_event(event)

    monkeypatch.setattr(codec_module, "check_event", counting)
    monkeypatch.setattr(ingress_module, "check_event", counting)
    return seen


async def test_each_door_checks_an_event_once(checks: list[object]) -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    body = orjson.dumps([_event("a"), _group("g")])
    published = await ingress.publish_body(body)  # POST /api/events: the codec checks
    assert [p.offset for p in published] == [1, 1]
    assert checks == [
        TopicCreated(name="a", partitions=3),
        GroupUpdated(group_id="g", state="Stable", members=1),
    ]
    checks.clear()
    ingress.publish_nowait(TopicCreated(name="b", partitions=1))  # in process
    await ingress.publish_many([TopicDeleted(name="b"), TopicDeleted(name="a")])
    assert checks == [
        TopicCreated(name="b", partitions=1),
        TopicDeleted(name="b"),
        TopicDeleted(name="a"),
    ]
    checks.clear()
    await ingress.detected(TopicCreated(name="c", partitions=1))  # the snapshot diff
    assert checks == [TopicCreated(name="c", partitions=1)]
    assert hub.offset("topics") == 5


async def test_a_bad_body_publishes_nothing_and_counts_as_rejected() -> None:
    hub = Hub()
    ingress = EventIngress(hub)
    with pytest.raises(HttpError) as info:
        await ingress.publish_body(orjson.dumps([_event("good"), _event("a b")]))
    assert info.value.status == 400
    assert "(at $[1].data.name)" in info.value.message
    assert hub.offset("topics") == 0
    assert ingress.statistics() == IngressStatistics(published=0, rejected=1, suppressed=0)


# --- over HTTP ---


async def test_http_publish_reaches_only_subscribed_clients(publisher: Server) -> None:
    server = publisher
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
        # Kafka's naming rules and sane counts; a good event beside a bad one waits too
        ({"body": _event("")}, 400, "a topic name must not be empty (at $.data.name)"),
        ({"body": [_event("good"), _event("")]}, 400, "(at $[1].data.name)"),
        ({"body": [_event("good"), _event("a b")]}, 400, "got 'a b' (at $[1].data.name)"),
        ({"body": [_event("good"), _event("a\tb")]}, 400, "(at $[1].data.name)"),
        ({"body": [_event("good"), _event("a:b")]}, 400, "(at $[1].data.name)"),
        ({"body": [_event("good"), _event("a/b")]}, 400, "(at $[1].data.name)"),
        ({"body": [_event("good"), _event("..")]}, 400, "cannot be '..' (at $[1].data.name)"),
        ({"body": [_event("good"), _event("x" * 250)]}, 400, "at most 249 characters"),
        ({"body": [_event("good"), _event("t", 0)]}, 400, "(at $[1].data.partitions)"),
        ({"body": _event("t", -1)}, 400, "partitions must be at least 1, got -1"),
        (
            {"body": [_event("good"), _group("g", members=-1)]},
            400,
            "members must not be negative, got -1 (at $[1].data.members)",
        ),
        ({"body": _group("")}, 400, "a group id must not be empty (at $.data.groupId)"),
    ],
)
async def test_bad_bodies_get_a_status_and_change_nothing(
    publisher: Server, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    response = await _post(publisher, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    error = response.json()["error"]
    assert error["status"] == status
    assert fragment in error["message"]
    assert publisher.hub.offset("topics") == 0
    assert publisher.hub.offset("groups") == 0
    # the connection was answered, and the server goes on taking good events
    assert (await _post(publisher, _event("next"))).status_code == 202


async def test_publishing_is_refused_without_a_configured_key(make_server: ServerFactory) -> None:
    async with make_server() as srv:
        response = await _post(srv, _event("t"))
        assert response.status_code == 403
        assert srv.hub.offset("topics") == 0


async def test_wrong_method_on_events_path(publisher: Server) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{publisher.url}/api/events")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_change_detector_events_flow_through_ingress() -> None:
    """Events found by diffing snapshots get offsets like any other event."""

    class Growing:
        def __init__(self) -> None:
            self.calls = 0

        async def collect(self) -> Snapshot:
            self.calls += 1
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


def _topics(*names: str) -> MonitoringMetrics:
    stats = tuple(
        TopicStats(
            name=name,
            partitions=3,
            total_messages=0,
            total_bytes=0,
            produce_rate=0.0,
            fetch_rate=0.0,
        )
        for name in names
    )
    return MonitoringMetrics(topic_stats=stats)


async def _ticks(source: FakeSource, count: int) -> None:
    """Until the producer has collected *count* more snapshots."""
    target = source.collected + count
    with trio.fail_after(10):
        await wait_until(lambda: source.collected >= target)


async def test_an_event_the_console_published_arrives_once(make_server: ServerFactory) -> None:
    source = FakeSource(_topics())
    async with (
        make_server(source, interval=0.02) as srv,
        open_websocket_url(srv.ws_url + "?channels=topics") as ws,
    ):
        await _ticks(source, 1)
        srv.ingress.publish_nowait(TopicCreated(name="orders", partitions=3))
        source.metrics = _topics("orders")  # the console's source catches up
        with trio.fail_after(10):
            await wait_until(lambda: srv.ingress.statistics().suppressed == 1)
        source.metrics = _topics()  # a deletion nobody announced: news
        with trio.fail_after(10):
            created = await _next_event(ws)
            deleted = await _next_event(ws)
        assert (created["type"], created["offset"]) == ("topic_created", 1)
        assert (deleted["type"], deleted["offset"]) == ("topic_deleted", 2)


async def test_change_detection_can_be_turned_off(make_server: ServerFactory) -> None:
    source = FakeSource(_topics())
    async with make_server(source, interval=0.02, detect_changes=False) as srv:
        await _ticks(source, 1)
        source.metrics = _topics("orders", "payments")
        await _ticks(source, 3)
        source.metrics = _topics()
        await _ticks(source, 3)
        assert srv.hub.offset("topics") == 0
        assert srv.producer is not None
        assert srv.producer.statistics().events == 0
        srv.ingress.publish_nowait(TopicCreated(name="orders", partitions=1))  # still works
        assert srv.hub.offset("topics") == 1


async def test_a_source_reporting_a_bad_topic_name_warns_once(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource(_topics("good"))
    async with make_server(source, interval=0.02) as srv:
        await _ticks(source, 1)
        for _ in range(4):  # the bad topic comes and goes: a change every tick
            source.metrics = _topics("good", "")
            await _ticks(source, 2)
            source.metrics = _topics("good")
            await _ticks(source, 2)
        source.metrics = _topics("good", "fine")
        with trio.fail_after(10):
            await wait_until(lambda: srv.hub.offset("topics") == 1)  # good news still flows
        assert srv.producer is not None
        assert srv.producer.statistics().invalid_events >= 8
    warnings = [r for r in caplog.records if "cannot be announced" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"
    assert "topic ''" in warnings[0].getMessage()
    assert "a topic name must not be empty" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
