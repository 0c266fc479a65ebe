"""Hostile input over real sockets, round 2 (issue 22): every bad input gets its own
answer and never a traceback. Each test failed on the behaviour before it was fixed."""

from __future__ import annotations

import logging

import orjson
import pytest
import trio

import rawws
from clients import http_exchange, open_raw_stream
from conftest import wait_until
from takhin_ws import Server

pytestmark = pytest.mark.slow


def upgrade(target: str, host: str = "127.0.0.1") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()


def answer(response: bytes) -> tuple[int, dict[str, object]]:
    """The status and the JSON body of a whole HTTP response."""
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)


def no_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


# --- 1. ?since= ---


@pytest.mark.parametrize("offset", ["%C2%B2", "%D9%A3", "9" * 5000])
async def test_a_bad_since_offset_is_answered_400(
    server: Server, caplog: pytest.LogCaptureFixture, offset: str
) -> None:
    """A superscript two (``isdigit`` but not ``int``), an Arabic-Indic three (``int``
    reads 3) and 5,000 digits: 400 with a JSON body, no traceback."""
    response = await http_exchange(
        server.port, upgrade(f"/api/monitoring/ws?since=topics:{offset}")
    )
    status, body = answer(response)
    assert status == 400
    assert body["error"]["message"].startswith("since: an offset is 0 to")  # type: ignore[index]
    assert len(server.hub) == 0
    no_errors(caplog)


# --- 2. deep nesting ---


