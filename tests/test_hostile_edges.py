"""Hostile input over real sockets, round 2 (issue 22): every bad input gets its own
answer and never a traceback. Each test failed on the behaviour before it was fixed."""

from __future__ import annotations

import logging

import orjson
import pytest

from clients import http_exchange
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
