"""docs/http-api.md against real servers: the curl and Python examples print what the
page shows, a client receives the event it shows, and every error body of the page is
what the server answers to the request that causes it.

Which block each test runs is listed in ``tests/test_docs.py`` (``EXAMPLES``).
"""

from __future__ import annotations

import ast
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from conftest import ServerFactory, wait_until
from docs_examples import (
    START_GUARD,
    block,
    block_after,
    clean_env,
    commands,
    require_run_layer,
    serving,
)
from redis_server import RedisServer, free_port
from takhin_ws import Settings, open_server

pytestmark = pytest.mark.slow

PAGE = "docs/http-api.md"
KEY = "docs-example-key"
#: How the page writes the server's address and epoch.
DOC_URL = "http://127.0.0.1:8080"
DOC_EPOCH = "5f2c9a7e1b3d4c60"
#: The page's body deadline, and the shorter one this test waits out instead.
DOC_BODY_TIMEOUT = "10 s"
BODY_TIMEOUT = 0.5


def _json_lines(code: str) -> list[Any]:
    return [orjson.loads(line) for line in code.splitlines() if line.strip()]


def _as_documented(value: Any, epoch: str) -> Any:
    """*value* with this server's epoch written as the page writes it."""
    return orjson.loads(orjson.dumps(value).replace(epoch.encode(), DOC_EPOCH.encode()))


