"""The server over real sockets: connection limit, API keys, Origin, heartbeat, slow
clients, misbehaving peers and graceful shutdown (in-process; the process-level
shutdown is in ``test_cli.py``)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import orjson
import pytest
import trio
import trio.testing
import websockets.asyncio.client
from trio_websocket import (
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

import takhin_ws
from clients import (
    Rejected,
    http_exchange,
    in_asyncio,
    loads,
    open_raw_stream,
    raw_client,
    recv_json,
    send_json,
    status_of,
    until_closed,
    websockets_close_code,
    ws_connect,
)
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
    ConsumerLag,
    Hub,
    HubFullError,
    MonitoringMetrics,
    Server,
    TopicCreated,
    TopicStats,
    open_server,
)
from takhin_ws.core.session import Close
from takhin_ws.lowlevel import Client, Subscriber
from takhin_ws.net.session import Session

pytestmark = pytest.mark.slow


async def welcomed(ws: WebSocketConnection) -> dict[str, Any]:
    msg = await recv_json(ws)
    assert msg["type"] == "welcome", msg
    return msg


async def ping_pong(ws: WebSocketConnection) -> None:
    """The connection is alive and served: a JSON ping is answered."""
    await send_json(ws, {"type": "ping"})
    while (await recv_json(ws))["type"] != "pong":
        pass


async def websockets_status(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """Try to connect with the ``websockets`` client; the refusal's status, headers, body."""

    async def attempt() -> tuple[int, dict[str, str], bytes]:
        try:
            async with websockets.asyncio.client.connect(url, open_timeout=10, **kwargs):
                pass
        except InvalidStatus as exc:
            response = exc.response
            headers = {k.lower(): v for k, v in response.headers.raw_items()}
            return response.status_code, headers, bytes(response.body or b"")
        raise AssertionError("the handshake was accepted")

    return await in_asyncio(attempt)


async def websockets_welcome(url: str, **kwargs: Any) -> tuple[dict[str, Any], str | None]:
    """Connect with the ``websockets`` client; its welcome and the chosen subprotocol."""

    async def attempt() -> tuple[dict[str, Any], str | None]:
        async with websockets.asyncio.client.connect(url, open_timeout=10, **kwargs) as ws:
            return loads(await ws.recv()), ws.subprotocol

    return await in_asyncio(attempt)


def error_body(body: bytes) -> dict[str, Any]:
    parsed = orjson.loads(body)
    assert set(parsed) == {"error"}
    error: dict[str, Any] = parsed["error"]
    assert set(error) - {"reason"} == {"status", "code", "message"}  # reason: a 401's or 403's
    return error


# --- connection limit ---


async def test_the_connection_limit_answers_503_with_retry_after(
    make_server: ServerFactory,
) -> None:
    async with make_server(max_clients=2, retry_after=7) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url) as first, ws_connect(server.ws_url) as second:
            await welcomed(first)
            await welcomed(second)

            with pytest.raises(Rejected) as info:
                async with raw_client(server.port):
                    pass  # pragma: no cover
            assert info.value.status == 503
            assert info.value.headers["retry-after"] == "7"
            assert info.value.headers["content-type"] == "application/json"
            error = error_body(info.value.body)
            assert error["status"] == 503
            assert error["code"] == "unavailable"
            assert "limit" in error["message"]

            status, headers, body = await websockets_status(server.ws_url)
            assert status == 503
            assert headers["retry-after"] == "7"
            assert error_body(body)["code"] == "unavailable"

            assert len(server.hub) == 2
            await ping_pong(first)  # the refusals disturbed nobody
            await first.aclose()
            with trio.fail_after(5):
                await wait_until(lambda: len(server.hub) == 1)
            async with ws_connect(server.ws_url) as third:  # room again
                await welcomed(third)
                await ping_pong(second)
        assert server.rejected == {503: 2}


async def test_a_hub_full_after_the_handshake_closes_with_1013(fake_source: FakeSource) -> None:
    """The limit is checked at the upgrade (503); if the hub is full all the same when
    the client is registered (another registrant raced it), the client is told 1013."""

    class RacedHub(Hub):
        def add_client(
            self, subscriber: Subscriber, channels: Iterable[str] | None = None, **kw: Any
        ) -> Client:
            raise HubFullError("hub is full")

    hub = RacedHub(max_clients=10)
    async with open_server(make_settings(), source=fake_source, hub=hub) as server:
        async with ws_connect(server.ws_url) as ws:
            reason = await until_closed(ws)
        assert reason is not None
        assert (reason.code, reason.reason) == (1013, "connection limit reached")
        assert not server.sessions


