"""The clients of the hostile-load scenarios: raw-socket WebSocket clients on Trio, and
the real server as a child process (``python -m takhin_ws``).

Independent of the server's code: the handshake, the frame parser and the masked
client frames are written here from RFC 6455 (``benchmarks.hostile`` drives them).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import psutil
import trio

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
WS_PATH: Final = "/api/monitoring/ws"
SERVING: Final = re.compile(rb"takhin-ws serving http://127\.0\.0\.1:(\d+)/")
STARTUP_TIMEOUT: Final = 60.0
HEAD_END: Final = b"\r\n\r\n"
PING: Final = b'{"type":"ping"}'
#: Seconds between two ``metrics`` frames beyond which a tick counts as late (2 s ticks).
LATE_TICK: Final = 2.5

OP_TEXT: Final = 0x1
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

Figures = dict[str, Any]


def pin(pid: int, core: int) -> None:
    """Pin *pid* (0: this process) to *core* where there are two cores or more."""
    with contextlib.suppress(OSError, AttributeError):
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(pid, {core})


# --- the server under test ---


class ServerProcess:
    """``python -m takhin_ws --port 0 ARGS...`` pinned to core 0; its port, CPU and RSS."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "takhin_ws", "--port", "0", *args],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
        )
        pin(self.proc.pid, 0)
        self.port = self._wait_serving()
        self.ps = psutil.Process(self.proc.pid)
        self.log = b""

    def _wait_serving(self) -> int:
        stderr = self.proc.stderr
        assert stderr is not None
        seen = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            line = stderr.readline()
            if not line:
                raise RuntimeError(f"takhin-ws exited before serving: {seen.decode()[-500:]}")
            seen += line
            if match := SERVING.search(line):
                threading.Thread(target=self._drain, daemon=True).start()
                return int(match.group(1))
        raise RuntimeError("takhin-ws did not start serving")

    def _drain(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        for line in stderr:
            self.log = (self.log + line)[-20_000:]

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss_mib(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def server(args: list[str]) -> Iterator[ServerProcess]:
    proc = ServerProcess(args)
    try:
        yield proc
    finally:
        proc.close()


# --- a raw WebSocket client ---


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class RawWs:
    """One WebSocket connection over a raw Trio socket (RFC 6455, by hand)."""

    def __init__(self, stream: trio.SocketStream, buffered: bytes) -> None:
        self.stream = stream
        self._buf = bytearray(buffered)
        self.received = len(buffered)
        self.closed_at: float | None = None

    @classmethod
    async def connect(
        cls, port: int, query: str = "", *, deflate: bool = False, rcvbuf: int | None = None
    ) -> RawWs:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        key = base64.b64encode(os.urandom(16)).decode()
        target = WS_PATH + (f"?{query}" if query else "")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while HEAD_END not in head:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            head += data
        head, _, rest = head.partition(HEAD_END)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        return cls(stream, rest)

    async def send_text(self, text: bytes) -> None:
        await self.stream.send_all(client_frame(OP_TEXT, text))

    async def receive_some(self, max_bytes: int) -> bytes:
        """Raw bytes (what is buffered first); ``b""`` once the server closed."""
        if self._buf:
            data = bytes(self._buf[:max_bytes])
            del self._buf[:max_bytes]
            return data
        try:
            data = await self.stream.receive_some(max_bytes)
        except trio.BrokenResourceError:
            data = b""
        if not data and self.closed_at is None:
            self.closed_at = time.monotonic()
        self.received += len(data)
        return data

    async def read_frame(self) -> tuple[int, bytes]:
        """The next whole frame: ``(opcode, payload)``; ``(OP_CLOSE, b"")`` at EOF."""
        buf = self._buf
        while True:
            frame = _parse(buf)
            if frame is not None:
                return frame
            try:
                data = await self.stream.receive_some(256 * 1024)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                if self.closed_at is None:
                    self.closed_at = time.monotonic()
                return OP_CLOSE, b""
            self.received += len(data)
            buf += data

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.stream.aclose()


def _parse(buf: bytearray) -> tuple[int, bytes] | None:
    """Take one whole server frame (unmasked) off the front of *buf*."""
    if len(buf) < 2:
        return None
    opcode, length, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if length == 126:
        if len(buf) < 4:
            return None
        length, pos = struct.unpack_from("!H", buf, 2)[0], 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length, pos = struct.unpack_from("!Q", buf, 2)[0], 10
    if len(buf) < pos + length:
        return None
    payload = bytes(buf[pos : pos + length])
    del buf[: pos + length]
    return opcode, payload


# --- the clients the scenarios use ---


async def paced_reader(
    ws: RawWs, rate: float, until: float, *, ping_every: float, chunk: int = 4096
) -> None:
    """Read at most *rate* bytes/s until *until* (monotonic) or the server closes;
    send a JSON ping every *ping_every* seconds (any data keeps the heartbeat happy)."""
    start = time.monotonic()
    taken = 0
    next_ping = start + ping_every
    while time.monotonic() < until:
        now = time.monotonic()
        if now >= next_ping:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await ws.send_text(PING)
            next_ping = now + ping_every
        ahead = taken / rate - (now - start)
        if ahead > 0:
            await trio.sleep(min(ahead, until - now))
            continue
        data = await ws.receive_some(chunk)
        if not data:
            return
        taken += len(data)


async def discard(ws: RawWs, until: float, *, ping_every: float = 20.0) -> None:
    """Read everything as fast as it comes, until *until* or the server closes."""
    with trio.move_on_at(trio.current_time() + max(until - time.monotonic(), 0)):
        next_ping = time.monotonic() + ping_every
        while True:
            data = await ws.receive_some(256 * 1024)
            if not data:
                return
            if time.monotonic() >= next_ping:
                next_ping = time.monotonic() + ping_every
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await ws.send_text(PING)


class Prober:
    """A well-behaved client: the arrival time of every ``metrics`` frame, and the round
    trip of a JSON ping sent every *every* seconds (what everyone else experiences)."""

    def __init__(self, ws: RawWs, every: float) -> None:
        self.ws = ws
        self.every = every
        self.metrics: list[float] = []
        self.pings: list[tuple[float, float]] = []  # (sent, round trip)
        self.errors: list[bytes] = []
        self._pong = trio.Event()

    async def run(self, until: float) -> None:
        with trio.move_on_at(trio.current_time() + max(until - time.monotonic(), 0)):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                while True:
                    self._pong = trio.Event()
                    sent = time.monotonic()
                    await self.ws.send_text(PING)
                    await self._pong.wait()
                    self.pings.append((sent, time.monotonic() - sent))
                    await trio.sleep(self.every)

    async def _read(self) -> None:
        while True:
            opcode, payload = await self.ws.read_frame()
            if opcode == OP_CLOSE:
                raise ConnectionError("the server closed the prober")
            # (the server's pings go unanswered: the JSON pings keep the heartbeat happy)
            if payload.startswith(b'{"type":"pong"'):
                self._pong.set()
            elif payload.startswith(b'{"type":"metrics"'):
                self.metrics.append(time.monotonic())
            elif payload.startswith(b'{"type":"error"'):
                self.errors.append(payload)


# --- the prober as a process of its own (the harness's own load must not delay it) ---


class ProbeProcess:
    """A :class:`Prober` in a child process pinned to core 1 (what the harness does
    must not delay it). It reports each ``metrics`` arrival and each ping round trip as
    a line, in ``time.monotonic()`` (``CLOCK_MONOTONIC``, shared by the host's
    processes), so a scenario can look at any stretch of time."""

    def __init__(self) -> None:
        self.metrics: list[float] = []
        self.pings: list[tuple[float, float]] = []  # (sent, round trip)

    async def run(
        self,
        port: int,
        channels: str,
        every: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        command = [sys.executable, "-m", "benchmarks.hostile_clients", str(port), channels]
        proc = await trio.lowlevel.open_process(
            [*command, str(every)], stdout=subprocess.PIPE, cwd=REPO_ROOT
        )
        try:
            assert proc.stdout is not None
            pending = b""
            started = False
            async for chunk in proc.stdout:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    record = json.loads(line)
                    if "m" in record:
                        self.metrics.append(record["m"])
                    elif "p" in record:
                        self.pings.append((record["p"], record["rtt"]))
                    elif not started:
                        started = True
                        task_status.started()
        finally:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()

    def figures(self, start: float, end: float) -> Figures:
        """Ticks and pings between *start* and *end* (monotonic seconds)."""
        arrivals = [t for t in self.metrics if start <= t <= end]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        rtts = sorted(r for sent, r in self.pings if start <= sent <= end)
        out: Figures = {
            "metrics_frames": len(arrivals),
            "tick_median_s": statistics.median(gaps) if gaps else None,
            "tick_max_s": max(gaps) if gaps else None,
            "late_ticks": sum(g > LATE_TICK for g in gaps),
            "pings": len(rtts),
            "ping_p50_ms": statistics.median(rtts) * 1000 if rtts else None,
            "ping_p99_ms": rtts[int(len(rtts) * 0.99)] * 1000 if rtts else None,
            "ping_max_ms": rtts[-1] * 1000 if rtts else None,
        }
        return out


async def _probe_main(port: int, channels: str, every: float) -> None:
    prober = Prober(await RawWs.connect(port, f"channels={channels}"), every)
    print(json.dumps({"ready": True}), flush=True)
    metrics_seen, pings_seen = 0, 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(prober.run, time.monotonic() + 24 * 3600)
        while True:
            await trio.sleep(0.05)
            for t in prober.metrics[metrics_seen:]:
                print(json.dumps({"m": t}))
            for sent, rtt in prober.pings[pings_seen:]:
                print(json.dumps({"p": sent, "rtt": rtt}))
            metrics_seen, pings_seen = len(prober.metrics), len(prober.pings)
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile_clients")
    parser.add_argument("port", type=int)
    parser.add_argument("channels")
    parser.add_argument("every", type=float)
    args = parser.parse_args()
    pin(0, 1)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        trio.run(_probe_main, args.port, args.channels, args.every)


if __name__ == "__main__":
    main()
