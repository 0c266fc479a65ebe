"""Hostile and careless input over real sockets (issue 13): channel floods, command
floods, binary frames, HEAD, slow bodies, odd handshakes. Each test failed on the
behaviour before it was fixed."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection

from clients import (
    Rejected,
    http_exchange,
    open_raw_stream,
    raw_client,
    read_to_eof,
    recv_json,
    send_json,
    status_of,
    ws_connect,
)
from conftest import ServerFactory, wait_ready, wait_until
from takhin_ws import Server
from takhin_ws.wire.http import MAX_HEAD_BYTES

pytestmark = pytest.mark.slow

UPGRADE = (
    b"GET /api/monitoring/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def split_response(response: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line.encode(), headers, body


async def welcomed(ws: WebSocketConnection) -> dict[str, Any]:
    msg = await recv_json(ws)
    assert msg["type"] == "welcome", msg
    return msg


async def pong_after(ws: WebSocketConnection) -> list[dict[str, Any]]:
    await send_json(ws, {"type": "ping"})
    seen = []
    while (msg := await recv_json(ws))["type"] != "pong":
        seen.append(msg)
    return seen


# --- channels per connection ---


async def test_a_subscribe_over_the_channel_limit_is_refused_whole(
    make_server: ServerFactory,
) -> None:
    async with make_server(max_channels=50) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            welcome = await welcomed(ws)
            assert welcome["data"]["limits"]["maxChannels"] == 50
            names = [f"topic:t{i}" for i in range(60)]
            await send_json(ws, {"type": "subscribe", "data": names})
            error = await recv_json(ws)
            assert error["type"] == "error"
            assert error["data"]["code"] == "too_many_channels"
            assert "50" in error["data"]["message"]
            (session,) = server.sessions
            assert session.client.channels == {"topics"}  # nothing of it was applied
            # up to the limit is fine
            await send_json(ws, {"type": "subscribe", "data": names[:49]})
            reply = await recv_json(ws)
            assert reply["type"] == "subscribed"
            assert reply["data"]["count"] == 50
            await send_json(ws, {"type": "subscribe", "data": "topic:one-more"})
            assert (await recv_json(ws))["data"]["code"] == "too_many_channels"


async def test_views_over_a_real_socket_unknown_ones_and_the_limit(
    make_server: ServerFactory,
) -> None:
    """Issue 21: views of groups the cluster does not have are refused, and a
    connection holds at most ``--max-views``; /metrics shows the views and the bound."""
    async with make_server(max_views=2, max_distinct_views=5) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=topics") as ws:
            await welcomed(ws)
            await send_json(ws, {"type": "subscribe", "data": "metrics:group:ghost"})
            error = await recv_json(ws)
            assert error["data"]["code"] == "unknown_view"
            for channel in ("metrics:lean", "metrics:topic:orders"):
                await send_json(ws, {"type": "subscribe", "data": channel})
                assert (await recv_json(ws))["type"] == "subscribed"
                assert (await recv_json(ws))["type"] in ("metrics", "topic_detail")  # latest
            await send_json(ws, {"type": "subscribe", "data": "metrics:topic:more"})
            assert (await recv_json(ws))["data"]["code"] == "too_many_views"
            async with httpx.AsyncClient(base_url=server.url) as http:
                text = (await http.get("/metrics")).text
            assert "takhin_ws_views 2.0" in text
            assert "takhin_ws_max_distinct_views 5.0" in text
            assert "takhin_ws_max_views_per_connection 2.0" in text
        query = "channels=metrics:lean,metrics:group:a,metrics:group:b"
        with pytest.raises(Rejected) as info:
            async with raw_client(server.port, f"/api/monitoring/ws?{query}"):
                pass  # pragma: no cover
        assert info.value.status == 400


async def test_too_many_channels_at_connect_is_400(make_server: ServerFactory) -> None:
    async with make_server(max_channels=3) as server:
        with pytest.raises(Rejected) as info:
            async with raw_client(
                server.port, "/api/monitoring/ws?channels=topics,groups,topic:a,topic:b"
            ):
                pass  # pragma: no cover
        assert info.value.status == 400
        assert "at most 3 channels" in orjson.loads(info.value.body)["error"]["message"]


async def test_replies_are_proportional_to_the_request(make_server: ServerFactory) -> None:
    """With 200 channels subscribed, subscribing to one more answers with that one
    (and the count), not the whole subscription."""
    async with make_server(max_channels=300) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=") as ws:
            await welcomed(ws)
            await send_json(
                ws, {"type": "subscribe", "data": [f"topic:name-{i:04d}" for i in range(200)]}
            )
            assert (await recv_json(ws))["data"]["count"] == 200
            await send_json(ws, {"type": "subscribe", "data": "topic:one-more"})
            with trio.fail_after(10):
                raw = await ws.get_message()
            assert len(raw) < 200
            assert orjson.loads(raw)["data"]["channels"] == ["topic:one-more"]


async def test_a_channel_flood_keeps_memory_bounded_and_others_served(
    make_server: ServerFactory,
) -> None:
    """Flooders each ask for thousands of distinct channels, message after message:
    each holds at most ``max_channels``, the replies stay small, the abuse limit closes
    them, and an innocent client's pings are all answered meanwhile."""
    flooders, messages, names_per_message, limit = 5, 15, 500, 64
    async with make_server(max_channels=limit) as server:
        await wait_ready(server)
        largest_reply = 0
        closes: list[int] = []

        async def flood(index: int, ws: WebSocketConnection) -> None:
            nonlocal largest_reply
            try:
                for m in range(messages):
                    base = (index * messages + m) * names_per_message
                    names = [f"topic:flood-{base + i}" for i in range(names_per_message)]
                    await send_json(ws, {"type": "subscribe", "data": names})
                    raw = await ws.get_message()
                    largest_reply = max(largest_reply, len(raw))
            except ConnectionClosed as exc:
                closes.append(exc.reason.code if exc.reason is not None else 0)

        async with AsyncExitStack() as stack:
            innocent = await stack.enter_async_context(ws_connect(server.ws_url + "?channels="))
            await welcomed(innocent)
            clients = [
                await stack.enter_async_context(ws_connect(server.ws_url + "?channels="))
                for _ in range(flooders)
            ]
            for ws in clients:
                await welcomed(ws)
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for i, ws in enumerate(clients):
                        nursery.start_soon(flood, i, ws)
                    for _ in range(20):  # the innocent client is answered all along
                        assert await pong_after(innocent) == []
                    subscribed = sum(server.hub.statistics().subscribers.values())
                    assert subscribed <= (flooders + 1) * limit
        assert largest_reply < 1024
        assert closes == [1008] * flooders  # too many refused requests: abuse
        assert sum(server.hub.statistics().subscribers.values()) == 0