# --- API keys ---


async def test_api_key_is_required_in_one_of_three_forms(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with make_server(api_keys=("s3cret", "second-key")) as server:
        await wait_ready(server)
        url = server.ws_url

        # refused: no key, a wrong key (in each form)
        attempts: list[dict[str, Any]] = [
            {},
            {"headers": [(b"Authorization", b"Bearer wrong-key-1")]},
            {"target": "/api/monitoring/ws?token=wrong-key-2"},
            {"subprotocols": ["takhin.v1", "bearer.wrong-key-3"]},
            {"headers": [(b"Authorization", b"Basic czNjcmV0")]},
        ]
        for attempt in attempts:
            with pytest.raises(Rejected) as info:
                async with raw_client(server.port, **attempt):
                    pass  # pragma: no cover
            assert info.value.status == 401, attempt
            assert info.value.headers["www-authenticate"].startswith("Bearer")
            assert error_body(info.value.body)["code"] == "unauthorized"

        status, _, _ = await websockets_status(url)
        assert status == 401

        # accepted: Authorization header (Bearer, or the bare key as 2.9 allowed)
        async with ws_connect(url, extra_headers=[(b"Authorization", b"Bearer s3cret")]) as ws:
            await welcomed(ws)
        async with ws_connect(url, extra_headers=[(b"Authorization", b"second-key")]) as ws:
            await welcomed(ws)
        # ?token= (browsers cannot set headers)
        async with ws_connect(url + "?token=s3cret&channels=topics") as ws:
            assert (await welcomed(ws))["data"]["channels"] == ["topics"]
        # a Sec-WebSocket-Protocol entry; the server selects takhin.v1
        async with ws_connect(url, subprotocols=["takhin.v1", "bearer.second-key"]) as ws:
            await welcomed(ws)
            assert ws.subprotocol == "takhin.v1"
        welcome, subprotocol = await websockets_welcome(
            url, subprotocols=["takhin.v1", "bearer.s3cret"]
        )
        assert welcome["type"] == "welcome"
        assert subprotocol == "takhin.v1"
        welcome, _ = await websockets_welcome(
            url, additional_headers={"Authorization": "Bearer s3cret"}
        )
        assert welcome["type"] == "welcome"

        # health paths need no key
        for path in ("/healthz", "/readyz"):
            response = await http_exchange(
                server.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            assert status_of(response) == 200, path

    assert "refused upgrade without a valid API key" in caplog.text
    for secret in ("s3cret", "second-key", "wrong-key"):
        assert secret not in caplog.text  # keys are never logged


async def test_without_api_keys_no_key_is_needed(server: Server) -> None:
    async with ws_connect(server.ws_url, subprotocols=["takhin.v1"]) as ws:
        await welcomed(ws)
        assert ws.subprotocol == "takhin.v1"


# --- Origin ---


def origin(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"Origin", value.encode())]


async def test_origin_policy_by_default(server: Server) -> None:
    url = server.ws_url
    for bad in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        with pytest.raises(Rejected) as info:
            async with raw_client(server.port, headers=origin(bad)):
                pass  # pragma: no cover
        assert info.value.status == 403, bad
        assert error_body(info.value.body)["code"] == "forbidden"
    status, _, _ = await websockets_status(url, origin=Origin("http://evil.example"))
    assert status == 403

    allowed = [
        f"http://127.0.0.1:{server.port}",  # same host as the Host header
        "http://localhost:5173",  # a local development server
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
    ]
    for good in allowed:
        async with ws_connect(url, extra_headers=origin(good)) as ws:
            await welcomed(ws)
    async with ws_connect(url) as ws:  # no Origin: not a browser
        await welcomed(ws)
    welcome, _ = await websockets_welcome(url, origin=Origin("http://localhost:5173"))
    assert welcome["type"] == "welcome"


async def test_allowed_origin_list(make_server: ServerFactory) -> None:
    async with make_server(allowed_origins=("https://console.example",)) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url, extra_headers=origin("https://console.example")) as ws:
            await welcomed(ws)
        same_host = f"http://127.0.0.1:{server.port}"
        async with ws_connect(server.ws_url, extra_headers=origin(same_host)) as ws:
            await welcomed(ws)
        # with a list, localhost is no longer implied
        for bad in ("http://localhost:5173", "https://evil.example", "http://console.example"):
            with pytest.raises(Rejected) as info:
                async with raw_client(server.port, headers=origin(bad)):
                    pass  # pragma: no cover
            assert info.value.status == 403, bad

    async with make_server(allowed_origins=("*",)) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url, extra_headers=origin("https://any.example")) as ws:
            await welcomed(ws)


