"""The raw-send floor: the least a Python server can do per delivery.

A single-threaded ``selectors`` (epoll) server that answers the WebSocket upgrade by
hand and, per publish, builds one frame (template bytes around the marker) and does one
non-blocking ``socket.send`` of it per client. Whatever the kernel does not take goes
to a per-client ``bytearray`` flushed on writability, like an asyncio transport: the
minimum needed so that nothing is lost. No queue bounds, no offsets, no history, no
heartbeat. Same control protocol as ``server_takhin``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import time
from typing import Any

import orjson

from benchmarks.common import (
    StdinCommands,
    accept_key,
    child_setup,
    marker,
    reply,
    template_envelope_dict,
    text_frame_header,
)

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
_PLACEHOLDER = "@@MARKER@@"


class Conn:
    __slots__ = ("head", "open", "out", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = b""
        self.open = False
        self.out: bytearray | None = None


class Floor:
    def __init__(self, listener: socket.socket) -> None:
        self.sel = selectors.EpollSelector()
        self.listener = listener
        self.conns: dict[int, Conn] = {}
        self.clients: list[Conn] = []
        self._dirty = False
        env = template_envelope_dict()
        env["data"]["topicStats"][0]["name"] = _PLACEHOLDER
        before, after = orjson.dumps(env).split(_PLACEHOLDER.encode())
        self.before, self.after = before, after
        self.sel.register(listener, READ, "listen")
        self.stdin_fd = sys.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        self.sel.register(self.stdin_fd, READ, "stdin")
        self.commands = StdinCommands(self.stdin_fd)
        self.stop = False
        # the publish job in progress: (run, count, rate, next seq, start, max_late, t_first)
        self.job: list[Any] | None = None

    # --- connections ---

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, READ, conn)

    def drop(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.sel.unregister(conn.sock)
            self.conns.pop(fd, None)
        if conn.open:
            conn.open = False
            self._dirty = True
        conn.out = None
        conn.sock.close()

    def readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.drop(conn)
            return
        if not data:
            self.drop(conn)
            return
        if conn.open:
            return  # pongs, close frames: discarded
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.head) > 8192:
                self.drop(conn)
            return
        key = b""
        for line in conn.head[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if not key:
            self.drop(conn)
            return
        conn.head = b""
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        conn.sock.send(response)  # a fresh socket always takes ~150 bytes
        conn.open = True
        self.clients.append(conn)

    def writable(self, conn: Conn) -> None:
        out = conn.out
        if out is None:
            return
        try:
            sent = conn.sock.send(out)
        except BlockingIOError:
            return
        except OSError:
            self.drop(conn)
            return
        del out[:sent]
        if not out:
            conn.out = None
            self.sel.modify(conn.sock, READ, conn)

    # --- publishing ---

    def broadcast(self, frame: bytes) -> None:
        if self._dirty:
            self.clients = [c for c in self.clients if c.open]
            self._dirty = False
        size = len(frame)
        for conn in self.clients:
            out = conn.out
            if out is not None:
                out += frame
                continue
            try:
                sent = conn.sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.drop(conn)
                continue
            if sent < size:
                conn.out = bytearray(frame[sent:])
                self.sel.modify(conn.sock, READ | WRITE, conn)

    def frame(self, run: int, seq: int, planned: float) -> bytes:
        payload = self.before + marker(run, seq, planned).encode() + self.after
        return text_frame_header(len(payload)) + payload

    def step_job(self) -> float | None:
        """Publish what is due; return seconds until the next message (None: no job)."""
        job = self.job
        if job is None:
            return None
        run, count, rate, seq, start, max_late, t_first = job
        now = time.monotonic()
        if rate > 0:
            planned = start + seq / rate
            if now < planned:
                return planned - now
            max_late = max(max_late, now - planned)
        else:
            planned = now
        self.broadcast(self.frame(run, seq, planned))
        if seq == 0:
            t_first = planned
        seq += 1
        if seq >= count:
            reply(
                {
                    "published": count,
                    "t_first": t_first,
                    "t_last": time.monotonic(),
                    "max_late_ms": max_late * 1000,
                }
            )
            self.job = None
            return None
        self.job = [run, count, rate, seq, start, max_late, t_first]
        return 0.0

    # --- control ---

    def control(self) -> None:
        for cmd in self.commands.read():
            self.command(cmd)
        if self.commands.eof:
            self.stop = True

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd.get("op")
        if op == "publish":
            start = time.monotonic() + 0.005
            self.job = [int(cmd["run"]), int(cmd["count"]), cmd["rate"], 0, start, 0.0, start]
        elif op == "stats":
            clients = [c for c in self.clients if c.open]
            backlogged = sum(1 for c in clients if c.out)
            reply({"clients": len(clients), "backlogged": backlogged})
        elif op == "quit":
            reply({"bye": True})
            self.stop = True
        else:
            reply({"error": f"unknown op {op!r}"})

    def run(self) -> None:
        timeout: float | None = None
        while not self.stop:
            for key, mask in self.sel.select(timeout):
                data = key.data
                if data == "listen":
                    self.accept()
                elif data == "stdin":
                    self.control()
                else:
                    if mask & WRITE:
                        self.writable(data)
                    if mask & READ and data.sock.fileno() >= 0:
                        self.readable(data)
            timeout = self.step_job()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    child_setup(args.cpu)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    floor = Floor(listener)
    reply({"ready": True, "port": listener.getsockname()[1], "pid": os.getpid()})
    floor.run()


if __name__ == "__main__":
    main()
