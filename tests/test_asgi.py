"""takhin-ws as an ASGI app, used whole, behind a real Hypercorn (its Trio worker, in
the test's nursery; its lifespan runs the app's services): every protocol feature as on
the standalone listener, with real clients (the ``websockets`` package, trio-websocket,
a hand-driven wsproto client for a reader that stalls, httpx).

The mounted cases (Starlette, Quart-Trio, Chromium) are in ``test_asgi_mounted.py``;
the sans-IO parts (scope, the authorize hook's values) in ``test_asgi_scope.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
import websockets.asyncio.client
from trio_websocket import WebSocketConnection
from websockets.typing import Subprotocol
from wsproto.events import CloseConnection

from asgi_hosts import Hosted, hypercorn_serving
from clients import (
    Rejected,
    http_exchange,
    in_asyncio,
    loads,
    raw_client,
    recv_json,
    send_json,
    status_of,
    until_closed,
    websockets_close_code,
    ws_connect,
)
from conftest import FakeSource, make_settings, wait_until
from takhin_ws import TopicCreated
from takhin_ws.asgi import TakhinApp, create_app

pytestmark = pytest.mark.slow

WS = "/api/monitoring/ws"


@asynccontextmanager
async def served(**settings: Any) -> AsyncIterator[tuple[TakhinApp, Hosted]]:
    """The app (test settings plus *settings*, a fake source) whole behind Hypercorn,
    once its first snapshot is out."""
    app = create_app(make_settings(**settings), source=FakeSource())
    async with hypercorn_serving(app) as host:
        with trio.fail_after(10):
            await wait_until(lambda: app.is_running and app.hub.latest("metrics") is not None)
        yield app, host


def ws_url(url: str, query: str = "") -> str:
    return url.replace("http://", "ws://", 1) + WS + (f"?{query}" if query else "")


async def welcomed(ws: WebSocketConnection) -> dict[str, Any]:
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def test_welcome_snapshot_events_and_pong_with_the_websockets_client() -> None:
    """The browser's handshake (offering ``takhin.v1``) is accepted with it; welcome,
    the latest snapshot, a published event with its offset, and a JSON ping's pong
    arrive through Hypercorn."""
    async with served() as (app, host):
        url = host.url
        published = trio.Event()
        ready = trio.Event()

        async def session() -> tuple[str | None, list[dict[str, Any]]]:
            async with websockets.asyncio.client.connect(
                ws_url(url, "channels=metrics,topics"), subprotocols=[Subprotocol("takhin.v1")]
            ) as ws:
                got = [loads(await ws.recv()), loads(await ws.recv())]
                trio.from_thread.run_sync(ready.set)
                trio.from_thread.run(published.wait)
                got.append(loads(await ws.recv()))
                await ws.send('{"type":"ping"}')
                got.append(loads(await ws.recv()))
                return ws.subprotocol, got

        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def client() -> None:
                result.append(await in_asyncio(session))

            nursery.start_soon(client)
            await ready.wait()
            event = await app.ingress.publish(TopicCreated(name="orders", partitions=3))
            published.set()
        subprotocol, (welcome, snapshot, topic, pong) = result[0]
    assert subprotocol == "takhin.v1"
    assert welcome["type"] == "welcome"
    assert welcome["data"]["channels"] == ["metrics", "topics"]
    assert welcome["data"]["source"] == "custom"  # the tests' source names no kind
    assert snapshot["type"] == "metrics"
    assert snapshot["data"]["clusterHealth"]["totalTopics"] == 1
    assert topic["type"] == "topic_created"
    assert (topic["offset"], topic["data"]) == (
        event.offset,
        {"name": "orders", "partitions": 3},
    )
    assert pong["type"] == "pong"


async def test_the_http_routes_answer_as_on_the_standalone_server() -> None:
    async with served(publish_keys=("pk",)) as (_app, host), httpx.AsyncClient() as http:
        url = host.url
        assert (await http.get(url + "/healthz")).json() == {"status": "ok"}
        ready = (await http.get(url + "/readyz")).json()
        assert (ready["status"], ready["reasons"]) == ("ready", [])
        assert (ready["metrics"]["source"], ready["metrics"]["snapshot"]) == ("custom", True)
        latest = await http.get(url + "/api/monitoring/metrics")
        assert latest.status_code == 200
        assert latest.json()["clusterHealth"]["totalTopics"] == 1
        page = await http.get(url + "/")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert b"/api/monitoring/ws" in page.content
        head = await http.head(url + "/healthz")
        assert (head.status_code, head.content) == (200, b"")
        missing = await http.get(url + "/nowhere")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        plain = await http.get(url + WS)
        assert plain.status_code == 426

        async with ws_connect(ws_url(url, "channels=topics")) as ws:
            await welcomed(ws)
            events = [{"type": "topic_created", "data": {"name": "billing", "partitions": 2}}]
            refused = await http.post(url + "/api/events", json=events)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            accepted = await http.post(
                url + "/api/events", json=events, headers={"Authorization": "Bearer pk"}
            )
            assert accepted.status_code == 202
            (published,) = accepted.json()["accepted"]
            received = await recv_json(ws)
            assert (received["type"], received["offset"]) == ("topic_created", published["offset"])
            prometheus = await http.get(url + "/metrics")
            assert "takhin_ws_clients 1.0" in prometheus.text
            assert 'takhin_ws_rejected_requests_total{status="401"} 1.0' in prometheus.text


async def test_resume_after_a_reconnect_replays_exactly_what_was_missed() -> None:
    async with served() as (app, host):
        url = host.url
        async with ws_connect(ws_url(url, "channels=topics")) as ws:
            welcome = await welcomed(ws)
            await app.ingress.publish(TopicCreated(name="a", partitions=1))
            seen = await recv_json(ws)
        for name in ("b", "c"):  # while disconnected
            await app.ingress.publish(TopicCreated(name=name, partitions=1))
        epoch = welcome["data"]["epoch"]
        query = f"channels=topics&since=topics:{seen['offset']}&epoch={epoch}"
        async with ws_connect(ws_url(url, query)) as ws:
            await welcomed(ws)
            subscribed = await recv_json(ws)
            assert subscribed["type"] == "subscribed"
            assert subscribed["data"]["recovered"] == {"topics": True}
            replay = [await recv_json(ws), await recv_json(ws)]
    assert [m["data"]["name"] for m in replay] == ["b", "c"]
    assert [m["offset"] for m in replay] == [seen["offset"] + 1, seen["offset"] + 2]


async def test_history_is_answered_from_the_chart_series() -> None:
    async with served() as (_app, host), ws_connect(ws_url(host.url, "channels=topics")) as ws:
        await welcomed(ws)
        await send_json(ws, {"type": "history"})
        history = await recv_json(ws)
    assert history["type"] == "history"
    assert len(history["data"]["points"]) == 1  # the one tick of the test settings


async def test_an_origin_not_allowed_is_refused_403_with_a_json_body() -> None:
    """The same admission as the standalone listener, answered through Hypercorn's
    HTTP-response extension: status, JSON body, counted."""
    async with served(allowed_origins=("https://console.example",)) as (app, host):
        port = host.port
        with pytest.raises(Rejected) as info:
            async with raw_client(port, headers=[(b"Origin", b"https://evil.example")]):
                pass
        async with raw_client(port, headers=[(b"Origin", b"https://console.example")]) as ok:
            assert (await ok.message())["type"] == "welcome"
        assert app.statistics().rejected == {403: 1}
    assert info.value.status == 403
    assert loads(info.value.body)["error"] == {
        "status": 403,
        "code": "forbidden",
        "message": "origin not allowed",
    }


async def test_api_keys_and_the_connection_limit_apply() -> None:
    async with served(api_keys=("key",), max_clients=1) as (_app, host):
        port = host.port
        with pytest.raises(Rejected) as no_key:
            async with raw_client(port):
                pass
        assert no_key.value.status == 401
        assert no_key.value.headers["www-authenticate"] == 'Bearer realm="takhin-ws"'
        async with raw_client(port, f"{WS}?token=key") as first:
            assert (await first.message())["type"] == "welcome"
            with pytest.raises(Rejected) as full:
                async with raw_client(port, f"{WS}?token=key"):
                    pass
    assert full.value.status == 503
    assert "retry-after" in full.value.headers
    assert loads(full.value.body)["error"]["message"] == "connection limit reached (1 clients)"


async def test_abuse_and_oversized_messages_close_the_connection() -> None:
    async with served(bad_message_limit=2, max_message_size=1024) as (_app, host):
        url = host.url
        async with ws_connect(ws_url(url)) as ws:
            await welcomed(ws)
            for _ in range(3):
                await ws.send_message("not json")
            reason = await until_closed(ws)
            assert reason is not None
            assert (reason.code, reason.reason) == (1008, "too many invalid messages")
        async with ws_connect(ws_url(url)) as ws:
            await welcomed(ws)
            await ws.send_message("x" * 2048)
            reason = await until_closed(ws)
    assert reason is not None
    assert (reason.code, reason.reason) == (1009, "message exceeds the limit of 1024 bytes")


async def test_a_reader_that_stalls_gets_a_gap_and_then_exact_offsets() -> None:
    """A client that stops reading while events pour in: its writer blocks in
    Hypercorn's send, its queue (queue_size) drops the oldest, nobody else waits;
    when it reads again it is told exactly what it lost (``gap``) and nothing is
    duplicated or reordered."""
    async with (
        served(queue_size=64) as (app, host),
        raw_client(host.port, f"{WS}?channels=topics", rcvbuf=4096) as slow,
    ):
        assert (await slow.message())["type"] == "welcome"
        total = 0
        with trio.fail_after(30):
            while app.hub.statistics().dropped < 500:
                for _ in range(50):
                    total += 1
                    app.ingress.publish_nowait(
                        TopicCreated(name=f"t{total}-{'x' * 200}", partitions=1)
                    )
                # the writer runs, and blocks on the full socket
                await trio.lowlevel.checkpoint()
        dropped = app.hub.statistics().dropped
        offsets: list[int] = []
        lost = 0
        while not offsets or offsets[-1] < total:
            msg = await slow.message()
            if msg["type"] == "gap":
                gap = msg["data"]
                assert gap["channel"] == "topics"
                assert gap["firstOffset"] == (offsets[-1] + 1 if offsets else 1)
                assert gap["count"] == gap["lastOffset"] - gap["firstOffset"] + 1
                lost += gap["count"]
                offsets.extend(range(gap["firstOffset"], gap["lastOffset"] + 1))
            else:
                assert msg["type"] == "topic_created"
                assert msg["data"]["name"].startswith(f"t{msg['offset']}-")
                offsets.append(msg["offset"])
    assert offsets == list(range(1, total + 1))  # every offset once: received or in a gap
    assert lost == dropped >= 500


async def test_stopping_hypercorn_closes_every_client_with_1001() -> None:
    """Hypercorn's graceful timeout cancels the open connections: each client gets
    Close 1001 first (the websockets client and trio-websocket alike)."""
    results: list[tuple[int, str | None]] = []
    reasons: list[Any] = []
    async with served() as (app, host):

        async def websockets_client() -> None:
            results.append(await websockets_close_code(ws_url(host.url)))

        async def trio_client() -> None:
            async with ws_connect(ws_url(host.url)) as ws:
                await welcomed(ws)
                reasons.append(await until_closed(ws))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(websockets_client)
            nursery.start_soon(trio_client)
            with trio.fail_after(10):
                await wait_until(lambda: app.sessions == 2)
            host.stop.set()
    assert results == [(1001, "server shutting down")]
    (reason,) = reasons
    assert (reason.code, reason.reason) == (1001, "server shutting down")


async def test_shutdown_closes_clients_with_1001_at_once_and_readyz_says_so() -> None:
    async with served() as (app, host), httpx.AsyncClient() as http:
        async with ws_connect(ws_url(host.url)) as ws:
            await welcomed(ws)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app.shutdown)
                reason = await until_closed(ws)
            assert reason is not None
            assert (reason.code, reason.reason) == (1001, "server shutting down")
        ready = await http.get(host.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["shutting down"]
        with pytest.raises(Rejected) as info:
            async with raw_client(host.port):
                pass
        assert info.value.status == 503


async def test_the_log_names_the_client_and_its_address_from_the_scope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.server")
    async with served() as (app, host):
        async with raw_client(host.port) as client:
            welcome = await client.message()
            local_port = client.stream.socket.getsockname()[1]
            await client.stream.send_all(client.ws.send(CloseConnection(code=1000)))
            await client.wait_closed()
        with trio.fail_after(10):
            await wait_until(lambda: app.sessions == 0 and len(app.hub) == 0)
    (line,) = [r.getMessage() for r in caplog.records if "closed by the client" in r.getMessage()]
    # the code is what the ASGI server reports (Hypercorn says 1006 even for a clean close)
    prefix = f"client {welcome['data']['clientId']} (127.0.0.1:{local_port}) closed by the client: "
    assert line.startswith(prefix), line


async def test_listed_hosts_are_checked_on_both_kinds_of_request() -> None:
    """Inside another server the listen address is not known: the Host check runs only
    with ``allowed_hosts``, then on HTTP and WebSocket alike (403, JSON body)."""
    async with served(allowed_hosts=("console.example",)) as (app, host):
        port = host.port
        close = "Connection: close\r\n\r\n"  # Hypercorn keeps a connection alive
        refused = f"GET /healthz HTTP/1.1\r\nHost: evil.example:{port}\r\n{close}".encode()
        allowed = f"GET /healthz HTTP/1.1\r\nHost: console.example:{port}\r\n{close}".encode()
        assert status_of(await http_exchange(port, refused)) == 403
        assert status_of(await http_exchange(port, allowed)) == 200
        upgrade = (
            f"GET {WS} HTTP/1.1\r\nHost: evil.example:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ).encode()
        response = await http_exchange(port, upgrade)
        assert status_of(response) == 403
        assert b"DNS rebinding" in response
        assert app.statistics().rejected == {403: 2}
