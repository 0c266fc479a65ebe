"""Per-delivery cost of the fan-out path in one process, without a load client.

``python -m benchmarks.micro [--clients 2000] [--messages 50]`` opens N loopback TCP
connections inside one process (the receiving ends are drained between phases, never
timed) and measures CPU time per delivery of:

- ``send loop``: ``sock.send(frame)`` for every socket: the floor (kernel + loop);
- ``hub, no-op subscribers``: ``Hub.publish`` with subscribers whose ``offer`` does
  nothing: the hub's own per-publish and per-delivery cost (encode, offsets, loop);
- ``hub + SocketTransport``: ``Hub.publish`` into the real write-through transports:
  the takhin-ws fast path as the server runs it;
- ``hub + LeanTransport``: the same with a leaner ``offer`` (see ``LeanTransport``),
  to size a suggested change.

The differences isolate the user-space overhead of takhin-ws from the kernel's cost of a
``send``, which dominates the end-to-end figures.
"""

from __future__ import annotations

import argparse
import gc
import socket
import time
from typing import Any

import trio

from benchmarks.common import child_setup, marker, template_metrics
from takhin_ws import Hub, MonitoringMetrics
from takhin_ws.core.queue import DropOldestQueue
from takhin_ws.lowlevel import Outbound
from takhin_ws.net.transport import SocketTransport


class LeanTransport(SocketTransport):
    """A benchmark-only variant of the fast path suggested in docs/benchmarks.md: the
    bound ``socket.send`` looked up once, and no per-delivery counters. The slow path
    (the outbound buffer, the flusher) is the parent's. Not used by the server; it
    measures what such a change would save."""

    def __init__(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        super().__init__(sock, nursery)
        self._send = sock.send

    def offer(self, item: Outbound) -> None:
        buffer = self._buffer
        if buffer.idle:
            frame = item.frame
            try:
                sent = self._send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.abort(f"send failed: {exc.strerror or exc}")
                return
            if sent == len(frame):
                return
            buffer.started(frame, sent)
            self._start_flusher()
            return
        if not buffer.closing:
            buffer.offer(item)
            self._start_flusher()


class NoopSubscriber:
    __slots__ = ("queue",)

    def __init__(self) -> None:
        self.queue: DropOldestQueue[Outbound] = DropOldestQueue(256)

    def offer(self, item: Outbound) -> None:
        pass


def _pairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    clients, servers = [], []
    for _ in range(n):
        c = socket.create_connection(listener.getsockname())
        s, _ = listener.accept()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.setblocking(False)
        clients.append(c)
        servers.append(s)
    listener.close()
    return clients, servers


def _drain(clients: list[socket.socket]) -> None:
    for c in clients:
        while True:
            try:
                if not c.recv(1 << 20):
                    break
            except BlockingIOError:
                break


def _messages(m: int) -> list[MonitoringMetrics]:
    import attrs

    base = template_metrics()
    topic = base.topic_stats[0]
    return [
        attrs.evolve(base, topic_stats=(attrs.evolve(topic, name=marker(1, i, time.monotonic())),))
        for i in range(m)
    ]


async def run(n: int, m: int) -> dict[str, float]:
    clients, servers = _pairs(n)
    messages = _messages(m)
    results: dict[str, float] = {}
    gc.collect()

    hub0 = Hub(max_clients=n + 1)
    probe = hub0.publish("metrics", messages[0])
    frame = probe.frame

    # 1. the floor: one send of a pre-built frame per socket
    t0 = time.process_time()
    for _ in range(m):
        for s in servers:
            s.send(frame)
    results["send loop"] = (time.process_time() - t0) / (n * m) * 1e6
    _drain(clients)

    # 2. the hub alone
    hub1 = Hub(max_clients=n + 1)
    for _ in range(n):
        hub1.add_client(NoopSubscriber())
    t0 = time.process_time()
    for msg in messages:
        hub1.publish("metrics", msg)
    results["hub, no-op subscribers"] = (time.process_time() - t0) / (n * m) * 1e6

    # 3. the real path
    async with trio.open_nursery() as nursery:
        hub2 = Hub(max_clients=n + 1)
        transports = [SocketTransport(s, nursery) for s in servers]
        for t in transports:
            hub2.add_client(t)
        t0 = time.process_time()
        for msg in messages:
            hub2.publish("metrics", msg)
        results["hub + SocketTransport"] = (time.process_time() - t0) / (n * m) * 1e6
        results["fast writes %"] = 100 * sum(t.fast_writes for t in transports) / (n * m)
        _drain(clients)
        for t in transports:
            t.abort("done")
    for c in clients:
        c.close()
    clients, servers = _pairs(n)
    async with trio.open_nursery() as nursery:
        hub3 = Hub(max_clients=n + 1)
        lean = [LeanTransport(s, nursery) for s in servers]
        for t in lean:
            hub3.add_client(t)
        t0 = time.process_time()
        for msg in messages:
            hub3.publish("metrics", msg)
        results["hub + LeanTransport (suggested fast path)"] = (
            (time.process_time() - t0) / (n * m) * 1e6
        )
        _drain(clients)
        for t in lean:
            t.abort("done")
    for c in clients:
        c.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="report the best of N rounds")
    parser.add_argument("--cpu", type=int, default=0)
    args = parser.parse_args()
    child_setup(args.cpu)
    best: dict[str, Any] = {}
    for _ in range(args.rounds):
        for key, value in trio.run(run, args.clients, args.messages).items():
            best[key] = min(value, best.get(key, value))
    width = max(map(len, best))
    for key, value in best.items():
        unit = "" if key.endswith("%") else " us/delivery"
        print(f"{key:<{width}}  {value:6.2f}{unit}")


if __name__ == "__main__":
    main()
