"""``python -m benchmarks.inbound``: server CPU to receive one big client message.

Issue 22: reading a client message must cost CPU linear in its size. For each size
(default 1, 4, 16 and 64 MiB) and each form (plain, and permessage-deflate compressed),
a fresh connection sends one masked text frame holding a JSON ``ping`` padded with
whitespace to the size, and waits for the answer (``pong``). The CPU time the server
process spent between the first byte sent and the answer arriving is the figure (read
from ``/proc/<pid>/task/*/schedstat``, in nanoseconds; the client's own work, masking
and compressing, is done before and not counted). The best of ``--repeat`` trials is reported.

Both servers run as child processes on loopback, one after the other:

- ``takhin-ws``: ``python -m takhin_ws --max-message-size 67108864 --interval 3600
  --ping-interval 3600 --ping-timeout 7200`` (the client answers no ping);
- ``websockets``, the peer: the ``websockets`` package's asyncio server with the same
  size limit and permessage-deflate, answering each message with ``{"type":"pong"}``
  after ``orjson.loads`` (the same work takhin-ws does with a ping).

The padding mixes the four JSON whitespace characters (pseudo-random, seeded), so the
compressed form inflates about 4:1 rather than a thousandfold.

Example (from the repository root; about 1 minute)::

    .venv/bin/python -m benchmarks.inbound
    .venv/bin/python -m benchmarks.inbound --sizes 1 4 16 --repeat 3 --servers takhin-ws
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import re
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import orjson

from benchmarks.common import WS_PATH

MIB: Final = 1024 * 1024
#: The largest message the server is configured for (takhin-ws' ``--max-message-size``
#: ceiling).
LIMIT: Final = 64 * MIB
PING: Final = b'{"type":"ping"}'
WHITESPACE: Final = b" \t\n\r"
#: The client compresses with zlib's largest window: its offer has no
#: ``client_max_window_bits``, so no server may ask for a smaller one.
FULL_WINDOW: Final = 15
#: Longest wait (s) for a child server to listen, or for one answer (``--timeout``).
WAIT: Final = 600.0


def cpu_of(pid: int) -> float:
    """CPU seconds every thread of process *pid* has run so far, to the nanosecond
    (``/proc/<pid>/task/*/schedstat``; ``/proc/<pid>/stat`` counts in 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total / 1e9


def padded_ping(size: int, seed: int = 22) -> bytes:
    """A JSON ping of exactly *size* bytes: the four whitespace characters, mixed."""
    table = bytes(WHITESPACE[byte % len(WHITESPACE)] for byte in range(256))
    return PING + random.Random(seed).randbytes(size - len(PING)).translate(table)


def mask(data: bytes, key: bytes) -> bytes:
    size = len(data)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        size, "little"
    )


def frame(payload: bytes, *, compressed: bool) -> bytes:
    """One final, masked client text frame (RSV1 when *compressed*)."""
    first = 0xC1 if compressed else 0x81
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + mask(payload, key)


def deflated(message: bytes, window_bits: int) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]  # RFC 7692 7.2.1: without the final empty block's tail


class Client:
    """A blocking WebSocket client on one connection, just enough for this benchmark."""

    def __init__(self, port: int, *, deflate: bool, timeout: float = WAIT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        self.sock.sendall(
            (
                f"GET {WS_PATH}?channels= HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n{offer}\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        extensions = re.search(rb"(?im)^sec-websocket-extensions:(.*)$", head)
        if deflate and extensions is None:
            raise RuntimeError("permessage-deflate was not accepted")
        bits = re.search(
            rb"client_max_window_bits=(\d+)", extensions.group(1) if extensions else b""
        )
        self.window_bits = int(bits.group(1)) if bits else 15

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise RuntimeError("the server closed the connection")
        self.buf += data

    def message(self) -> bytes:
        """The next data frame's payload (server frames are small and unfragmented)."""
        while True:
            while len(self.buf) < 2:
                self._fill()
            first, second = self.buf[0], self.buf[1]
            length, start = second & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(self.buf[2:10], "big"), 10
            while len(self.buf) < start + length:
                self._fill()
            payload, self.buf = self.buf[start : start + length], self.buf[start + length :]
            if first & 0x40:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            if first & 0x0F in (0x1, 0x2):
                return payload
            if first & 0x0F == 0x8:
                raise RuntimeError(f"closed by the server: {payload!r}")

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def child(server: str) -> Iterator[tuple[int, int]]:
    """Run *server* in a child process; its (pid, port)."""
    port = free_port()
    if server == "takhin-ws":
        argv = ["-m", "takhin_ws", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--max-message-size", str(LIMIT), "--interval", "3600", "--log-level", "warning"]
        # the client answers no ping: a slow server must not drop it while it reads
        argv += ["--ping-interval", "3600", "--ping-timeout", "7200"]
    else:
        argv = ["-m", "benchmarks.inbound", "--serve-peer", str(port)]
    proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{server} did not start") from None
                time.sleep(0.05)
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def one_message(
    pid: int, port: int, data: bytes, *, compressed: bool, first: bool, timeout: float
) -> float:
    """Server CPU seconds to take the frame *data* and answer it, on a fresh connection
    (the frame is built before: a client silent for the ping timeout is dropped)."""
    client = Client(port, deflate=compressed, timeout=timeout)
    try:
        if compressed and client.window_bits != FULL_WINDOW:
            raise RuntimeError(f"the server asked for a {client.window_bits}-bit window")
        if first:
            client.message()  # takhin-ws' welcome
        time.sleep(0.05)  # the handshake's work is done
        before = cpu_of(pid)
        client.sock.sendall(data)
        answer = client.message()
        spent = cpu_of(pid) - before
    finally:
        client.close()
    if b"pong" not in answer:
        raise RuntimeError(f"unexpected answer {answer[:200]!r}")
    return spent


def measure(
    server: str, sizes: list[int], repeat: int, timeout: float
) -> dict[tuple[int, bool], float]:
    results: dict[tuple[int, bool], float] = {}
    with child(server) as (pid, port):
        for size in sizes:
            message = padded_ping(size * MIB)
            for compressed in (False, True):
                payload = deflated(message, FULL_WINDOW) if compressed else message
                data = frame(payload, compressed=compressed)
                best = min(
                    one_message(
                        pid,
                        port,
                        data,
                        compressed=compressed,
                        first=server == "takhin-ws",
                        timeout=timeout,
                    )
                    for _ in range(repeat)
                )
                results[size, compressed] = best
                form = "compressed" if compressed else "plain"
                print(f"  {server:10} {size:3} MiB {form:10} {best:8.3f} s", file=sys.stderr)
    return results


async def serve_peer(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client just drops the socket
            async for message in ws:
                orjson.loads(message)
                await ws.send('{"type":"pong"}')

    async with serve(handler, "127.0.0.1", port, max_size=LIMIT, compression="deflate"):
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inbound", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64], help="MiB")
    parser.add_argument("--repeat", type=int, default=3, help="trials per figure (best kept)")
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=("takhin-ws", "websockets"),
        default=["takhin-ws", "websockets"],
    )
    parser.add_argument(
        "--timeout", type=float, default=WAIT, help="seconds one message may take (600)"
    )
    parser.add_argument("--serve-peer", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer is not None:
        asyncio.run(serve_peer(args.serve_peer))
        return
    if any(not 1 <= size <= LIMIT // MIB for size in args.sizes):
        parser.error(f"sizes are 1 to {LIMIT // MIB} MiB")
    results = {s: measure(s, args.sizes, args.repeat, args.timeout) for s in args.servers}
    print("| size | form | " + " | ".join(f"{s} CPU s" for s in args.servers), end="")
    ratio = len(args.servers) == 2
    print(" | ratio | takhin-ws ms/MiB |" if ratio else " | ms/MiB |")
    print("|---" * (3 + len(args.servers) + ratio) + "|")
    for size in args.sizes:
        for compressed in (False, True):
            row = [results[s][size, compressed] for s in args.servers]
            cells = [f"{size} MiB", "compressed" if compressed else "plain"]
            cells += [f"{value:.3f}" for value in row]
            if ratio:
                cells.append(f"{row[0] / row[1]:.2f}" if row[1] else "-")
            cells.append(f"{row[0] * 1000 / size:.0f}")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