async def test_origin_is_checked_before_the_api_key(make_server: ServerFactory) -> None:
    async with make_server(api_keys=("k",)) as server:
        target = "/api/monitoring/ws?token=k"
        with pytest.raises(Rejected) as info:
            async with raw_client(server.port, target, headers=origin("http://evil.example")):
                pass  # pragma: no cover
        assert info.value.status == 403


# --- heartbeat ---


async def test_heartbeat_pings_and_drops_a_silent_client(
    mock_clock: trio.testing.MockClock, make_server: ServerFactory
) -> None:
    """With the default 54 s / 60 s: virtual time (the autojump clock) on real sockets.

    A client that never answers is pinged at 54 s and dropped once it has been silent
    for 60 s; a client that answers pings (trio-websocket does) stays."""
    mock_clock.autojump_threshold = 0.005  # jump only when everything waits on timers
    async with make_server() as server:
        await wait_ready(server)
        assert (server.settings.ping_interval, server.settings.ping_timeout) == (54.0, 60.0)
        async with (
            ws_connect(server.ws_url + "?channels=topics") as good,
            raw_client(server.port, "/api/monitoring/ws?channels=topics") as silent,
        ):
            start = trio.current_time()
            await welcomed(good)
            assert (await silent.message())["type"] == "welcome"
            assert len(server.hub) == 2

            with trio.fail_after(120):
                while silent.pings == 0:
                    assert await silent.next_event() is not None
            first_ping = trio.current_time() - start
            assert 54 <= first_ping <= 56.5  # due at 54 s; the heartbeat ticks every 2 s

            with trio.fail_after(120):
                close = await silent.wait_closed()
            dropped_after = trio.current_time() - start
            assert 60 < dropped_after <= 62.5
            assert close is None  # dropped, not closed politely: it is not listening
            assert silent.pings == 1
            with trio.fail_after(5):
                await wait_until(lambda: len(server.hub) == 1)

            await trio.sleep(130)  # two more ping intervals
            await ping_pong(good)
            assert len(server.hub) == 1


async def test_a_client_that_answers_pings_survives_short_settings(
    make_server: ServerFactory,
) -> None:
    """Real time with short settings, the ``websockets`` client (it answers pings)."""
    async with make_server(ping_interval=0.1, ping_timeout=1.0) as server:
        await wait_ready(server)
        url = server.ws_url + "?channels=topics"

        async def session() -> dict[str, Any]:
            # ping_interval=None: no pings of its own, so only its pongs keep it alive
            async with websockets.asyncio.client.connect(
                url, open_timeout=10, ping_interval=None
            ) as ws:
                await ws.recv()
                await asyncio.sleep(2.5)  # well past the ping timeout
                await ws.send('{"type":"ping"}')
                return loads(await asyncio.wait_for(ws.recv(), 10))

        pong = await in_asyncio(session)
        assert pong["type"] == "pong"
        assert len(server.hub) == 0


# --- slow clients ---


def big_metrics(n: int) -> MonitoringMetrics:
    """About 20 KB of JSON."""
    stats = tuple(
        TopicStats(
            name=f"topic-{i:04d}",
            partitions=12,
            total_messages=n * 1000 + i,
            total_bytes=n * 100_000 + i,
            produce_rate=1.25,
            fetch_rate=2.5,
        )
        for i in range(160)
    )
    return MonitoringMetrics(
        topic_stats=stats,
        consumer_lags=(ConsumerLag(group_id=f"g{n}", total_lag=n),),
        timestamp=n,
    )


