"""takhin-ws under test: the real server (``open_server``), driven over stdin.

Run by the harness as ``python -m benchmarks.server_takhin --cpu 0``. It serves on an
ephemeral port with a benchmark metrics source (one fixed snapshot, published once at
start-up; the producer's interval is an hour so it stays out of the measurements) and,
on ``{"op": "publish", "run": R, "count": N, "rate": HZ}``, publishes N snapshots
through ``server.hub.publish("metrics", ...)``: the full path (encode, frame, offsets,
history, subscriptions, write-through). ``rate`` 0 means a burst (one Trio checkpoint
between publishes), otherwise one message every ``1/rate`` s on a drift-free schedule.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio

from benchmarks.common import child_setup, marker, template_metrics
from takhin_ws import MonitoringMetrics, Settings, Snapshot, TopicCreated, open_server
from takhin_ws.net.server import Server


class BenchSource:
    """A metrics source that always answers the same snapshot (no marker in it)."""

    def __init__(self) -> None:
        self._snapshot = Snapshot(metrics=template_metrics())

    async def collect(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        return self._snapshot


class Runner:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.template = template_metrics()
        self.topic = self.template.topic_stats[0]
        self.streamed = 0

    def _message(self, run: int, seq: int, planned: float) -> MonitoringMetrics:
        stats = (attrs.evolve(self.topic, name=marker(run, seq, planned)),)
        return attrs.evolve(self.template, topic_stats=stats, timestamp=int(time.time()))

    async def publish(self, run: int, count: int, rate: float) -> dict[str, Any]:
        hub = self.server.hub
        offset = trio.current_time() - time.monotonic()
        max_late = 0.0
        start = time.monotonic() + 0.005
        t_first = t_last = start
        for seq in range(count):
            if rate > 0:
                planned = start + seq / rate
                await trio.sleep_until(planned + offset)
                now = time.monotonic()
                max_late = max(max_late, now - planned)
            else:
                planned = time.monotonic()
            hub.publish("metrics", self._message(run, seq, planned))
            if seq == 0:
                t_first = planned
            t_last = time.monotonic()
            if rate <= 0:
                await trio.lowlevel.checkpoint()
        return {
            "published": count,
            "t_first": t_first,
            "t_last": t_last,
            "max_late_ms": max_late * 1000,
        }

    # --- the event stream of the reconnect storm (benchmarks/storm.py) ---

    def stream_offset(self) -> dict[str, Any]:
        return {"offset": self.server.hub.offset("topics"), "epoch": self.server.hub.epoch}

    async def stream(self, run: int, rate: float, limit: int) -> None:
        """``topic_created`` events on ``topics`` (the marker as the name) at *rate*/s
        on a drift-free schedule, until cancelled or *limit* were published."""
        hub = self.server.hub
        offset = trio.current_time() - time.monotonic()
        start = time.monotonic() + 0.005
        self.streamed = 0
        for seq in range(limit):
            planned = start + seq / rate
            await trio.sleep_until(planned + offset)
            hub.publish("topics", TopicCreated(name=marker(run, seq, planned), partitions=1))
            self.streamed = seq + 1

    def stats(self) -> dict[str, Any]:
        server = self.server
        st = server.hub.statistics()
        return {
            "clients": st.clients,
            "sessions": len(server.sessions),
            "delivered": st.delivered,
            "dropped": st.dropped,
            "peak_queue_depth": st.peak_queue_depth,
            "connections_total": server.connections_total,
            "rejected": {str(k): v for k, v in server.rejected.items()},
            "backlogged": sum(1 for s in server.sessions if s.transport.backlogged),
        }


_baseline: Any = None


def _memsnap(top: int) -> dict[str, Any]:
    """With ``--tracemalloc``: the first call takes a baseline, later ones report the
    allocation sites (3-frame tracebacks) that grew most since then."""
    global _baseline
    import gc
    import tracemalloc

    if not tracemalloc.is_tracing():
        return {"error": "start the server with --tracemalloc"}
    gc.collect()
    snap = tracemalloc.take_snapshot()
    if _baseline is None:
        _baseline = snap
        return {"baseline": True}
    by_package: dict[str, float] = {}
    for st in snap.compare_to(_baseline, "filename"):
        name = st.traceback[0].filename.split("site-packages/")[-1]
        package = name.split("/")[0] if "site-packages" in st.traceback[0].filename else name
        if "takhin_ws" in name:
            package = "takhin_ws/" + name.rsplit("/", 1)[-1]
        by_package[package] = by_package.get(package, 0.0) + st.size_diff / 1024
    stats = snap.compare_to(_baseline, "traceback")[:top]
    return {
        "by_package_kb": dict(sorted(by_package.items(), key=lambda kv: -kv[1])[:top]),
        "top": [
            {
                "kb": round(st.size_diff / 1024, 1),
                "count": st.count_diff,
                "where": [
                    f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in st.traceback
                ],
            }
            for st in stats
        ],
    }


async def _scoped(scope: trio.CancelScope, stream: Any, cmd: dict[str, Any]) -> None:
    with scope:
        await stream(int(cmd["run"]), float(cmd["rate"]), int(cmd["limit"]))


async def _lines(stream: trio.lowlevel.FdStream) -> AsyncIterator[dict[str, Any]]:
    buf = b""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    extra: dict[str, Any] = {}
    if args.write_timeout is not None:
        extra["write_timeout"] = args.write_timeout
    settings = Settings(
        host="127.0.0.1",
        port=0,
        interval=3600.0,
        max_clients=args.max_clients,
        log_level="warning",
        **extra,
    )
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with (
        open_server(settings, source=BenchSource()) as server,
        trio.open_nursery() as nursery,
    ):
        runner = Runner(server)
        streaming = trio.CancelScope()
        _reply({"ready": True, "port": server.port, "pid": os.getpid()})
        async for cmd in _lines(stdin):
            op = cmd.get("op")
            if op == "offset":
                _reply(runner.stream_offset())
            elif op == "stream":
                streaming = trio.CancelScope()
                nursery.start_soon(_scoped, streaming, runner.stream, cmd)
                _reply({"started": True})
            elif op == "stream_stop":
                streaming.cancel()
                _reply({"streamed": runner.streamed})
            elif op == "publish":
                result = await runner.publish(int(cmd["run"]), int(cmd["count"]), cmd["rate"])
                _reply(result)
            elif op == "stats":
                _reply(runner.stats())
            elif op == "memsnap":
                _reply(_memsnap(int(cmd.get("top", 25))))
            elif op == "quit":
                _reply({"bye": True})
                break
            else:
                _reply({"error": f"unknown op {op!r}"})
        nursery.cancel_scope.cancel()  # the stream, if one runs


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--max-clients", type=int, default=30_000)
    parser.add_argument("--write-timeout", type=float, default=None)
    parser.add_argument("--profile", default=None, help="write cProfile stats here at exit")
    parser.add_argument("--tracemalloc", action="store_true", help="enable the memsnap op")
    args = parser.parse_args()
    child_setup(args.cpu)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(3)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.profile:
        import cProfile

        with cProfile.Profile() as profile:
            trio.run(main, args)
        profile.dump_stats(args.profile)
    else:
        trio.run(main, args)


if __name__ == "__main__":
    cli()
