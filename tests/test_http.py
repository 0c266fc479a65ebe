"""Plain HTTP on the WebSocket port (health, readiness, Prometheus text, errors), the
request-head limits, and ``_http`` itself on in-memory streams."""

from __future__ import annotations

from typing import Any

import h11
import httpx
import orjson
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from clients import http_exchange, open_raw_stream, recv_json, status_of, ws_connect
from conftest import FakeSource, ServerFactory, wait_ready, wait_until
from takhin_ws import MetricsSourceError, Server, TopicCreated
from takhin_ws.net.http.exchange import read_body, read_request
from takhin_ws.wire.http import MAX_HEAD_BYTES, HttpError, Request, response_bytes

pytestmark = pytest.mark.slow


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


async def test_health_metrics_and_errors(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["cache-control"] == "no-store"

        response = await http.get("/readyz")
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["reasons"]) == ("ready", [])
        assert body["metrics"] == {
            "source": "custom",  # the tests' own source names no kind
            "collecting": True,
            "snapshot": True,
            "stale": False,
            "lastSuccess": body["metrics"]["lastSuccess"],
            "failingSince": None,
            "failures": 0,
            "error": None,
        }
        assert isinstance(body["metrics"]["lastSuccess"], float)

        response = await http.get("/nowhere")
        assert "/nowhere" in error_of(response, 404, "not_found")

        # the WebSocket path without an upgrade
        response = await http.get("/api/monitoring/ws")
        error_of(response, 426, "upgrade_required")
        assert response.headers["upgrade"] == "websocket"

        response = await http.post("/healthz", content=b"{}")
        error_of(response, 405, "method_not_allowed")
        assert "GET" in response.headers["allow"]

        response = await http.head("/")
        assert response.status_code == 200
        assert response.content == b""