async def test_a_stalled_client_is_dropped_while_twenty_others_get_everything(
    make_server: ServerFactory,
) -> None:
    """One client stops reading: it is closed at the write deadline and unregistered;
    twenty others receive every message in order; publish never waits."""
    readers = 20
    async with make_server(write_timeout=1.0) as server:
        await wait_ready(server)
        hub = server.hub
        received: list[list[int]] = [[] for _ in range(readers)]
        target = "/api/monitoring/ws?channels=metrics"

        def caught_up(offset: int) -> Callable[[], bool]:
            return lambda: all(r and r[-1] == offset for r in received)

        async def read(ws: WebSocketConnection, offsets: list[int]) -> None:
            while True:
                msg = await recv_json(ws)
                assert msg["type"] == "metrics"
                offsets.append(msg["offset"])

        async with AsyncExitStack() as stack:
            stalled = await stack.enter_async_context(raw_client(server.port, target, rcvbuf=4096))
            stalled_id = (await stalled.message())["data"]["clientId"]
            (stalled_session,) = server.sessions
            clients = [
                await stack.enter_async_context(ws_connect(server.ws_url + "?channels=metrics"))
                for _ in range(readers)
            ]
            for ws in clients:
                await welcomed(ws)
            assert len(hub) == readers + 1
            assert stalled_session.id == stalled_id

            async with trio.open_nursery() as nursery:
                for ws, offsets in zip(clients, received, strict=True):
                    nursery.start_soon(read, ws, offsets)
                published = 1  # the snapshot every client got on connect
                with trio.fail_after(40):
                    while stalled_session in server.sessions or published < 20:
                        with trio.testing.assert_no_checkpoints():  # publish never waits
                            for _ in range(8):
                                item = hub.publish("metrics", big_metrics(published))
                                published = item.offset or 0
                        await wait_until(caught_up(published))
                # the stalled client is gone, the others are still served
                assert len(hub) == readers
                assert hub.statistics().clients == readers
                reason = stalled_session.transport.abort_reason or ""
                assert reason.startswith("write timeout"), reason
                for _ in range(5):
                    published = hub.publish("metrics", sample_metrics(published)).offset or 0
                with trio.fail_after(10):
                    await wait_until(caught_up(published))
                nursery.cancel_scope.cancel()

    for offsets in received:
        assert offsets == list(range(1, published + 1))  # every message, in order, once


async def test_a_client_that_vanishes_without_a_word_is_unregistered(server: Server) -> None:
    """A peer that resets its connection is removed; publishing to it never fails."""
    async with ws_connect(server.ws_url) as ws:
        await welcomed(ws)
        stream = await open_raw_stream(server.port)
        sock = stream.socket
        await stream.send_all(
            b"GET /api/monitoring/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()  # RST
        for i in range(50):
            server.hub.publish_event(TopicCreated(name=f"t{i}", partitions=1))
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 1)
        await ping_pong(ws)


# --- misbehaving peers ---


UPGRADE = (
    b"GET /api/monitoring/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def test_broken_handshakes_never_reach_the_server(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_server(handshake_timeout=0.5, max_clients=4) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url) as bystander:
            await welcomed(bystander)

            # an upgrade without Sec-WebSocket-Key: refused by the WebSocket layer
            bad = b"GET /api/monitoring/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            bad += b"Connection: Upgrade\r\n\r\n"
            with trio.fail_after(10):
                assert status_of(await http_exchange(server.port, bad)) == 400
            # not HTTP at all (a TLS ClientHello)
            tls = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40) + b"\r\n\r\n"
            with trio.fail_after(10):
                assert status_of(await http_exchange(server.port, tls)) == 400
            # a WebSocket version this server does not speak
            old = UPGRADE.replace(b"Version: 13", b"Version: 8")
            with trio.fail_after(10):
                assert status_of(await http_exchange(server.port, old)) == 426

            # gone in the middle of the request head
            stream = await open_raw_stream(server.port)
            async with stream:
                await stream.send_all(UPGRADE[:40])
            # gone right after the upgrade request, before reading the answer
            for _ in range(3):
                stream = await open_raw_stream(server.port)
                async with stream:
                    await stream.send_all(UPGRADE)
            # a handshake that never finishes is dropped at the deadline
            stream = await open_raw_stream(server.port)
            async with stream:
                await stream.send_all(UPGRADE[:-2])
                with trio.fail_after(10):
                    assert await stream.receive_some(1024) == b""

            await ping_pong(bystander)
            # every handshake slot is given back: three newcomers fit (max_clients=4)
            # once the refused handshakes have timed out
            with trio.fail_after(10):
                while True:
                    try:
                        async with (
                            ws_connect(server.ws_url) as a,
                            ws_connect(server.ws_url) as b,
                            ws_connect(server.ws_url) as c,
                        ):
                            for ws in (a, b, c):
                                await welcomed(ws)
                            break
                    except ConnectionRejected as exc:
                        status = exc.status_code
                    assert status == 503
                    await trio.sleep(0.05)
            await ping_pong(bystander)
    assert "Traceback" not in caplog.text