# --- command rate ---


async def test_a_fast_sender_is_throttled_and_others_are_not(
    mock_clock: trio.testing.MockClock, make_server: ServerFactory
) -> None:
    """Virtual time (the autojump clock) on real sockets: 40 pings at once, with a
    burst of 10 and 10 per second, take at least 3 s to be answered; a second client's
    ping is answered while the first is still waiting."""
    mock_clock.autojump_threshold = 0.005
    async with make_server(command_rate=10.0, command_burst=10) as server:
        await wait_ready(server)
        url = server.ws_url + "?channels="
        async with ws_connect(url) as fast, ws_connect(url) as calm:
            await welcomed(fast)
            await welcomed(calm)
            start = trio.current_time()
            for _ in range(40):
                await send_json(fast, {"type": "ping"})
            for _ in range(11):  # the burst, then the first throttled one
                assert (await recv_json(fast, timeout=60))["type"] == "pong"
            assert await pong_after(calm) == []  # not behind the fast sender's queue
            for _ in range(29):
                assert (await recv_json(fast, timeout=60))["type"] == "pong"
            assert trio.current_time() - start >= 3.0 - 1e-6  # 30 at 10 per second


# --- frames the protocol does not have ---


async def test_a_binary_frame_is_closed_with_1003(server: Server) -> None:
    async with ws_connect(server.ws_url + "?channels=") as ws:
        await welcomed(ws)
        await ws.send_message(b'{"type":"ping"}')
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason is not None
        assert info.value.reason.code == 1003
    with trio.fail_after(5):
        await wait_until(lambda: len(server.hub) == 0)


# --- HTTP ---


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/", "/nowhere"])
async def test_head_sends_no_body(server: Server, path: str) -> None:
    get = await http_exchange(
        server.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    )
    head = await http_exchange(
        server.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    )
    get_status, get_headers, get_body = split_response(get)
    head_status, head_headers, head_body = split_response(head)
    assert head_status == get_status
    assert head_body == b""
    assert get_body
    assert head_headers["content-type"] == get_headers["content-type"]


async def test_a_body_that_never_arrives_is_answered_408(make_server: ServerFactory) -> None:
    async with make_server(publish_keys=("k",), body_timeout=0.5) as server:
        stream = await open_raw_stream(server.port)
        async with stream:
            await stream.send_all(
                b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":'
            )
            with trio.fail_after(10):
                response = await read_to_eof(stream)
        status, headers, body = split_response(response)
        assert status == b"HTTP/1.1 408 Request Timeout"
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body)["error"]["code"] == "request_timeout"
        assert server.rejected == {408: 1}


async def test_responses_carry_a_reason_phrase(server: Server) -> None:
    response = await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    response = await http_exchange(server.port, b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404 Not Found\r\n")


async def test_a_head_too_large_is_counted(server: Server) -> None:
    big = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"y" * MAX_HEAD_BYTES + b"\r\n\r\n"
    assert status_of(await http_exchange(server.port, big)) == 431
    assert server.rejected == {431: 1}


# --- handshakes ---


@pytest.mark.parametrize(
    "request_bytes",
    [
        UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"abc"),  # not 16 bytes of base64
        UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"!!!!!!!!!!!!!!!!!!!!!!=="),
        UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"),
    ],
)
async def test_odd_upgrades_are_refused_with_400(server: Server, request_bytes: bytes) -> None:
    response = await http_exchange(server.port, request_bytes)
    status, _, body = split_response(response)
    assert status.split()[1] == b"400", response
    assert orjson.loads(body)["error"]["code"] == "bad_request"
    assert len(server.hub) == 0


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["chat", "bearer.k"], "bearer.k"),  # never a protocol this server does not speak
        (["chat"], None),
        (["chat", "takhin.v1"], "takhin.v1"),
    ],
)
async def test_the_subprotocol_is_one_this_server_speaks(
    server: Server, offered: list[str], chosen: str | None
) -> None:
    async with ws_connect(server.ws_url, subprotocols=offered) as ws:
        await welcomed(ws)
        assert ws.subprotocol == chosen