async def test_prometheus_text_counts_clients(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE takhin_ws_clients gauge" in response.text
        assert "takhin_ws_clients 0.0" in response.text

        async with (
            ws_connect(server.ws_url) as a,
            ws_connect(server.ws_url + "?channels=topic:orders") as b,
        ):
            for ws in (a, b):
                await recv_json(ws)
            server.hub.publish_event(TopicCreated(name="orders", partitions=1))
            text = (await http.get("/metrics")).text
        lines = set(text.splitlines())
        assert "takhin_ws_clients 2.0" in lines
        assert 'takhin_ws_channel_subscribers{channel="topic:orders"} 1.0' in lines
        assert 'takhin_ws_stream_offset{stream="topics"} 1.0' in lines
        assert "takhin_ws_ready 1.0" in lines
        with trio.fail_after(5):
            await wait_until(lambda: len(server.hub) == 0)
        text = (await http.get("/metrics")).text
        assert "takhin_ws_clients 0.0" in text.splitlines()


async def test_readyz_waits_for_the_first_snapshot(make_server: ServerFactory) -> None:
    source = FakeSource(blocked=True)
    async with (
        make_server(source) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        response = await http.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unready"
        assert body["reasons"] == ["metrics source has not produced a snapshot yet"]
        assert body["metrics"]["snapshot"] is False
        assert body["metrics"]["lastSuccess"] is None
        assert (await http.get("/healthz")).status_code == 200  # alive all the same
        assert "takhin_ws_ready 0.0" in (await http.get("/metrics")).text

        source.release()
        await wait_ready(server)
        response = await http.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"


async def test_a_plain_get_of_the_websocket_path_answers_what_its_upgrade_would_get(
    make_server: ServerFactory,
) -> None:
    """What websocket-api.md tells a browser to do when its upgrade failed (a browser
    sees close 1006 whatever the status): fetch the same URL; each refusal is the
    upgrade's own, and 426 means the upgrade would be admitted now."""
    async with (
        make_server(api_keys=("k",), max_clients=1) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        key = {"Authorization": "Bearer k"}
        ws = "/api/monitoring/ws"
        error_of(await http.get(ws), 401, "unauthorized")
        error_of(await http.get(ws + "?token=nope"), 401, "unauthorized")
        error_of(await http.get(ws + "?token=k"), 426, "upgrade_required")
        error_of(await http.get(ws, headers=key), 426, "upgrade_required")
        foreign = {**key, "Origin": "https://elsewhere.example"}
        error_of(await http.get(ws, headers=foreign), 403, "forbidden")
        assert "no-such" in error_of(
            await http.get(ws + "?channels=no-such:channel", headers=key), 400, "bad_request"
        )
        async with ws_connect(server.ws_url + "?token=k") as client:
            await recv_json(client)  # welcome: the one place is taken
            full = await http.get(ws, headers=key)
            assert "connection limit" in error_of(full, 503, "unavailable")
            assert full.headers["retry-after"] == "5"
        assert len(server.hub) <= 1  # a probe never takes a place


class BrokenSource:
    """A source that never worked: every collect fails, with a URL holding a secret."""

    kind = "kafka"

    async def collect(self) -> None:
        raise MetricsSourceError("kafka broker:9092 (via http://admin:s3cret@proxy:8080): refused")


async def test_a_source_that_never_worked_is_told_by_readyz_and_metrics(
    make_server: ServerFactory,
) -> None:
    """No snapshot, why and since when (what the dashboard shows); collects attempted
    vs snapshots published on /metrics; no secret of the error on the public page."""
    source: Any = BrokenSource()
    async with (
        make_server(source, interval=0.05) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        producer = server.producer
        assert producer is not None
        with trio.fail_after(10):
            await wait_until(lambda: producer.statistics().failures >= 3)
        response = await http.get("/readyz")
        text = (await http.get("/metrics")).text
    assert response.status_code == 503
    body = response.json()
    assert body["reasons"] == ["metrics source has not produced a snapshot yet"]
    status = body["metrics"]
    assert status["source"] == "kafka"
    assert (status["snapshot"], status["stale"], status["lastSuccess"]) == (False, False, None)
    assert status["failures"] >= 3
    assert isinstance(status["failingSince"], float)
    assert status["error"] == "kafka broker:9092 (via http://***@proxy:8080): refused"
    values = {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.samples
    }
    assert values["takhin_ws_metrics_snapshots"] == 0
    assert values["takhin_ws_metrics_stale_snapshots"] == 0
    assert values["takhin_ws_metrics_collect_failures"] >= 3
    assert values["takhin_ws_metrics_ticks"] >= values["takhin_ws_metrics_collect_failures"]


async def test_a_request_head_over_16_kib_gets_431(server: Server) -> None:
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
    head = start + b"a" * (MAX_HEAD_BYTES + 1024)
    with trio.fail_after(10):
        response = await http_exchange(server.port, head + b"\r\n\r\n")
    assert status_of(response) == 431
    assert b'"code":"head_too_large"' in response
    # just under the limit is fine
    head = start + b"a" * (MAX_HEAD_BYTES - 200)
    with trio.fail_after(10):
        assert status_of(await http_exchange(server.port, head + b"\r\n\r\n")) == 200


async def test_a_connection_that_sends_nothing_is_dropped(make_server: ServerFactory) -> None:
    async with make_server(handshake_timeout=0.2) as server:
        await wait_ready(server)
        for opening in (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
            stream = await open_raw_stream(server.port)
            async with stream:
                await stream.send_all(opening)
                with trio.fail_after(10):
                    assert await stream.receive_some(1024) == b""  # closed, no answer
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200


async def test_requests_are_answered_one_per_connection(server: Server) -> None:
    """``Connection: close``: a pipelined second request is not answered."""
    two = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2
    with trio.fail_after(10):
        response = await http_exchange(server.port, two)
    assert response.count(b"HTTP/1.1 200") == 1
    assert b"connection: close" in response.lower()


# --- _http on in-memory streams ---


async def _read(data: bytes) -> Request | HttpError:
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(data)
    await send.aclose()
    try:
        return await read_request(receive)
    except HttpError as exc:
        return exc


async def test_read_request_parses_the_head_and_keeps_the_raw_bytes() -> None:
    raw = (
        b"GET /api/monitoring/ws?channels=a&channels=b&token=&since=topics:4 HTTP/1.1\r\n"
        b"Host: example\r\nUpgrade: WebSocket\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\n"
    )
    request = await _read(raw)
    assert isinstance(request, Request)
    assert request.method == "GET"
    assert request.path == "/api/monitoring/ws"
    assert request.param("channels") == "b"  # the last one wins
    assert request.param("token") == ""
    assert request.param("missing") is None
    assert request.header("x-twice") == "1, 2"
    assert request.is_websocket
    assert request.raw == raw


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT HTTP\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # a target urlsplit refuses
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
    ],
)
async def test_read_request_refuses_bad_heads(data: bytes, status: int) -> None:
    error = await _read(data)
    assert isinstance(error, HttpError)
    assert error.status == status


async def test_read_request_on_early_eof() -> None:
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"GET / HTTP/1.1\r\n")
    await send.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await read_request(receive)


async def test_read_body_with_a_limit() -> None:
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
    request = await read_request(receive)
    await send.send_all(b"lo")
    assert await read_body(receive, request, 5) == b"hello"

    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nhello!")
    request = await read_request(receive)
    with pytest.raises(HttpError) as info:
        await read_body(receive, request, 5)
    assert info.value.status == 413


def test_response_bytes_is_a_complete_closing_response() -> None:
    body = orjson.dumps({"ok": True})
    raw = response_bytes(503, body, headers=[("Retry-After", "3")])
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 503
    headers = {k.decode(): v.decode() for k, v in response.headers}
    assert headers["retry-after"] == "3"
    assert headers["connection"] == "close"
    assert headers["content-length"] == str(len(body))
    data = client.next_event()
    assert isinstance(data, h11.Data)
    assert data.data == body
    assert isinstance(client.next_event(), h11.EndOfMessage)

    head_only = response_bytes(200, b"abc", head_only=True)
    assert head_only.endswith(b"\r\n\r\n")
    assert b"content-length: 3" in head_only.lower()


# --- GET /api/monitoring/metrics (the Takhin console's REST path) ---


async def test_the_latest_snapshot_as_a_bare_object(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/api/monitoring/metrics")
        head = await http.head("/api/monitoring/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    latest = server.hub.latest("metrics")
    assert latest is not None
    assert response.json() == orjson.loads(latest.payload)["data"]
    assert response.json()["throughput"]["produceRate"] == 10.0
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == response.headers["content-length"]


async def test_no_snapshot_yet_is_503_with_a_json_body(make_server: ServerFactory) -> None:
    async with make_server(FakeSource(blocked=True)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.get("/api/monitoring/metrics")
        message = error_of(response, 503, "unavailable")
        assert "snapshot" in message
        assert response.headers["retry-after"] == "1"


async def test_the_snapshot_needs_the_api_key_clients_need(make_server: ServerFactory) -> None:
    async with make_server(api_keys=("s3cret",)) as server:
        await wait_ready(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.get("/api/monitoring/metrics")
            error_of(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
            response = await http.get("/api/monitoring/metrics?token=wrong")
            error_of(response, 401, "unauthorized")
            bearer = {"Authorization": "Bearer s3cret"}
            assert (await http.get("/api/monitoring/metrics", headers=bearer)).status_code == 200
            response = await http.get("/api/monitoring/metrics?token=s3cret")
            assert response.status_code == 200
            assert "clusterHealth" in response.json()
            assert (await http.get("/healthz")).status_code == 200  # still no key needed
