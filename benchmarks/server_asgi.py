"""takhin-ws behind ASGI under test: ``takhin_ws.asgi.create_app`` served by Hypercorn's
Trio worker (``hypercorn.trio.serve``, one process), driven over stdin like
``server_takhin``.

The same benchmark source, settings and ``publish`` command (``app.hub.publish``: the
full path of encode once, offsets, history, subscriptions) as ``server_takhin``; what
differs is the way out: each client's ``AsgiWriter`` queues the message and its task
awaits Hypercorn's ``send`` (wsproto frames it, then ``send_all``), where the standalone
server writes the shared frame straight into the socket. Hypercorn's access log is off
and its WebSocket pings are at takhin-ws' default interval (54 s).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from benchmarks.common import child_setup
from benchmarks.server_takhin import BenchSource, Runner, _lines, _reply
from takhin_ws import Settings
from takhin_ws.asgi import TakhinApp, create_app


class AsgiRunner(Runner):
    def __init__(self, app: TakhinApp) -> None:
        self.server = app  # type: ignore[assignment]  # Runner.publish needs only .hub
        self.app = app
        super().__init__(self.server)

    def stats(self) -> dict[str, Any]:
        app = self.app
        st = app.hub.statistics()
        statistics = app.statistics()
        return {
            "clients": st.clients,
            "sessions": app.sessions,
            "delivered": st.delivered,
            "dropped": st.dropped,
            "peak_queue_depth": st.peak_queue_depth,
            "connections_total": statistics.connections,
            "rejected": {str(k): v for k, v in statistics.rejected.items()},
            "backlogged": statistics.backlogged_clients,
        }


async def main(args: argparse.Namespace) -> None:
    extra: dict[str, Any] = {}
    if args.write_timeout is not None:
        extra["write_timeout"] = args.write_timeout
    settings = Settings(interval=3600.0, max_clients=args.max_clients, **extra)
    app = create_app(settings, source=BenchSource())
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.backlog = 4096
    config.websocket_ping_interval = settings.ping_interval
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(  # type: ignore[arg-type]
                app, config, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        port = int(binds[0].rsplit(":", 1)[1])
        runner = AsgiRunner(app)
        _reply({"ready": True, "port": port, "pid": os.getpid()})
        async for cmd in _lines(stdin):
            op = cmd.get("op")
            if op == "publish":
                result = await runner.publish(int(cmd["run"]), int(cmd["count"]), cmd["rate"])
                _reply(result)
            elif op == "stats":
                _reply(runner.stats())
            elif op == "quit":
                _reply({"bye": True})
                break
            else:
                _reply({"error": f"unknown op {op!r}"})
        stop.set()


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--max-clients", type=int, default=30_000)
    parser.add_argument("--write-timeout", type=float, default=None)
    args = parser.parse_args()
    child_setup(args.cpu)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, args)


if __name__ == "__main__":
    cli()
