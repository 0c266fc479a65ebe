"""The peer: the ``websockets`` package's asyncio server and ``broadcast()``.

Carries the same payload as takhin-ws: per publish it fills the marker into the
snapshot dict, serialises it once with orjson (as a typical asyncio app would) and
hands the bytes to ``websockets.asyncio.server.broadcast(server.connections, ...,
text=True)``, which frames and writes them per connection. Same control protocol as
``server_takhin``. Keepalive pings are set to takhin-ws' defaults (54 s / 60 s);
compression is off (the load client does not offer it anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from benchmarks.common import child_setup, marker, reply, template_envelope_dict


class Runner:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.envelope = template_envelope_dict()
        self.offset = 0
        self.events = 0
        self.streamed = 0

    def _message(self, run: int, seq: int, planned: float) -> bytes:
        env = self.envelope
        env["data"]["topicStats"][0]["name"] = marker(run, seq, planned)
        self.offset += 1
        env["offset"] = self.offset
        env["timestamp"] = int(time.time())
        return orjson.dumps(env)

    async def publish(self, run: int, count: int, rate: float) -> dict[str, Any]:
        max_late = 0.0
        start = time.monotonic() + 0.005
        t_first = t_last = start
        for seq in range(count):
            if rate > 0:
                planned = start + seq / rate
                delay = planned - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                max_late = max(max_late, time.monotonic() - planned)
            else:
                planned = time.monotonic()
            broadcast(self.server.connections, self._message(run, seq, planned), text=True)
            if seq == 0:
                t_first = planned
            t_last = time.monotonic()
            if rate <= 0:
                await asyncio.sleep(0)
        return {
            "published": count,
            "t_first": t_first,
            "t_last": t_last,
            "max_late_ms": max_late * 1000,
        }

    # --- the event stream of the reconnect storm (benchmarks/storm.py) ---

    def stream_offset(self) -> dict[str, Any]:
        return {"offset": self.events, "epoch": self.envelope["epoch"]}

    async def stream(self, run: int, rate: float, limit: int) -> None:
        """The same ``topic_created`` events as takhin-ws' stream, each with the next
        offset, serialised once and broadcast (the peer keeps no history: a client
        that reconnects gets what is published from then on)."""
        start = time.monotonic() + 0.005
        epoch = self.envelope["epoch"]
        for seq in range(limit):
            planned = start + seq / rate
            delay = planned - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.events += 1
            event = {
                "type": "topic_created",
                "data": {"name": marker(run, seq, planned), "partitions": 1},
                "timestamp": int(time.time()),
                "channel": "topics",
                "offset": self.events,
                "epoch": epoch,
            }
            broadcast(self.server.connections, orjson.dumps(event), text=True)
            self.streamed = seq + 1

    def stats(self) -> dict[str, Any]:
        conns = self.server.connections
        backlogged = 0
        for c in conns:
            transport = c.transport
            if transport is not None and transport.get_write_buffer_size() > 0:
                backlogged += 1
        return {"clients": len(conns), "backlogged": backlogged}


async def handler(ws: ServerConnection) -> None:
    await ws.wait_closed()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    )
    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=54,
        ping_timeout=60,
        backlog=4096,
        max_size=64 * 1024,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        runner = Runner(server)
        streaming: asyncio.Task[None] | None = None
        reply({"ready": True, "port": port, "pid": os.getpid()})
        while True:
            line = await reader.readline()
            if not line:
                break
            if not line.strip():
                continue
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "offset":
                reply(runner.stream_offset())
            elif op == "stream":
                streaming = asyncio.create_task(
                    runner.stream(int(cmd["run"]), float(cmd["rate"]), int(cmd["limit"]))
                )
                reply({"started": True})
            elif op == "stream_stop":
                if streaming is not None:
                    streaming.cancel()
                reply({"streamed": runner.streamed})
            elif op == "publish":
                reply(await runner.publish(int(cmd["run"]), int(cmd["count"]), cmd["rate"]))
            elif op == "stats":
                reply(runner.stats())
            elif op == "quit":
                reply({"bye": True})
                break
            else:
                reply({"error": f"unknown op {op!r}"})
        server.close()


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    child_setup(args.cpu)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.ERROR)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
