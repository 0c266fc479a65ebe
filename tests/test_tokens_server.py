"""Signed tokens over real sockets: the handshake's 401s, the three places a token
travels, forbidden subscribes and filtered events with the ``websockets`` client,
refresh in place, the expiry notice and the 4001 close, publishing with a token,
the filtered REST snapshot and the ``/metrics`` counters."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson
import pytest
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from clients import Rejected, in_asyncio, loads, raw_client
from conftest import ServerFactory, wait_ready
from takhin_ws import ClusterHealth, MonitoringMetrics, TopicStats
from tokens import SECRET, mint

pytestmark = pytest.mark.slow

CLAIM = ["metrics", "topic:orders.*", "group:billing-*"]
PUBLISH_KEY = "publish-key-1"


def metrics() -> MonitoringMetrics:
    stats = tuple(
        TopicStats(
            name=n, partitions=1, total_messages=1, total_bytes=1, produce_rate=0, fetch_rate=0
        )
        for n in ("orders.eu", "payments")
    )
    return MonitoringMetrics(topic_stats=stats, cluster_health=ClusterHealth(total_topics=2))


async def refusal_of(port: int, **attempt: Any) -> dict[str, Any]:
    with pytest.raises(Rejected) as info:
        async with raw_client(port, **attempt):
            pass  # pragma: no cover
    assert info.value.status in (401, 403)
    error: dict[str, Any] = orjson.loads(info.value.body)["error"]
    return error


async def test_the_handshake_names_why_a_token_is_refused(make_server: ServerFactory) -> None:
    async with make_server(token_secret=SECRET, api_keys=("api-key-1",)) as server:
        await wait_ready(server)
        cases = {
            "expired": mint(CLAIM, ttl=-60),
            "signature": mint(CLAIM, key="x" * 40),
            "algorithm": mint(CLAIM, key="", algorithm="none"),
            "claims": mint(None),
        }
        for reason, token in cases.items():
            error = await refusal_of(server.port, target=f"/api/monitoring/ws?token={token}")
            assert (error["status"], error["reason"]) == (401, reason)
        error = await refusal_of(server.port)
        assert (error["reason"], error["message"]) == (
            "missing",
            "missing or wrong API key or token",
        )
        # a channel outside the claim, asked for at connect: 403
        token = mint(CLAIM)
        error = await refusal_of(
            server.port, target=f"/api/monitoring/ws?token={token}&channels=topic:payments"
        )
        assert (error["status"], error["reason"]) == (403, "forbidden")
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{server.url}/metrics")).text
        for reason in ("expired", "signature", "algorithm", "claims", "missing", "forbidden"):
            assert f'takhin_ws_auth_refusals_total{{reason="{reason}"}} 1.0' in text


async def test_a_token_travels_where_an_api_key_does(make_server: ServerFactory) -> None:
    async with make_server(token_secret=SECRET, api_keys=("api-key-1",)) as server:
        await wait_ready(server)
        url = server.ws_url
        token = mint(["topic:orders.*"])

        async def welcome(**kwargs: Any) -> tuple[list[str], str | None]:
            async with websockets.asyncio.client.connect(open_timeout=10, **kwargs) as ws:
                msg = loads(await ws.recv())
                assert msg["type"] == "welcome"
                return msg["data"]["channels"], ws.subprotocol

        forms: list[dict[str, Any]] = [
            {"uri": url, "additional_headers": {"Authorization": f"Bearer {token}"}},
            {"uri": f"{url}?token={token}"},
            {"uri": url, "subprotocols": ["takhin.v1", f"bearer.{token}"]},
        ]
        for form in forms:
            channels, _ = await in_asyncio(lambda form=form: welcome(**form))  # type: ignore[misc]
            assert channels == ["topics"]  # the default, narrowed to the claim
        channels, _ = await in_asyncio(lambda: welcome(uri=f"{url}?token=api-key-1"))
        assert channels == ["groups", "metrics", "topics"]  # a key: every channel
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{server.url}/metrics")).text
        assert 'takhin_ws_admitted_total{auth="token"} 3.0' in text
        assert 'takhin_ws_admitted_total{auth="api_key"} 1.0' in text
        assert 'takhin_ws_clients_by_auth{auth="token"} 0.0' in text


async def test_forbidden_subscribe_filtered_events_and_refresh(make_server: ServerFactory) -> None:
    """One ``websockets`` client: a subscribe outside its claim is refused and changes
    nothing; events of other topics never arrive; a refresh narrows it at once."""
    async with make_server(token_secret=SECRET, publish_keys=(PUBLISH_KEY,)) as server:
        await wait_ready(server)
        url = f"{server.ws_url}?token={mint(CLAIM)}&channels=topics"
        events_url = f"{server.url}/api/events"

        async def publish(*names: str) -> None:
            body = [{"type": "topic_created", "data": {"name": n, "partitions": 1}} for n in names]
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    events_url, json=body, headers={"Authorization": f"Bearer {PUBLISH_KEY}"}
                )
            assert response.status_code == 202

        async def until_pong(ws: Any) -> list[dict[str, Any]]:
            await ws.send(orjson.dumps({"type": "ping"}).decode())
            seen = []
            while (msg := loads(await ws.recv()))["type"] != "pong":
                seen.append(msg)
            return seen

        async def session() -> dict[str, Any]:
            async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
                assert loads(await ws.recv())["type"] == "welcome"
                await ws.send(
                    orjson.dumps({"type": "subscribe", "data": "topic:payments"}).decode()
                )
                forbidden = loads(await ws.recv())
                await publish("orders.eu", "payments", "orders.us")
                live = [m["data"]["name"] for m in await until_pong(ws)]
                refresh = {"type": "refresh", "data": {"token": mint(["topic:orders.us"])}}
                await ws.send(orjson.dumps(refresh).decode())
                refreshed = loads(await ws.recv())
                await publish("orders.eu", "orders.us")
                after = [m["data"]["name"] for m in await until_pong(ws)]
                return {
                    "forbidden": forbidden,
                    "live": live,
                    "refreshed": refreshed,
                    "after": after,
                }

        got = await in_asyncio(session)
        assert got["forbidden"]["type"] == "error"
        assert got["forbidden"]["data"]["code"] == "forbidden"
        assert got["live"] == ["orders.eu", "orders.us"]
        assert got["refreshed"]["type"] == "refreshed"
        assert got["refreshed"]["data"]["unsubscribed"] == []  # topics: still some topic
        assert got["after"] == ["orders.us"]


async def test_an_expiring_token_is_told_then_closed_4001(make_server: ServerFactory) -> None:
    async with make_server(
        token_secret=SECRET,
        token_expiry_notice=1.0,
        ping_interval=1.0,  # the heartbeat sweeps every 50 ms
        ping_timeout=2.0,
    ) as server:
        await wait_ready(server)
        url = f"{server.ws_url}?token={mint(CLAIM, ttl=2)}"

        async def session() -> tuple[list[str], Close | None]:
            types = []
            async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(20):
                        while True:
                            types.append(loads(await ws.recv())["type"])
            return types, ws.protocol.close_rcvd

        types, close = await in_asyncio(session)
        assert close is not None
        code, reason = close.code, close.reason
        assert types[0] == "welcome"
        assert types.count("token_expiring") == 1
        assert (code, reason) == (4001, "token expired")


async def test_publishing_and_the_rest_snapshot_with_a_token(make_server: ServerFactory) -> None:
    from conftest import FakeSource

    async with make_server(FakeSource(metrics()), token_secret=SECRET) as server:
        await wait_ready(server)
        events = f"{server.url}/api/events"
        body = [{"type": "topic_created", "data": {"name": "orders.eu", "partitions": 1}}]
        outside = [{"type": "topic_created", "data": {"name": "payments", "partitions": 1}}]
        async with httpx.AsyncClient() as http:

            async def post(token: str, payload: object) -> httpx.Response:
                return await http.post(
                    events, json=payload, headers={"Authorization": f"Bearer {token}"}
                )

            assert (await post(mint(CLAIM, publish=True), body)).status_code == 202
            refused = await post(mint(CLAIM, publish=True), body + outside)
            assert refused.status_code == 403
            assert "topic:payments" in refused.json()["error"]["message"]
            assert (await post(mint(CLAIM), body)).status_code == 403  # no publish claim
            assert (await post(mint(CLAIM, ttl=-9, publish=True), body)).status_code == 401
            assert server.hub.offset("topics") == 1  # only the first publish

            snapshot = await http.get(
                f"{server.url}/api/monitoring/metrics",
                headers={"Authorization": f"Bearer {mint(CLAIM)}"},
            )
            assert [t["name"] for t in snapshot.json()["topicStats"]] == ["orders.eu"]
            topics_only = await http.get(
                f"{server.url}/api/monitoring/metrics?token={mint(['topics'])}"
            )
            assert topics_only.status_code == 403