def post_events(body: bytes, key: str = "k") -> bytes:
    return (
        f"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.server_settings(publish_keys=("k",))
@pytest.mark.parametrize("depth", [255, 1000])
async def test_deep_nesting_in_posted_events_is_answered_400(
    server: Server, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    """orjson parsed it and could not encode it again: the connection dropped with a
    traceback. Now 400 naming the limit, and nothing published."""
    data = "[" * depth + "]" * depth
    body = f'[{{"type":"topic_created","data":{data}}}]'.encode()
    status, answered = answer(await http_exchange(server.port, post_events(body)))
    assert status == 400
    error = answered["error"]
    assert isinstance(error, dict)
    assert error["message"] == "too_large: JSON nests deeper than the limit of 32 levels"
    assert server.hub.offset("topics") == 0
    no_errors(caplog)


# --- 4. frames: what came before a violation, Close frames, the 101 first ---


async def test_a_valid_message_before_a_bad_frame_in_one_read_is_answered(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Autobahn 3.2's shape: a ping, then a frame with a reserved bit, in one write: the
    pong comes, then the Close frame (1002). The ping was lost before."""
    async with rawws.connect(server.port) as ws:
        assert (await ws.message())["type"] == "welcome"
        await ws.send(rawws.text(b'{"type":"ping"}') + rawws.text(b"x", rsv=0x20))
        frames = await ws.until_eof()
    assert [f.opcode for f in frames] == [rawws.TEXT, rawws.CLOSE]
    assert frames[0].json()["type"] == "pong"
    assert frames[1].close_code == 1002
    no_errors(caplog)


async def test_fragments_then_a_bad_continuation_in_one_read(server: Server) -> None:
    """Autobahn 5.15's shape: a message in two fragments, then a continuation with
    nothing to continue: the message is answered, then 1002."""
    ping = b'{"type":"ping"}'
    data = rawws.text(ping[:5], fin=False) + rawws.frame(rawws.CONTINUATION, ping[5:])
    data += rawws.frame(rawws.CONTINUATION, b"x", fin=False) + rawws.text(b"y")
    async with rawws.connect(server.port) as ws:
        assert (await ws.message())["type"] == "welcome"
        await ws.send(data)
        frames = await ws.until_eof()
    assert [f.opcode for f in frames] == [rawws.TEXT, rawws.CLOSE]
    assert frames[0].json()["type"] == "pong"
    assert frames[1].close_code == 1002


@pytest.mark.parametrize(
    "data",
    [
        rawws.close(1014),  # the filter took it, wsproto refused it: a bare EOF
        rawws.text(b'{"type":"ping"}', length_bytes=2),  # 15 written in two bytes
        rawws.text(b'{"type":"ping"}', length_bytes=8),
        rawws.text(b'{"type":"ping"}' + b" " * 200, length_bytes=8),
    ],
    ids=["close-1014", "length-16-bit", "length-64-bit", "length-64-bit-for-215"],
)
async def test_what_wsproto_refuses_gets_a_close_frame(
    server: Server, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    async with rawws.connect(server.port) as ws:
        assert (await ws.message())["type"] == "welcome"
        await ws.send(data)
        frames = await ws.until_eof()
    assert [f.close_code for f in frames] == [1002]
    no_errors(caplog)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (rawws.text(b"x", rsv=0x20), 1002),
        (rawws.frame(0x3), 1002),
        (rawws.text(b"\xff"), 1007),
        (rawws.close(1005), 1002),
    ],
    ids=["rsv2", "opcode-3", "utf-8", "close-1005"],
)
async def test_bad_frames_right_behind_the_upgrade_come_after_the_101(
    server: Server, caplog: pytest.LogCaptureFixture, data: bytes, code: int
) -> None:
    """The request and a bad frame in one write: the answer starts with the 101 (it
    was a raw Close frame, with no HTTP response at all), then the Close frame."""
    async with rawws.connect(server.port, first=data) as ws:  # asserts the 101
        frames = await ws.until_eof()
    assert frames[0].json()["type"] == "welcome"
    assert frames[-1].opcode == rawws.CLOSE
    assert frames[-1].close_code == code
    with trio.fail_after(10):
        await wait_until(lambda: len(server.hub) == 0)
    no_errors(caplog)


# --- 5. DNS rebinding ---


def rebinding_upgrade(port: int, name: str) -> bytes:
    """What a page on a rebinding domain sends: its own name in Host and Origin."""
    return upgrade("/api/monitoring/ws", host=f"{name}:{port}").replace(
        b"\r\n\r\n", f"\r\nOrigin: http://{name}:{port}\r\n\r\n".encode()
    )


async def test_a_loopback_server_refuses_a_rebinding_domain(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """On 127.0.0.1 with no flag, ``Host: evil.com`` with ``Origin: http://evil.com``
    passed the same-host Origin rule and was upgraded; every HTTP route answered too."""
    status, body = answer(
        await http_exchange(server.port, rebinding_upgrade(server.port, "evil.com"))
    )
    assert status == 403
    assert "DNS rebinding" in body["error"]["message"]  # type: ignore[index]
    assert len(server.hub) == 0
    metrics = f"GET /api/monitoring/metrics HTTP/1.1\r\nHost: evil.com:{server.port}\r\n\r\n"
    status, _ = answer(await http_exchange(server.port, metrics.encode()))
    assert status == 403
    # the names the server is meant to be reached by still work
    for host in ("127.0.0.1", "localhost", "[::1]"):
        ok = f"GET /api/monitoring/metrics HTTP/1.1\r\nHost: {host}:{server.port}\r\n\r\n"
        status, _ = answer(await http_exchange(server.port, ok.encode()))
        assert status == 200
    assert server.rejected == {403: 2}
    refused = [r.getMessage() for r in caplog.records if "refused Host" in r.getMessage()]
    assert len(refused) == 2
    no_errors(caplog)


@pytest.mark.server_settings(allowed_hosts=("evil.com",))
async def test_a_listed_name_is_served(server: Server) -> None:
    async with rawws.connect(server.port) as ws:
        assert (await ws.message())["type"] == "welcome"
    stream = await open_raw_stream(server.port)
    async with stream:
        await stream.send_all(rebinding_upgrade(server.port, "evil.com"))
        with trio.fail_after(10):
            response = await stream.receive_some()
    assert response.startswith(b"HTTP/1.1 101 ")
