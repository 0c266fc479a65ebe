"""The wire over real sockets: permessage-deflate negotiated and decoded by independent
receivers (raw zlib on a raw socket, the ``websockets`` package), ``format=bare``, the
metrics views, and protocol violations answered with a Close frame before the drop."""

from __future__ import annotations

import base64
import os
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import websockets.asyncio.client

from clients import WAIT, http_exchange, in_asyncio, loads, open_raw_stream, status_of
from conftest import FakeSource, ServerFactory, sample_metrics, wait_ready
from takhin_ws import (
    WS_PATH,
    ConsumerLag,
    MonitoringMetrics,
    PartitionLag,
    Server,
    TopicCreated,
    TopicLag,
    TopicStats,
)
from takhin_ws.wire.codec import payload_to_data
from takhin_ws.wire.websocket.deflate import TAIL

ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def big_metrics(topics: int = 60) -> MonitoringMetrics:
    """A snapshot of a few KiB, with repetitions far apart (a window test needs them)."""
    stats = tuple(
        TopicStats(
            name=f"topic-{i:03d}-{os.urandom(4).hex()}",
            partitions=4,
            total_messages=i * 1000,
            total_bytes=i * 99_999,
            produce_rate=i / 3,
            fetch_rate=i / 7,
        )
        for i in range(topics)
    )
    lags = tuple(
        ConsumerLag(
            group_id=f"group-{t.name}",
            total_lag=3,
            topic_lags=(
                TopicLag(
                    topic=t.name,
                    total_lag=3,
                    partition_lags=(
                        PartitionLag(partition=0, current_offset=7, log_end_offset=10, lag=3),
                    ),
                ),
            ),
        )
        for t in stats
    )
    return MonitoringMetrics(topic_stats=stats, consumer_lags=lags, timestamp=1_700_000_000)


# --- a raw client: the handshake and the server's frames by hand ---


class Frame:
    def __init__(self, first: int, payload: bytes) -> None:
        self.fin = bool(first & 0x80)
        self.rsv1 = bool(first & 0x40)
        self.opcode = first & 0x0F
        self.payload = payload

    def text(self, window_bits: int = 15) -> str:
        data = inflate_stepwise(self.payload, window_bits) if self.rsv1 else self.payload
        return data.decode()

    def json(self, window_bits: int = 15) -> dict[str, Any]:
        return loads(self.text(window_bits))

    def close_code(self) -> int:
        assert self.opcode == 0x8, f"not a Close frame: opcode {self.opcode}"
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


def inflate_stepwise(data: bytes, window_bits: int) -> bytes:
    """Raw inflate as a receiver with that window does (small steps: back references
    must come from the window, not from one big output buffer)."""
    inflater = zlib.decompressobj(-window_bits)
    out, rest = b"", data + TAIL
    while rest:
        out += inflater.decompress(rest, 256)
        rest = inflater.unconsumed_tail
    return out


class Raw:
    def __init__(self, stream: trio.SocketStream, headers: dict[str, str], rest: bytes) -> None:
        self.stream = stream
        self.headers = headers
        self.buffer = rest

    async def _more(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        self.buffer += data
        return bool(data)

    async def frame(self, *, timeout: float = WAIT) -> Frame | None:
        """The next frame from the server (pings skipped); None at EOF."""
        with trio.fail_after(timeout):
            while True:
                parsed = self._parse()
                if parsed is not None:
                    if parsed.opcode == 0x9:
                        continue
                    return parsed
                if not await self._more():
                    return None

    def _parse(self) -> Frame | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        first, length = buf[0], buf[1] & 0x7F
        assert not buf[1] & 0x80, "server frames are never masked"
        start = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            start = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            start = 10
        if len(buf) < start + length:
            return None
        self.buffer = buf[start + length :]
        return Frame(first, buf[start : start + length])

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def until_eof(self) -> list[Frame]:
        frames = []
        while (frame := await self.frame(timeout=3 * WAIT)) is not None:
            frames.append(frame)
        return frames


@asynccontextmanager
async def raw(port: int, query: str = "", *headers: str) -> AsyncIterator[Raw]:
    stream = await open_raw_stream(port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        head = [
            f"GET {WS_PATH}{query} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *headers,
        ]
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())
        response = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in response:
                data = await stream.receive_some(65536)
                assert data, f"connection closed during the handshake: {response!r}"
                response += data
        head_bytes, rest = response.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), response
        names = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        yield Raw(stream, names, rest)