async def test_one_connections_failure_never_reaches_the_server(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault inside one session (injected) closes that connection, is logged with
    its connection id, and every other client goes on being served."""
    original = Session._handle

    def handle(self: Session, raw: str) -> Close | None:
        if raw == "boom":
            raise RuntimeError("injected fault")
        return original(self, raw)

    monkeypatch.setattr(Session, "_handle", handle)
    url = server.ws_url + "?channels=topics"
    async with ws_connect(url) as victim, ws_connect(url) as bystander:
        await welcomed(victim)
        await welcomed(bystander)
        await victim.send_message("boom")
        reason = await until_closed(victim)
        assert reason is not None
        assert reason.code == 1006  # dropped
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 1)
        server.hub.publish_event(TopicCreated(name="t", partitions=1))
        assert (await recv_json(bystander))["type"] == "topic_created"
        await ping_pong(bystander)
        async with ws_connect(url) as newcomer:
            await welcomed(newcomer)
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1
    assert re.match(r"conn-\d+ failed", failures[0].getMessage())
    assert "injected fault" in caplog.text


async def test_a_fault_while_a_session_starts_leaves_nothing_registered(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault after the client is registered but before its session runs (injected
    into ``Session.start``) closes that connection and unregisters it: it holds no
    place under ``--max-clients`` and no session for the shutdown to wait for."""

    def start(self: Session, *args: object, **kwargs: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Session, "start", start)
    port = server.port
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                b"GET " + WS_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Upgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            assert await stream.receive_some() == b""  # closed without an answer
        await wait_until(lambda: not server.sessions)
    assert len(server.hub) == 0
    assert server.statistics().hub.clients == 0
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1
    assert "injected fault" in caplog.text


async def test_refused_handshakes_hold_no_connection_slot(make_server: ServerFactory) -> None:
    """An upgrade the WebSocket layer would refuse is refused up front (JSON body), and
    never keeps a handshake slot until the handshake deadline."""
    async with make_server(max_clients=2, handshake_timeout=60) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url) as bystander:
            await welcomed(bystander)
            cases = [
                (UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""), 400),
                (UPGRADE.replace(b"Connection: Upgrade", b"Connection: keep-alive"), 400),
                (UPGRADE.replace(b"Version: 13", b"Version: 8"), 426),
                (UPGRADE.replace(b"Sec-WebSocket-Version: 13\r\n", b""), 400),
                (UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c"), 400),
            ]
            for request, status in cases:
                response = await http_exchange(server.port, request)
                assert status_of(response) == status, request
                head, _, body = response.partition(b"\r\n\r\n")
                assert error_body(body)["status"] == status
                if status == 426:
                    assert b"sec-websocket-version: 13" in head.lower()
            # the one free slot is free: a newcomer gets in at once
            async with ws_connect(server.ws_url) as newcomer:
                await welcomed(newcomer)
            await ping_pong(bystander)


# --- graceful shutdown (in process) ---


async def test_leaving_open_server_closes_every_client_with_1001(
    make_server: ServerFactory,
) -> None:
    """Both clients get 1001, and shutdown never sits out its (long) timeout when the
    clients answer: a few rounds, since the Close replies race the teardown."""
    codes: list[tuple[int, str | None]] = []

    async def websockets_client(url: str) -> None:
        codes.append(await websockets_close_code(url))

    for _ in range(5):
        # the clients' tasks live in a nursery that outlasts the server
        async with trio.open_nursery() as clients:
            with trio.fail_after(10):  # below shutdown_timeout (the shutdown is shielded)
                async with make_server(shutdown_timeout=15, write_timeout=15) as server:
                    await wait_ready(server)
                    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                    ws = await wrap_client_stream(
                        clients,
                        stream,
                        f"127.0.0.1:{server.port}",
                        "/api/monitoring/ws?channels=topics",
                    )
                    await welcomed(ws)
                    clients.start_soon(websockets_client, server.ws_url)
                    await wait_until(lambda: len(server.hub) == 2)
            async with stream:
                reason = await until_closed(ws)
            assert reason is not None
            assert (reason.code, reason.reason) == (1001, "server shutting down")
    assert codes == [(1001, "server shutting down")] * 5


