"""takhin-ws mounted beside a console's own routes, in process behind a real Hypercorn
(Trio worker): Starlette (``Mount``, the console's lifespan runs it) and Quart-Trio
(Hypercorn's Trio dispatcher forwards the lifespan). The console's login decides who
connects and to which channels (the ``authorize`` hook). The docs' consoles, run as
written by the ``hypercorn`` command and Chromium, are in ``test_docs_asgi.py``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from asgi_hosts import PREFIX, Sessions, hypercorn_serving, quart_console, starlette_console
from clients import Rejected, loads, raw_client, recv_json, send_json, ws_connect
from conftest import FakeSource, make_settings, wait_until
from takhin_ws import TopicCreated
from takhin_ws.asgi import create_app

pytestmark = pytest.mark.slow

WS = f"{PREFIX}/api/monitoring/ws"


async def login(url: str, user: str) -> bytes:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/login", params={"user": user})
        assert response.json() == {"user": user}
        return f"console_session={response.cookies['console_session']}".encode()


@pytest.mark.parametrize("console", [starlette_console, quart_console])
async def test_the_console_login_decides_who_connects_and_to_which_channels(
    console: Any,
) -> None:
    sessions = Sessions({"ana": ["topic:orders.*", "metrics"]})
    live = create_app(make_settings(), source=FakeSource(), authorize=sessions.authorize)
    async with hypercorn_serving(console(live, sessions)) as host:
        with trio.fail_after(10):
            await wait_until(lambda: live.is_running and live.hub.latest("metrics") is not None)
        async with httpx.AsyncClient() as http:
            assert (await http.get(host.url + "/")).text == "<h1>console</h1>"  # its own
            assert (await http.get(host.url + PREFIX + "/healthz")).json() == {"status": "ok"}
        with pytest.raises(Rejected) as anonymous:
            async with raw_client(host.port, WS):
                pass
        assert anonymous.value.status == 401
        assert loads(anonymous.value.body)["error"]["message"] == "log in to the console first"

        ana = await login(host.url, "ana")
        with pytest.raises(Rejected) as outside:
            async with raw_client(host.port, WS + "?channels=topics", headers=[(b"cookie", ana)]):
                pass
        assert outside.value.status == 403
        assert loads(outside.value.body)["error"]["message"] == (
            "channels not allowed on this connection: topics"
        )

        url = host.url.replace("http://", "ws://") + WS
        async with ws_connect(url, extra_headers=[(b"cookie", ana)]) as ws:
            welcome = await recv_json(ws)
            assert welcome["data"]["channels"] == ["metrics"]  # what her patterns allow
            assert (await recv_json(ws))["type"] == "metrics"
            await send_json(ws, {"type": "subscribe", "data": ["topics"]})
            forbidden = await recv_json(ws)
            assert forbidden["data"]["code"] == "forbidden"
            await send_json(ws, {"type": "subscribe", "data": ["topic:orders.eu"]})
            assert (await recv_json(ws))["type"] == "subscribed"
            for name in ("billing", "orders.eu"):
                await live.ingress.publish(TopicCreated(name=name, partitions=1))
            event = await recv_json(ws)  # billing never reaches her
            assert (event["type"], event["data"]["name"]) == ("topic_created", "orders.eu")

        bob = await login(host.url, "bob")  # no patterns: every channel
        async with ws_connect(url + "?channels=topics", extra_headers=[(b"cookie", bob)]) as ws:
            assert (await recv_json(ws))["data"]["channels"] == ["topics"]


async def test_a_mounted_app_that_was_not_started_says_so() -> None:
    """Starlette's Mount does not forward the lifespan: without ``running()`` every
    route but /healthz answers 503 telling what to do, and handshakes are refused."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    live = create_app(make_settings(), source=FakeSource())
    async with hypercorn_serving(Starlette(routes=[Mount(PREFIX, app=live)])) as host:
        async with httpx.AsyncClient() as http:
            assert (await http.get(host.url + PREFIX + "/healthz")).status_code == 200
            ready = await http.get(host.url + PREFIX + "/readyz")
        with pytest.raises(Rejected) as info:
            async with raw_client(host.port, WS):
                pass
    assert ready.status_code == 503
    assert "async with app.running()" in ready.json()["error"]["message"]
    assert info.value.status == 503
    with pytest.raises(RuntimeError, match="not running"):
        live.ingress  # noqa: B018