def client_frame(opcode: int, payload: bytes, *, rsv: int = 0, masked: bool = True) -> bytes:
    first = 0x80 | rsv | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    else:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[: -len(TAIL)]


async def compressing_server(make_server: ServerFactory, **settings: Any) -> Any:
    return make_server(FakeSource(big_metrics()), compress_min_size=0, **settings)


# --- negotiation ---


async def test_offered_deflate_is_answered_and_every_frame_compressed(
    make_server: ServerFactory,
) -> None:
    async with make_server(FakeSource(big_metrics()), compress_min_size=0) as server:
        await wait_ready(server)
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
        async with raw(server.port, "", offer) as client:
            assert client.headers["sec-websocket-extensions"] == ANSWER
            welcome = await client.frame()
            assert welcome is not None
            assert welcome.rsv1
            assert welcome.json()["type"] == "welcome"
            snapshot = await client.frame()
            assert snapshot is not None
            assert snapshot.rsv1
            assert len(snapshot.payload) < len(orjson.dumps(payload_to_data(big_metrics()))) / 3
            message = snapshot.json()
            assert message["type"] == "metrics"
            assert message["data"] == loads(orjson.dumps(payload_to_data(server_metrics(server))))


def server_metrics(server: Server) -> MonitoringMetrics:
    latest = server.hub.latest("metrics")
    assert latest is not None
    data = loads(latest.payload)["data"]
    assert isinstance(data, dict)
    return decode_metrics(latest.payload)


def decode_metrics(payload: bytes) -> MonitoringMetrics:
    from takhin_ws.wire.codec import decode

    envelope = decode(payload)
    assert isinstance(envelope.payload, MonitoringMetrics)
    return envelope.payload


async def test_small_frames_stay_plain(make_server: ServerFactory) -> None:
    async with make_server(FakeSource(big_metrics())) as server:  # default: 512 bytes
        await wait_ready(server)
        async with raw(server.port, "", "Sec-WebSocket-Extensions: permessage-deflate") as client:
            welcome, snapshot = await client.frame(), await client.frame()
            assert welcome is not None
            assert snapshot is not None
            assert not welcome.rsv1  # a welcome is ~300 bytes
            assert snapshot.rsv1
            await client.send(client_frame(0x1, b'{"type":"ping"}'))
            pong = await client.frame()
            assert pong is not None
            assert not pong.rsv1
            assert pong.json()["type"] == "pong"


async def test_not_offered_means_plain(make_server: ServerFactory) -> None:
    async with make_server(FakeSource(big_metrics()), compress_min_size=0) as server:
        await wait_ready(server)
        async with raw(server.port) as client:
            assert "sec-websocket-extensions" not in client.headers
            for _ in range(2):
                frame = await client.frame()
                assert frame is not None
                assert not frame.rsv1


async def test_server_max_window_bits_is_honoured(make_server: ServerFactory) -> None:
    async with make_server(FakeSource(big_metrics(200)), compress_min_size=0) as server:
        await wait_ready(server)
        latest = server.hub.latest("metrics")
        assert latest is not None
        wide = latest.payload
        offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10"
        async with raw(server.port, "?channels=metrics", offer) as client:
            assert client.headers["sec-websocket-extensions"] == (
                ANSWER + "; server_max_window_bits=10"
            )
            await client.frame()  # welcome
            snapshot = await client.frame()
            assert snapshot is not None
            assert snapshot.text(window_bits=10) == wide.decode()
        # what a 15-bit client gets does not fit a 10-bit window: two variants
        async with raw(
            server.port, "?channels=metrics", "Sec-WebSocket-Extensions: permessage-deflate"
        ) as client:
            await client.frame()
            snapshot = await client.frame()
            assert snapshot is not None
            assert snapshot.text() == wide.decode()
            with pytest.raises(zlib.error):
                snapshot.text(window_bits=10)