async def test_shutdown_does_not_wait_past_its_timeout_for_a_deaf_client(
    make_server: ServerFactory,
) -> None:
    """A client that never answers the Close frame costs at most ``shutdown_timeout``
    (here far below the write deadline, which would otherwise bound the wait)."""
    async with AsyncExitStack() as stack:
        with trio.fail_after(20):
            async with make_server(shutdown_timeout=0.3, write_timeout=60) as server:
                await wait_ready(server)
                deaf = await stack.enter_async_context(raw_client(server.port))
                assert (await deaf.message())["type"] == "welcome"
        # it was sent the Close frame all the same, then the connection was dropped
        with trio.fail_after(10):
            close = await deaf.wait_closed()
        assert close is not None
        assert close.code == 1001
        assert server.hub.closed


async def test_shutdown_waits_for_the_clients_close_reply(make_server: ServerFactory) -> None:
    """RFC 6455: after sending Close the server keeps the connection until the peer's
    Close arrives. The reply's code (4321) reaching the server proves it was read."""
    from wsproto.events import CloseConnection

    async with AsyncExitStack() as stack:
        with trio.fail_after(20):
            async with make_server(shutdown_timeout=10) as server:
                await wait_ready(server)
                client = await stack.enter_async_context(raw_client(server.port))
                assert (await client.message())["type"] == "welcome"
                (session,) = server.sessions

                async def reply_late() -> None:
                    while not isinstance(await client.next_event(), CloseConnection):
                        pass
                    await trio.sleep(0.2)  # a slow but polite peer
                    reply = client.ws.send(CloseConnection(code=4321, reason="bye"))
                    await client.stream.send_all(reply)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reply_late)
                    await server.shutdown()
        closed = session.peer_closed
        assert closed is not None
        assert closed.code == 4321


# --- serve: Trio's serve_tcp convention ---


async def test_serve_runs_in_the_callers_nursery_until_cancelled(fake_source: FakeSource) -> None:
    async with trio.open_nursery() as clients:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(takhin_ws.serve, source=fake_source), make_settings()
            )
            assert isinstance(server, Server)
            await wait_ready(server)
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            ws = await wrap_client_stream(
                clients, stream, f"127.0.0.1:{server.port}", "/api/monitoring/ws?channels="
            )
            await welcomed(ws)
            nursery.cancel_scope.cancel()  # the server shuts down with its nursery
        async with stream:
            reason = await until_closed(ws)
    assert reason is not None
    assert (reason.code, reason.reason) == (1001, "server shutting down")
    assert server.hub.closed


# --- close reasons in the logs ---


async def test_every_session_end_is_one_info_line_with_fields(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="takhin_ws")
    async with make_server(bad_message_limit=0) as server:
        await wait_ready(server)
        async with ws_connect(server.ws_url + "?channels=") as leaving:
            await welcomed(leaving)
            leaving_id = server.hub.clients()[0].id
        async with ws_connect(server.ws_url + "?channels=") as abusive:
            await welcomed(abusive)
            await abusive.send_message("nope")
            await until_closed(abusive)
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 0)
        async with ws_connect(server.ws_url + "?channels=") as staying:
            await welcomed(staying)
            staying_id = server.hub.clients()[0].id
            await server.shutdown()
            await until_closed(staying)
    ends = [r for r in caplog.records if hasattr(r, "close_code")]
    assert {r.levelno for r in ends} == {logging.INFO}
    fields = [(r.closed_by, r.close_code, r.close_reason) for r in ends]  # type: ignore[attr-defined]
    assert fields == [
        ("client", 1000, ""),
        ("server", 1008, "too many invalid messages"),
        ("server", 1001, "server shutting down"),
    ]
    assert ends[0].client_id == leaving_id  # type: ignore[attr-defined]
    assert ends[2].client_id == staying_id  # type: ignore[attr-defined]
    for record in ends:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", record.remote)  # type: ignore[attr-defined]
        assert record.client_id in record.getMessage()  # type: ignore[attr-defined]
