"""Publishing is bounded (issue 21): the batch limit (413 naming it), Idempotency-Key
(a retried batch answered, not published twice), chunked bodies decoded whole over a
real socket, and a batch's fan-out sharing the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import trio

from clients import http_exchange, status_of
from conftest import FakeSource, ServerFactory
from takhin_ws import Hub, Server
from takhin_ws.ingest.idempotency import MAX_KEY_LENGTH, Done, IdempotencyKeys
from takhin_ws.ingest.ingress import EventIngress
from takhin_ws.lowlevel import QueueSubscriber
from takhin_ws.wire.http import HttpError
from takhin_ws.wire.messages import MonitoringMetrics

KEY = "publish-secret"


@pytest.fixture
async def publisher(make_server: ServerFactory) -> AsyncIterator[Server]:
    async with make_server(
        FakeSource(MonitoringMetrics(timestamp=1)),
        publish_keys=(KEY,),
        max_batch_events=5,
        idempotency_keys=2,
    ) as srv:
        yield srv


def events(n: int, prefix: str = "t") -> bytes:
    return orjson.dumps(
        [
            {"type": "topic_created", "data": {"name": f"{prefix}{i}", "partitions": 1}}
            for i in range(n)
        ]
    )


async def post(server: Server, body: bytes, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with httpx.AsyncClient() as client:
        return await client.post(f"{server.url}/api/events", content=body, headers=headers)


# --- the batch limit ---


async def test_a_batch_over_the_limit_is_413_naming_it_and_publishes_nothing(
    publisher: Server,
) -> None:
    response = await post(publisher, events(6))
    assert response.status_code == 413
    assert response.json()["error"] == {
        "status": 413,
        "code": "too_large",
        "message": "a batch of 6 events exceeds the limit of 5 (--max-batch-events): "
        "send it in smaller batches",
        "setting": "max_batch_events",
        "limit": 5,
        "events": 6,
    }
    assert publisher.hub.offset("topics") == 0
    assert (await post(publisher, events(5))).status_code == 202
    assert publisher.hub.offset("topics") == 5


# --- Idempotency-Key ---


async def test_a_retried_batch_is_answered_again_and_not_published_twice(
    publisher: Server,
) -> None:
    first = await post(publisher, events(3), key="batch-1")
    assert first.status_code == 202
    assert publisher.hub.offset("topics") == 3
    retry = await post(publisher, events(3), key="batch-1")
    assert (retry.status_code, retry.content) == (202, first.content)
    assert publisher.hub.offset("topics") == 3  # nothing published again
    other = await post(publisher, events(3, "u"), key="batch-1")
    assert other.status_code == 422
    assert "another body" in other.json()["error"]["message"]
    assert (await post(publisher, events(3), key="batch-2")).status_code == 202
    assert publisher.hub.offset("topics") == 6  # another key: published
    assert (await post(publisher, events(1), key="x" * (MAX_KEY_LENGTH + 1))).status_code == 400
    refused = await post(publisher, events(9), key="big")  # a refusal is not remembered
    assert refused.status_code == 413
    assert (await post(publisher, events(2, "v"), key="big")).status_code == 202


async def test_remembered_keys_are_bounded_in_count(publisher: Server) -> None:
    for n in range(3):  # --idempotency-keys 2: the first one is forgotten
        assert (await post(publisher, events(1, f"k{n}-"), key=f"key-{n}")).status_code == 202
    assert (await post(publisher, events(1, "k0-"), key="key-0")).status_code == 202
    assert publisher.hub.offset("topics") == 4
    assert (await post(publisher, events(1, "k2-"), key="key-2")).status_code == 202
    assert publisher.hub.offset("topics") == 4


def test_keys_expire_and_a_retry_meanwhile_is_told_to_wait() -> None:
    now = [0.0]
    keys = IdempotencyKeys(ttl=10, capacity=100, clock=lambda: now[0])
    assert keys.begin("p", "k", b"body") is None
    with pytest.raises(HttpError) as info:
        keys.begin("p", "k", b"body")  # the first is still being published
    assert info.value.status == 409
    assert ("Retry-After", "1") in info.value.headers
    assert keys.begin("other publisher", "k", b"body") is None  # scoped
    now[0] = 10.0
    keys.finish("p", "k", Done(202, b"answer"))
    now[0] = 9.9 + 10
    assert keys.begin("p", "k", b"body") == Done(202, b"answer")
    now[0] = 19.9  # an answer is kept for the TTL after it was given
    assert keys.begin("p", "k", b"body") == Done(202, b"answer")
    now[0] = 20.1
    assert keys.begin("p", "k", b"body") is None  # expired: a new first request
    keys.abandon("p", "k")
    assert len(keys) == 0  # (the other publisher's, in progress for over the TTL, too)
    assert IdempotencyKeys(ttl=10, capacity=0).begin("p", "k", b"") is None  # off


# --- chunked bodies over a real socket ---


def chunked_request(body: bytes, size: int = 1) -> bytes:
    head = (
        "POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunks = b"".join(
        b"%x\r\n" % len(body[i : i + size]) + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    )
    return head + chunks + b"0\r\n\r\n"


async def test_a_body_of_one_byte_chunks_is_published(publisher: Server) -> None:
    body = events(2) + b" " * 20_000
    response = await http_exchange(publisher.port, chunked_request(body))
    assert status_of(response) == 202
    assert publisher.hub.offset("topics") == 2


@pytest.mark.parametrize(
    ("tail", "status"),
    [(b"3\r\nabcd\r\n0\r\n\r\n", 400), (b"zz\r\n", 400), (b"%x\r\n" % 5000 + b"x" * 5000, 413)],
)
async def test_a_bad_or_big_chunked_body_is_refused(
    make_server: ServerFactory, tail: bytes, status: int
) -> None:
    async with make_server(publish_keys=(KEY,), max_body_size=4096) as server:
        request = chunked_request(b"[", 1)[: -len(b"0\r\n\r\n")] + tail
        response = await http_exchange(server.port, request)
        assert status_of(response) == status
        assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["status"] == status
        assert server.hub.offset("topics") == 0


# --- a batch's fan-out shares the event loop ---


async def test_a_batch_yields_between_its_events() -> None:
    hub = Hub()
    for _ in range(50):
        hub.add_client(QueueSubscriber(capacity=10_000))
    ingress = EventIngress(hub)
    seen: list[int] = []

    async def watcher() -> None:
        while True:
            seen.append(hub.offset("topics"))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher)
        published = await ingress.publish_body(events(100))
        nursery.cancel_scope.cancel()
    assert len(published) == 100
    # another task ran between the events: it saw the batch part done, many times
    assert len({offset for offset in seen if 0 < offset < 100}) >= 20