async def test_compression_off(make_server: ServerFactory) -> None:
    async with make_server(
        FakeSource(big_metrics()), compression=False, compress_min_size=0
    ) as server:
        await wait_ready(server)
        async with raw(server.port, "", "Sec-WebSocket-Extensions: permessage-deflate") as client:
            assert "sec-websocket-extensions" not in client.headers
            frame = await client.frame()
            assert frame is not None
            assert not frame.rsv1
            # and a compressed frame is then a protocol error
            await client.send(client_frame(0x1, deflated(b'{"type":"ping"}'), rsv=0x40))
            frames = await client.until_eof()
            assert frames[-1].close_code() == 1002


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        'permessage-deflate; server_max_window_bits="1',
    ],
)
async def test_declined_offers_mean_plain(make_server: ServerFactory, offer: str) -> None:
    async with make_server(FakeSource(big_metrics()), compress_min_size=0) as server:
        await wait_ready(server)
        async with raw(server.port, "", f"Sec-WebSocket-Extensions: {offer}") as client:
            assert "sec-websocket-extensions" not in client.headers
            frame = await client.frame()
            assert frame is not None
            assert not frame.rsv1


async def test_compressing_clients_share_one_frame(make_server: ServerFactory) -> None:
    async with make_server(FakeSource(big_metrics()), compress_min_size=0) as server:
        await wait_ready(server)
        offer = "Sec-WebSocket-Extensions: permessage-deflate"
        async with (
            raw(server.port, "?channels=topics", offer) as one,
            raw(server.port, "?channels=topics", offer) as two,
        ):
            await one.frame()
            await two.frame()
            item = server.hub.publish_event(TopicCreated(name="orders", partitions=3))
            a, b = await one.frame(), await two.frame()
            assert a is not None
            assert b is not None
            assert a.payload == b.payload  # the same bytes: compressed once
            assert a.rsv1
            assert a.json() == loads(item.payload)


async def test_websockets_client_with_compression(make_server: ServerFactory) -> None:
    async with make_server(FakeSource(big_metrics()), compress_min_size=0) as server:
        await wait_ready(server)
        expected = server_metrics(server)

        async def session() -> tuple[str | None, list[dict[str, Any]]]:
            async with websockets.asyncio.client.connect(
                server.ws_url, compression="deflate", open_timeout=10
            ) as ws:
                assert ws.response is not None
                extension = ws.response.headers.get("Sec-WebSocket-Extensions")
                got = [loads(await ws.recv()) for _ in range(2)]
                # websockets compresses what it sends: the server inflates it
                await ws.send(
                    '{"type":"subscribe","data":["metrics:lean","topic:' + "x" * 240 + '"]}'
                )
                got += [loads(await ws.recv()) for _ in range(2)]
                await ws.send('{"type":"ping"}')
                got.append(loads(await ws.recv()))
                return extension, got

        extension, got = await in_asyncio(session)
        assert extension is not None
        assert extension.startswith("permessage-deflate")
        assert [m["type"] for m in got] == ["welcome", "metrics", "subscribed", "metrics", "pong"]
        assert got[1]["data"] == payload_to_data(expected)
        assert "metrics:lean" in got[2]["data"]["channels"]
        assert all(
            not t["partitionLags"] for c in got[3]["data"]["consumerLags"] for t in c["topicLags"]
        )


# --- format=bare ---


async def test_bare_clients_get_nothing_but_metrics(make_server: ServerFactory) -> None:
    async with make_server() as server:
        await wait_ready(server)
        async with raw(server.port, "?format=bare") as client:
            first = await client.frame()
            assert first is not None
            assert first.json() == payload_to_data(sample_metrics())
            await client.send(client_frame(0x1, b'{"type":"ping"}'))
            await client.send(client_frame(0x1, b"not json at all"))
            await client.send(client_frame(0x1, b'{"type":"subscribe","data":"topics"}'))
            server.hub.publish_event(TopicCreated(name="orders", partitions=1))
            server.hub.publish("metrics", sample_metrics(2))
            second = await client.frame()
            assert second is not None
            assert second.json() == payload_to_data(sample_metrics(2))
            assert len(server.sessions) == 1  # still connected after a dozen ignored messages


async def test_bare_is_built_once_per_publish(make_server: ServerFactory) -> None:
    async with make_server() as server:
        await wait_ready(server)
        async with raw(server.port, "?format=bare") as one, raw(server.port, "?format=bare") as two:
            await one.frame()
            await two.frame()
            item = server.hub.publish("metrics", sample_metrics(3))
            a, b = await one.frame(), await two.frame()
            assert a is not None
            assert b is not None
            bare = item.variant(next(iter(server.hub.clients())).variant)
            assert bare is not None
            assert a.payload == b.payload == bare.payload


async def test_format_setting_and_override(make_server: ServerFactory) -> None:
    async with make_server(format="bare") as server:
        await wait_ready(server)
        async with raw(server.port) as client:
            frame = await client.frame()
            assert frame is not None
            assert "throughput" in frame.json()
        async with raw(server.port, "?format=envelope") as client:
            frame = await client.frame()
            assert frame is not None
            assert frame.json()["type"] == "welcome"