async def _shell(command: str, url: str) -> str:
    with trio.fail_after(30):
        done = await trio.run_process(
            ["bash", "-c", command.replace(DOC_URL, url)],
            env=clean_env(KEY=KEY),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@contextmanager
def documented_server(tmp_path: Path) -> Iterator[str]:
    """The page's server, `make run` with its flags and the key in `$KEY`, on a free
    port (its variable): what a reader starts. Yields its URL."""
    require_run_layer()
    (command,) = commands(block(PAGE, "sh", "make run"))
    port = free_port()
    env = clean_env(KEY=KEY, TAKHIN_WS_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    with serving(command, url + "/readyz", tmp_path / "server.log", env):
        with httpx.Client() as http:  # ready: the first snapshot is out
            deadline = time.monotonic() + START_GUARD
            while http.get(url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.05)
        yield url


async def test_the_curl_example_answers_and_a_client_receives_what_the_page_shows(
    tmp_path: Path,
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (command,) = commands(block(PAGE, "sh", "curl"))
    (answer,) = _json_lines(block_after(PAGE, "json", "answers `202 Accepted` with"))
    (received,) = _json_lines(block_after(PAGE, "json", "receives"))
    (second,) = _json_lines(block_after(PAGE, "json", "### The `202` answer"))
    python = block(PAGE, "python", "httpx.post")
    events = ast.literal_eval(python.split("events = ", 1)[1].split("\n]\n", 1)[0] + "]")
    with documented_server(tmp_path) as base:
        with trio.fail_after(30):
            ws_url = base.replace("http://", "ws://") + "/api/monitoring/ws"
            async with open_websocket_url(ws_url + "?channels=topic:payments") as ws:
                epoch = orjson.loads(await ws.get_message())["data"]["epoch"]  # welcome
                printed = await _shell(command, base)
                message = orjson.loads(await ws.get_message())
            async with httpx.AsyncClient() as http:
                headers = {"Authorization": f"Bearer {KEY}"}
                posted = await http.post(base + "/api/events", json=events, headers=headers)
    assert _as_documented(orjson.loads(printed), epoch) == answer
    message["timestamp"] = received["timestamp"]
    assert _as_documented(message, epoch) == received
    assert posted.status_code == 202
    assert _as_documented(posted.json(), epoch) == second


async def test_the_python_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    code = block(PAGE, "python", "httpx.post")
    expected = block_after(PAGE, "text", "prints")
    with documented_server(tmp_path) as base:
        script = tmp_path / "example.py"
        script.write_text(code.replace(DOC_URL, base))
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, "-W", "error", str(script)],
                env=clean_env(KEY=KEY),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == expected


async def test_the_readyz_of_a_source_that_never_worked_is_the_pages() -> None:
    """The page's `--source kafka` server with a broker that refuses connections: the
    same keys and values, but for the time, the count and the librdkafka wording."""
    pytest.importorskip("confluent_kafka")
    (documented,) = _json_lines(block_after(PAGE, "json", "### `GET /readyz`"))
    port = free_port()  # nothing listens there
    settings = Settings(port=0, interval=0.2, source="kafka", kafka_bootstrap=f"127.0.0.1:{port}")
    async with open_server(settings) as server, httpx.AsyncClient() as http:
        producer = server.producer
        assert producer is not None
        with trio.fail_after(30):
            await wait_until(lambda: producer.statistics().failures >= 1)
        answer = await http.get(server.url + "/readyz")
    assert answer.status_code == 503
    body = answer.json()
    shown, expected = body["metrics"], documented["metrics"]
    assert body.keys() == documented.keys()
    assert shown.keys() == expected.keys()
    assert body["reasons"] == documented["reasons"]
    for key in ("source", "collecting", "snapshot", "stale", "lastSuccess"):
        assert shown[key] == expected[key], key
    assert isinstance(shown["failingSince"], float)
    assert shown["failures"] >= 1
    assert expected["error"].startswith("kafka 127.0.0.1:9092: ")
    assert shown["error"].startswith(f"kafka 127.0.0.1:{port}: "), shown


def _request(
    body: bytes = b"",
    *,
    method: str = "POST",
    key: str | None = KEY,
    content_type: str | None = "application/json",
    length: int | None = None,
    headers: tuple[str, ...] = (),
) -> bytes:
    """One raw HTTP request to ``/api/events`` (*length*: the declared Content-Length;
    *headers*: more header lines)."""
    lines = [f"{method} /api/events HTTP/1.1", "Host: 127.0.0.1", *headers]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answer(url: str, request: bytes) -> tuple[int, Any]:
    """Send *request* to the server at *url*; its status and JSON body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(request)
        raw = b""
        while chunk := await stream.receive_some():
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def _events(*items: object) -> bytes:
    return orjson.dumps(list(items) if len(items) != 1 else items[0])


_TOPIC = {"type": "topic_created", "data": {"name": "ok", "partitions": 1}}
_BAD_NAME = {"type": "topic_created", "data": {"name": "a b", "partitions": 1}}
_BAD_COUNT = {"type": "topic_created", "data": {"name": "x", "partitions": "3"}}
#: The request that causes each error line of the page, in the page's order, and the
#: server it goes to ("open" has no publish key, "slow" a short body deadline).
CAUSES: list[tuple[str, bytes]] = [
    ("keyed", _request(method="GET", content_type=None)),
    ("open", _request(_events(_TOPIC))),
    ("keyed", _request(_events(_TOPIC), key="nope")),
    ("keyed", _request(_events(_TOPIC), content_type=None)),
    ("keyed", _request(length=1_800_002)),  # refused on the declared length alone
    ("slow", _request(b"{", length=50)),  # one byte of fifty, then nothing
    ("keyed", _request(_events(_TOPIC), headers=("Idempotency-Key: " + "k" * 256,))),
    ("keyed", _request(b"{")),
    ("keyed", _request(b"[" * 40 + b"]" * 40)),
    ("keyed", _request(b"[]")),
    ("keyed", _request(_events(*[_TOPIC] * 14_000))),  # over --max-batch-events
    ("keyed", _request(_events({"type": "ping"}))),
    ("keyed", _request(_events(_BAD_COUNT))),
    ("keyed", _request(_events(_TOPIC, _BAD_NAME))),
]


async def test_every_error_body_of_the_page_is_the_servers(make_server: ServerFactory) -> None:
    documented = _json_lines(block_after(PAGE, "json", "One answer of each"))
    *without_redis, unavailable = documented
    assert unavailable["error"]["status"] == 503  # the Redis case: next test
    assert len(without_redis) == len(CAUSES)
    async with (
        make_server(publish_keys=(KEY,)) as keyed,
        make_server() as open_server,
        make_server(publish_keys=(KEY,), body_timeout=BODY_TIMEOUT) as slow,
    ):
        servers = {"keyed": keyed, "open": open_server, "slow": slow}
        for (which, request), expected in zip(CAUSES, without_redis, strict=True):
            with trio.fail_after(30):
                status, body = await _answer(servers[which].url, request)
            if which == "slow":
                body["error"]["message"] = body["error"]["message"].replace(
                    f"{BODY_TIMEOUT:g} s", DOC_BODY_TIMEOUT
                )
            assert status == expected["error"]["status"]
            assert body == expected
        (not_found,) = _json_lines(block_after(PAGE, "json", "JSON body saying why"))
        request = b"GET /api/topics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        with trio.fail_after(30):
            assert await _answer(keyed.url, request) == (404, not_found)
        before = keyed.hub.offset("topics")
    assert before == 0  # no refused request published anything


async def test_the_503_body_is_the_servers_while_redis_is_down(
    make_server: ServerFactory, redis: RedisServer
) -> None:
    (expected,) = [
        e
        for e in _json_lines(block_after(PAGE, "json", "One answer of each"))
        if e["error"]["status"] == 503
    ]
    if not redis.ping():
        redis.start()
    async with make_server(publish_keys=(KEY,), redis_url=redis.url) as server:
        await trio.to_thread.run_sync(redis.stop)
        try:
            async with httpx.AsyncClient() as http:
                with trio.fail_after(30):
                    answer = await http.post(
                        server.url + "/api/events",
                        content=_events(_TOPIC),
                        headers={
                            "Authorization": f"Bearer {KEY}",
                            "Content-Type": "application/json",
                        },
                    )
        finally:
            await trio.to_thread.run_sync(redis.start)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    where = redis.url.removeprefix("redis://")
    documented_where = "redis:6379/0"
    prefix = expected["error"]["message"].split(documented_where)[0]
    message = answer.json()["error"]["message"]
    assert message.startswith(prefix + where + ": "), message  # the rest is Redis' own words
    assert answer.json()["error"]["code"] == expected["error"]["code"]
