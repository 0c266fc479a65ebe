"""Test helpers for the prometheus source: a real HTTP exporter, a broker stand-in, fixtures.

The exporter is HTTP/1.1 with h11 on a Trio listener, in the test process. It answers
either fixed bytes (a fixture of ``tests/fixtures/prometheus``) or the current
exposition of a prometheus-client registry that a test drives like a Takhin broker
would (:class:`Broker`).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import attrs
import h11
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INF = math.inf
WALL = 1_700_000_000.0


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@attrs.define
class Reply:
    status: int = 200
    body: bytes = b""
    content_length: bool = True
    delay: float = 0.0
    #: Compress the body when the request accepts gzip.
    gzip: bool = False
    #: A Content-Encoding to announce for the body as given.
    encoding: str | None = None


class MetricsServer:
    """HTTP/1.1 on a Trio listener (h11): every request gets ``reply()``."""

    def __init__(self) -> None:
        self.url = ""
        self.reply: Callable[[], Reply] = Reply
        self.requests = 0
        #: Headers of each request (lowercase names).
        self.headers: list[dict[str, str]] = []
        #: How each answer ended: "sent" (every byte) or "hung up" (client left).
        self.outcomes: list[str] = []

    def serve(self, body: bytes, **kwargs: object) -> None:
        self.reply = lambda: Reply(body=body, **kwargs)  # type: ignore[arg-type]

    def serve_registry(self, registry: CollectorRegistry) -> None:
        self.reply = lambda: Reply(body=generate_latest(registry))

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        headers: dict[str, str] = {}
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    self.requests += 1
                    headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                    self.headers.append(headers)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            reply = self.reply()
            if reply.delay:
                await trio.sleep(reply.delay)
            body = reply.body
            out = [("Content-Type", "text/plain; version=0.0.4"), ("Connection", "close")]
            if reply.gzip and "gzip" in headers.get("accept-encoding", ""):
                body = gzip.compress(body)
                out.append(("Content-Encoding", "gzip"))
            elif reply.encoding is not None:
                out.append(("Content-Encoding", reply.encoding))
            if reply.content_length:
                out.append(("Content-Length", str(len(body))))
            await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=out)))
            for start in range(0, len(body), 65536):
                await stream.send_all(conn.send(h11.Data(data=body[start : start + 65536])))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            self.outcomes.append("sent")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.outcomes.append("hung up")  # the client left (a refused body)
        finally:
            await stream.aclose()


async def start_exporter(nursery: trio.Nursery) -> MetricsServer:
    srv = MetricsServer()
    listeners: list[trio.SocketListener] = await nursery.start(
        partial(trio.serve_tcp, srv.handle, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    srv.url = f"http://127.0.0.1:{port}/metrics"
    return srv


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Broker:
    """The ``takhin_*`` families of a broker, in a prometheus-client registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        tp = ["topic", "partition"]
        self.produced = Counter("takhin_produce_messages", "", tp, registry=registry)
        self.fetched = Counter("takhin_fetch_messages", "", tp, registry=registry)
        self.bytes_in = Counter("takhin_produce_bytes", "", ["topic"], registry=registry)
        self.bytes_out = Counter("takhin_fetch_bytes", "", ["topic"], registry=registry)
        self.produce_latency = Histogram(
            "takhin_produce_latency_seconds", "", ["topic"], buckets=BUCKETS, registry=registry
        )
        self.fetch_latency = Histogram(
            "takhin_fetch_latency_seconds", "", ["topic"], buckets=BUCKETS, registry=registry
        )
        self.connections = Gauge("takhin_connections_active", "", registry=registry)
        self.log_end = Gauge("takhin_storage_log_end_offset", "", tp, registry=registry)
        self.disk = Gauge("takhin_storage_disk_usage_bytes", "", tp, registry=registry)
        self.members = Gauge("takhin_consumer_group_members", "", ["group_id"], registry=registry)
        self.state = Gauge(
            "takhin_consumer_group_state", "", ["group_id", "state"], registry=registry
        )
        self.lag = Gauge(
            "takhin_consumer_group_lag_offsets",
            "",
            ["group_id", "topic", "partition"],
            registry=registry,
        )
        self.goroutines = Gauge("takhin_go_goroutines", "", registry=registry)
        self.memory = Gauge("takhin_go_mem_alloc_bytes", "", registry=registry)

    def produce(self, topic: str, partition: int, count: int, size: int) -> None:
        self.produced.labels(topic, str(partition)).inc(count)
        self.bytes_in.labels(topic).inc(count * size)
        self.log_end.labels(topic, str(partition)).inc(count)
        self.disk.labels(topic, str(partition)).inc(count * size)

    def fetch(self, topic: str, partition: int, count: int, size: int) -> None:
        self.fetched.labels(topic, str(partition)).inc(count)
        self.bytes_out.labels(topic).inc(count * size)
