"""A load-client process: many raw-socket WebSocket clients on one epoll loop.

Run by the harness as ``python -m benchmarks.loadclient --cpu 1`` (several of them for
large client counts) and driven over stdin/stdout (one JSON object per line):

- ``connect``: open ``count`` connections (``concurrency`` handshakes in flight), each a
  plain HTTP/1.1 upgrade request; replies with counts and the set-up time span.
- ``begin``: start a run (id, messages expected per client); counters reset.
- ``status``: messages received so far (by clients that read).
- ``end``: per-run results: received, lost, gap messages, order violations, a latency
  histogram (log-spaced, 100 bins per decade), and this process's CPU time.
- ``stall``: replace every ``every``-th connection by one with a 4 KiB receive buffer
  and a 1460-byte MSS that completes the handshake and then never reads again (the
  slow readers).

Frames are parsed by hand: server frames are unmasked; a text frame whose payload holds
the marker ``"bm:<run>:<seq>:<us>"`` is a benchmark message and its latency is the
time ``epoll`` reported the socket readable minus the planned send time in the marker.
Pings are answered with (masked) pongs. The loop never blocks on one socket.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import os
import select
import socket
import sys
import time
from array import array
from typing import Any, Final

import numpy as np

from benchmarks.common import (
    MARK_END,
    MARK_RUN,
    MARK_SEQ,
    MARK_US,
    StdinCommands,
    child_setup,
    cpu_seconds,
    reply,
    run_tag,
)

CONNECTING: Final = 0
HANDSHAKE: Final = 1
OPEN: Final = 2
STALLED: Final = 3
CLOSED: Final = 4
#: open and read by the C engine (wsload.c), not by this loop
OPEN_C: Final = 5

EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
RECV_BYTES: Final = 256 * 1024
#: Latency histogram: log10(seconds) from -5 (10 us) to 3 (1000 s), 100 bins per decade.
HIST_LO: Final = -5.0
HIST_HI: Final = 3.0
HIST_BINS: Final = 800
#: A stalled client looks like a slow Internet peer: small receive buffer, MSS of a
#: 1500-byte MTU. Without the MSS clamp, loopback's 64 KB MSS lets the server's send
#: buffer autotune to tcp_wmem's maximum (4 MB: ~4,000 messages) before it backs up.
STALL_RCVBUF: Final = 4096
STALL_MSS: Final = 1460


class CEngine:
    """The receive loop of ``wsload.c`` (ctypes): it owns the fds of open connections."""

    def __init__(self, lib_path: str, fd_limit: int) -> None:
        import ctypes

        self.ctypes = ctypes
        lib = ctypes.CDLL(lib_path)
        lib.wl_init.argtypes = [ctypes.c_int]
        lib.wl_add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.wl_remove.argtypes = [ctypes.c_int]
        lib.wl_pump.argtypes = [ctypes.c_int]
        lib.wl_pump.restype = ctypes.c_long
        lib.wl_begin.argtypes = [ctypes.c_char_p, ctypes.c_int64]
        lib.wl_totals.argtypes = [ctypes.POINTER(ctypes.c_int64)]
        lib.wl_latencies.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.fd = lib.wl_init(fd_limit)
        if self.fd < 0:
            raise OSError("wl_init failed")

    def add(self, fd: int, data: bytes) -> None:
        if self.lib.wl_add(fd, data, len(data)) != 0:
            raise OSError(f"wl_add({fd}) failed")

    def totals(self) -> dict[str, int]:
        out = (self.ctypes.c_int64 * 9)()
        self.lib.wl_totals(out)
        keys = ("received", "complete", "reading", "closed", "lost", "lost_clients", "gaps")
        values = dict(zip((*keys, "disorder", "nlat"), (int(v) for v in out), strict=True))
        return values

    def latencies(self, count: int) -> Any:
        dst = np.empty(count, dtype=np.float64)
        if count:
            self.lib.wl_latencies(dst.ctypes.data)
        return dst


class Conn:
    __slots__ = (
        "buf",
        "disorder",
        "fd",
        "gaps",
        "idx",
        "last",
        "received",
        "sock",
        "stall",
        "state",
    )

    def __init__(self, sock: socket.socket, idx: int, stall: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.idx = idx
        self.stall = stall
        self.state = CONNECTING
        self.buf = b""
        self.received = 0
        self.gaps = 0
        self.disorder = 0
        self.last = b""


class LoadClient:
    def __init__(self, engine: CEngine | None = None) -> None:
        self.ep = select.epoll()
        self.engine = engine
        if engine is not None:
            self.ep.register(engine.fd, EPOLLIN)
        self.conns: dict[int, Conn] = {}
        self.stdin_fd = sys.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        self.ep.register(self.stdin_fd, EPOLLIN)
        self.commands = StdinCommands(self.stdin_fd)
        self.stop = False
        # connect job
        self.addr: tuple[str, int] = ("127.0.0.1", 0)
        self.request = b""
        self.pending: list[tuple[int, bool]] = []
        self.in_flight = 0
        self.concurrency = 200
        self.connect_reply: str | None = None  # the op to answer once connects settle
        self.connected = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.t_first_ok = 0.0
        self.t_last_ok = 0.0
        self.t_start = 0.0
        # run
        self.run = -1
        self.tag = b"----"
        self.moff = 0
        self.expected = 0
        self.marks: list[bytes] = []
        self.times = array("d")
        self.cpu0 = 0.0
        self.t_begin = 0.0
        self.closed_during_run = 0
        self.closed_received = 0
        self.closed_lost = 0

    # --- connecting ---

    def _start_one(self, idx: int, stall: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if stall:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALL_RCVBUF)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, STALL_MSS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(f"connect: {errno.errorcode.get(err, err)}")
            return
        conn = self.conn_class(sock, idx, stall)
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, EPOLLOUT)
        self.in_flight += 1

    def _fill(self) -> None:
        while self.pending and self.in_flight < self.concurrency:
            idx, stall = self.pending.pop()
            self._start_one(idx, stall)
        self._maybe_connect_done()

    def _fail(self, reason: str) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def _maybe_connect_done(self) -> None:
        if self.connect_reply is not None and not self.pending and self.in_flight == 0:
            op, self.connect_reply = self.connect_reply, None
            reply(
                {
                    "op": op,
                    "connected": self.connected,
                    "failed": self.failed,
                    "errors": self.errors,
                    "t_start": self.t_start,
                    "t_first": self.t_first_ok,
                    "t_last": self.t_last_ok,
                }
            )

    def _handshake_failed(self, conn: Conn, reason: str) -> None:
        self.in_flight -= 1
        self._close(conn)
        self._fail(reason)
        self._fill()

    def on_connecting(self, conn: Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._handshake_failed(conn, f"connect: {errno.errorcode.get(err, err)}")
            return
        try:
            conn.sock.send(self._request_for(conn))
        except OSError as exc:
            self._handshake_failed(conn, f"send: {exc.strerror}")
            return
        conn.state = HANDSHAKE
        self.ep.modify(conn.fd, EPOLLIN)

    def on_handshake(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._handshake_failed(conn, f"recv: {exc.strerror}")
            return
        if not data:
            self._handshake_failed(conn, "closed during handshake")
            return
        conn.buf += data
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        status = conn.buf[: conn.buf.find(b"\r\n")]
        if b" 101 " not in status + b" ":
            if not self._refused(conn, conn.buf[:end]):
                self._handshake_failed(conn, status.decode("latin-1")[:60])
            return
        conn.buf = conn.buf[end + 4 :]
        self.in_flight -= 1
        self.connected += 1
        now = time.monotonic()
        if not self.t_first_ok:
            self.t_first_ok = now
        self.t_last_ok = now
        if conn.stall:
            conn.state = STALLED
            self.ep.unregister(conn.fd)  # never read again
        elif self.engine is not None:
            conn.state = OPEN_C
            self.ep.unregister(conn.fd)
            data, conn.buf = conn.buf, b""
            self.engine.add(conn.fd, data)
            self._opened(conn, now)
        else:
            conn.state = OPEN
            if conn.buf:
                data, conn.buf = conn.buf, b""
                self._frames(conn, data, now)
        self._fill()

    def _close(self, conn: Conn) -> None:
        if conn.state == CLOSED:
            return
        if conn.state == OPEN_C:
            assert self.engine is not None
            self.engine.lib.wl_remove(conn.fd)
        elif conn.state != STALLED:
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(conn.fd)
        conn.state = CLOSED
        self.conns.pop(conn.fd, None)
        conn.sock.close()

    def _gone(self, conn: Conn) -> None:
        """The server closed a reading connection: keep its counts for the run."""
        if self.run >= 0 and conn.state == OPEN:
            self.closed_during_run += 1
            self.closed_received += conn.received
            self.closed_lost += max(0, self.expected - conn.received)
        self._close(conn)

    # --- hooks (benchmarks/stormclient.py) ---

    conn_class: type[Conn] = Conn

    def _request_for(self, conn: Conn) -> bytes:
        """The upgrade request *conn* sends."""
        return self.request

    def _refused(self, conn: Conn, head: bytes) -> bool:
        """A non-101 answer with this *head*: True if handled here (else it fails)."""
        return False

    def _opened(self, conn: Conn, now: float) -> None:
        """*conn*'s handshake completed and the C engine reads it."""

    def _poll_timeout(self) -> float:
        return 1.0

    def _tick(self, now: float) -> None:
        """Once per loop turn."""

    # --- receiving ---

    def on_open(self, conn: Conn, now: float) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone(conn)
            return
        buf = conn.buf
        if buf:
            data = buf + data
        self._frames(conn, data, now)

    def _frames(self, conn: Conn, data: bytes, now: float) -> None:
        n = len(data)
        pos = 0
        tag = self.tag
        moff = self.moff
        marks_append = self.marks.append
        times_append = self.times.append
        while n - pos >= 2:
            ln = data[pos + 1] & 0x7F
            if ln < 126:
                h = pos + 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = (data[pos + 2] << 8) | data[pos + 3]
                h = pos + 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(data[pos + 2 : pos + 10], "big")
                h = pos + 10
            end = h + ln
            if end > n:
                break
            op = data[pos] & 0x0F
            if op == 1:
                # the marker sits at the same offset in every benchmark message
                i = h + moff
                if not data.startswith(b'"bm:', i):
                    i = data.find(b'"bm:', h, end)
                    if i >= 0:
                        moff = self.moff = i - h
                if i >= 0:
                    if data.startswith(tag, i + MARK_RUN):
                        # "SSSSSS:UUUU...": fixed width, so bytes order is sequence order;
                        # the numbers are parsed in bulk by _results()
                        mark = data[i + MARK_SEQ : i + MARK_END]
                        if mark <= conn.last:
                            conn.disorder += 1
                        conn.last = mark
                        conn.received += 1
                        marks_append(mark)
                        times_append(now)
                elif data.find(b'"type":"gap"', h, end) >= 0:
                    conn.gaps += 1
            elif op == 9:  # ping: answer with a masked pong (mask key 0)
                payload = data[h:end]
                with contextlib.suppress(OSError):
                    conn.sock.send(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif op == 8:
                self._gone(conn)
                return
            pos = end
        conn.buf = data[pos:] if pos < n else b""

    # --- control ---

    def control(self) -> None:
        for cmd in self.commands.read():
            self.command(cmd)
        if self.commands.eof:
            self.stop = True

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd["op"]
        if op == "connect":
            self.addr = (cmd["host"], int(cmd["port"]))
            key = base64.b64encode(os.urandom(16))
            self.request = (
                (
                    f"GET {cmd['path']} HTTP/1.1\r\nHost: {cmd['host']}:{cmd['port']}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: "
                ).encode()
                + key
                + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            self.concurrency = int(cmd.get("concurrency", 200))
            first = int(cmd["first_index"])
            self.pending = [(first + i, False) for i in reversed(range(int(cmd["count"])))]
            self._reset_connect_counters()
            self.connect_reply = "connect"
            self._fill()
        elif op == "stall":
            every = int(cmd["every"])
            victims = [
                c for c in self.conns.values() if c.state in (OPEN, OPEN_C) and c.idx % every == 0
            ]
            for conn in victims:
                self._close(conn)
            self.pending = [(c.idx, True) for c in victims]
            self._reset_connect_counters()
            self.connect_reply = "stall"
            self._fill()
        elif op == "begin":
            self.run = int(cmd["run"])
            self.tag = run_tag(self.run)
            self.expected = int(cmd["expected"])
            for conn in self.conns.values():
                conn.received = conn.gaps = conn.disorder = 0
                conn.last = b""
            self.marks = []
            self.times = array("d")
            self.closed_during_run = self.closed_received = self.closed_lost = 0
            if self.engine is not None:
                self.engine.lib.wl_begin(self.tag, self.expected)
            self.cpu0 = cpu_seconds()
            self.t_begin = time.monotonic()
            reply({"op": "begin"})
        elif op == "status" and self.engine is not None:
            t = self.engine.totals()
            reply(
                {
                    "op": "status",
                    "received": t["received"],
                    "complete": t["complete"],
                    "reading": t["reading"],
                    "closed": t["closed"],
                }
            )
        elif op == "status":
            reading = [c for c in self.conns.values() if c.state == OPEN]
            reply(
                {
                    "op": "status",
                    "received": sum(c.received for c in reading) + self.closed_received,
                    "complete": sum(1 for c in reading if c.received >= self.expected),
                    "reading": len(reading),
                    "closed": self.closed_during_run,
                }
            )
        elif op == "end":
            reply(self._results())
            self.run = -1
            self.tag = b"----"
            if self.engine is not None:
                self.engine.lib.wl_end()
        elif op == "quit":
            self.stop = True
        else:
            reply({"error": f"unknown op {op!r}"})

    def _reset_connect_counters(self) -> None:
        self.connected = self.failed = 0
        self.errors = {}
        self.t_first_ok = self.t_last_ok = 0.0
        self.t_start = time.monotonic()

    def _latencies(self) -> Any:
        """Receive time minus planned send time of every message of the run (seconds)."""
        if not self.marks:
            return np.zeros(0)
        width = MARK_END - MARK_SEQ
        raw = np.frombuffer(b"".join(self.marks), dtype=np.uint8).reshape(-1, width)
        digits = raw[:, MARK_US - MARK_SEQ :].astype(np.int64) - 48
        powers = 10 ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64)
        planned_us = digits @ powers
        return np.frombuffer(self.times, dtype=np.float64) - planned_us * 1e-6

    def _results(self) -> dict[str, Any]:
        if self.engine is not None:
            return self._results_c()
        return self._results_py()

    def _results_c(self) -> dict[str, Any]:
        assert self.engine is not None
        cpu = cpu_seconds() - self.cpu0
        t = self.engine.totals()
        return {
            "op": "end",
            "received": t["received"],
            "reading": t["reading"],
            "stalled": sum(1 for c in self.conns.values() if c.state == STALLED),
            "closed": t["closed"],
            "lost": t["lost"],
            "lost_clients": t["lost_clients"],
            "gaps": t["gaps"],
            "disorder": t["disorder"],
            **_histogram(self.engine.latencies(t["nlat"])),
            "cpu": cpu,
            "wall": time.monotonic() - self.t_begin,
        }

    def _results_py(self) -> dict[str, Any]:
        cpu = cpu_seconds() - self.cpu0
        reading = [c for c in self.conns.values() if c.state == OPEN]
        lost = 0
        lost_clients = 0
        for conn in reading:
            missing = self.expected - conn.received
            if missing > 0:
                lost += missing
                lost_clients += 1
        return {
            "op": "end",
            "received": sum(c.received for c in reading) + self.closed_received,
            "reading": len(reading),
            "stalled": sum(1 for c in self.conns.values() if c.state == STALLED),
            "closed": self.closed_during_run,
            "lost": lost + self.closed_lost,
            "lost_clients": lost_clients + (self.closed_during_run if self.closed_lost else 0),
            "gaps": sum(c.gaps for c in self.conns.values()),
            "disorder": sum(c.disorder for c in self.conns.values()),
            **_histogram(self._latencies()),
            "cpu": cpu,
            "wall": time.monotonic() - self.t_begin,
        }

    # --- the loop ---

    def loop(self) -> None:
        conns = self.conns
        stdin_fd = self.stdin_fd
        poll = self.ep.poll
        monotonic = time.monotonic
        engine_fd = self.engine.fd if self.engine is not None else -1
        pump = self.engine.lib.wl_pump if self.engine is not None else None
        while not self.stop:
            events = poll(self._poll_timeout(), 65536)
            now = monotonic()
            self._tick(now)
            for fd, ev in events:
                if fd == stdin_fd:
                    self.control()
                    continue
                if fd == engine_fd:
                    pump(64)
                    continue
                conn = conns.get(fd)
                if conn is None:
                    continue
                state = conn.state
                if state == OPEN:
                    self.on_open(conn, now)
                elif state == HANDSHAKE:
                    if ev & (EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self.on_handshake(conn)
                elif state == CONNECTING:
                    self.on_connecting(conn)


def _histogram(lat: Any) -> dict[str, Any]:
    if lat.size:
        logs = np.log10(np.clip(lat, 10**HIST_LO, 10**HIST_HI * 0.999))
        hist, _ = np.histogram(logs, bins=HIST_BINS, range=(HIST_LO, HIST_HI))
        return {
            "hist": hist.tolist(),
            "lat_count": int(lat.size),
            "lat_max": float(lat.max()),
            "lat_min": float(lat.min()),
            "lat_sum": float(lat.sum()),
        }
    return {
        "hist": [0] * HIST_BINS,
        "lat_count": 0,
        "lat_max": 0.0,
        "lat_min": 0.0,
        "lat_sum": 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--engine", choices=("python", "c"), default="python")
    parser.add_argument("--lib", default=None, help="the compiled wsload.c (--engine c)")
    args = parser.parse_args()
    child_setup(args.cpu)
    engine = None
    if args.engine == "c":
        import resource

        engine = CEngine(args.lib, resource.getrlimit(resource.RLIMIT_NOFILE)[0] + 16)
    client = LoadClient(engine)
    reply({"ready": True, "pid": os.getpid()})
    client.loop()


if __name__ == "__main__":
    main()
