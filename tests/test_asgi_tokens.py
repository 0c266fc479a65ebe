"""Signed tokens through the ASGI door (takhin_ws.asgi behind a real Hypercorn): a
token client is restricted to its claim (a subscribe outside it is forbidden, events
of other topics never arrive), and it is told before its token expires, then closed
with 4001, as on the standalone listener."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest
import trio
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from asgi_hosts import hypercorn_serving
from clients import in_asyncio, loads
from conftest import FakeSource, make_settings, wait_until
from takhin_ws import TopicCreated
from takhin_ws.asgi import create_app
from tokens import SECRET, mint

pytestmark = pytest.mark.slow


async def test_a_token_client_through_asgi_is_filtered_then_expires() -> None:
    settings = make_settings(
        token_secret=SECRET, token_expiry_notice=2.0, ping_interval=1.0, ping_timeout=2.0
    )
    app = create_app(settings, source=FakeSource())
    async with hypercorn_serving(app) as host:
        with trio.fail_after(10):
            await wait_until(lambda: app.is_running and app.hub.latest("metrics") is not None)
        url = host.url.replace("http://", "ws://", 1) + "/api/monitoring/ws"
        url += f"?channels=topics&token={mint(['topic:orders.*'], ttl=4)}"
        welcomed = trio.Event()
        published = trio.Event()

        async def session() -> tuple[list[dict[str, Any]], Close | None]:
            got = []
            async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
                got.append(loads(await ws.recv()))
                await ws.send(orjson.dumps({"type": "subscribe", "data": "groups"}).decode())
                got.append(loads(await ws.recv()))
                trio.from_thread.run_sync(welcomed.set)
                trio.from_thread.run(published.wait)
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(20):
                        while True:
                            got.append(loads(await ws.recv()))
            return got, ws.protocol.close_rcvd

        result: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                result.append(await in_asyncio(session))

            nursery.start_soon(client)
            await welcomed.wait()
            await app.ingress.publish(TopicCreated(name="payments", partitions=1))
            shown = await app.ingress.publish(TopicCreated(name="orders.eu", partitions=1))
            published.set()
    got, close = result[0]
    assert got[0]["type"] == "welcome"
    assert got[1]["data"]["code"] == "forbidden"
    events = [m for m in got[2:] if m["type"] == "topic_created"]
    assert [(m["data"]["name"], m["offset"]) for m in events] == [("orders.eu", shown.offset)]
    assert [m["type"] for m in got[2:] if m["type"] != "topic_created"] == ["token_expiring"]
    assert close is not None
    assert (close.code, close.reason) == (4001, "token expired")