async def test_bad_format_is_400(server: Server) -> None:
    request = (
        f"GET {WS_PATH}?format=xml HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    response = await http_exchange(server.port, request)
    assert status_of(response) == 400
    body = loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "bad_request"
    assert "format" in body["error"]["message"]


# --- views over the wire ---


async def test_views_arrive_at_once_and_every_tick(make_server: ServerFactory) -> None:
    source = FakeSource(big_metrics())
    async with make_server(source) as server:
        await wait_ready(server)
        async with raw(server.port, "?channels=metrics:lean") as client:
            await client.frame()  # welcome
            lean = await client.frame()
            assert lean is not None
            message = lean.json()
            assert message["type"] == "metrics"
            assert all(
                not t["partitionLags"]
                for c in message["data"]["consumerLags"]
                for t in c["topicLags"]
            )
            group = message["data"]["consumerLags"][0]["groupId"]
            subscribe = orjson.dumps({"type": "subscribe", "data": f"metrics:group:{group}"})
            await client.send(client_frame(0x1, subscribe))
            subscribed, detail = await client.frame(), await client.frame()
            assert subscribed is not None
            assert detail is not None
            assert subscribed.json()["type"] == "subscribed"
            assert detail.json()["type"] == "group_detail"
            assert detail.json()["data"]["topicLags"][0]["partitionLags"]
            server.hub.publish("metrics", source.metrics)  # the group still exists
            kinds = sorted([(await client.frame()).json()["type"] for _ in range(2)])  # type: ignore[union-attr]
            assert kinds == ["group_detail", "metrics"]


# --- protocol violations: a Close frame with the code, then the drop ---


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(0x1, b'{"type":"ping"}', masked=False), 1002),
        (client_frame(0x3, b""), 1002),
        (client_frame(0xB, b"x"), 1002),
        (client_frame(0x1, b'{"type":"ping"}', rsv=0x40), 1002),
        (client_frame(0x1, b"x", rsv=0x20), 1002),
        (client_frame(0x1, b'{"type":"\xff"}'), 1007),
        (bytes((0x81, 0xFF)) + struct.pack("!Q", 2**62), 1009),  # the header alone
        (bytes((0x81, 0xFF)) + struct.pack("!Q", 65537), 1009),  # one byte over 64 KiB
        (client_frame(0x2, b'{"type":"ping"}'), 1003),
    ],
    ids=[
        "unmasked",
        "reserved-3",
        "reserved-b",
        "rsv1",
        "rsv2",
        "utf-8",
        "2^62",
        "64k+1",
        "binary",
    ],
)
async def test_protocol_violations_get_a_close_frame(
    server: Server, data: bytes, code: int
) -> None:
    async with raw(server.port, "?channels=") as client:
        welcome = await client.frame()
        assert welcome is not None
        await client.send(data)
        frames = await client.until_eof()
        assert [f.close_code() for f in frames] == [code]
    with trio.fail_after(WAIT):
        while server.sessions:
            await trio.sleep(0.01)


async def test_compressed_client_messages_are_inflated(make_server: ServerFactory) -> None:
    async with make_server() as server:
        await wait_ready(server)
        offer = "Sec-WebSocket-Extensions: permessage-deflate"
        async with raw(server.port, "?channels=", offer) as client:
            await client.frame()
            await client.send(client_frame(0x1, deflated(b'{"type":"ping"}'), rsv=0x40))
            pong = await client.frame()
            assert pong is not None
            assert pong.json()["type"] == "pong"
            # inflates to more than one 4 KiB read of trio-websocket: handed on in pieces
            channels = [f"topic:a-rather-long-topic-name-{n:04d}" for n in range(200)]
            subscribe = orjson.dumps({"type": "subscribe", "data": channels})
            assert len(subscribe) > 4096
            await client.send(client_frame(0x1, deflated(subscribe), rsv=0x40))
            subscribed = await client.frame()
            assert subscribed is not None
            assert subscribed.json()["data"]["channels"] == sorted(channels)
            bomb = deflated(b" " * (server.settings.max_message_size + 1))
            await client.send(client_frame(0x1, bomb, rsv=0x40))
            frames = await client.until_eof()
            assert [f.close_code() for f in frames] == [1009]
