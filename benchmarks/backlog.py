"""CPU of the backlog path of the write-through transport, in one process.

``python -m benchmarks.backlog [--peers 500] [--items 200] [--rounds 3]`` backs up
``--peers`` real ``SocketTransport``s (a 1 MiB frame each, over socket pairs the test
reads only later), then offers ``--items`` 1.4 KB events to each (they queue in the
outbound buffer), and measures the CPU per queued offer; then it reads every peer while
the flushers drain, and measures the CPU per item drained (flusher and reader together).
``benchmarks/micro.py`` measures the fast path; this, the path of a backed-up client.
"""

from __future__ import annotations

import argparse
import socket
import time
from typing import Final

import trio
import trio.lowlevel

from takhin_ws.lowlevel import Outbound
from takhin_ws.net.transport import SocketTransport

BIG: Final = 1 << 20
EVENT_PADDING: Final = 1300
READ_BYTES: Final = 1 << 20


def _read_all(peers: list[socket.socket], got: list[int]) -> None:
    for k, peer in enumerate(peers):
        try:
            while data := peer.recv(READ_BYTES):
                got[k] += len(data)
        except BlockingIOError:
            pass


async def one_round(n: int, m: int) -> tuple[float, float]:
    pairs = [socket.socketpair() for _ in range(n)]
    peers = [b for _, b in pairs]
    for peer in peers:
        peer.setblocking(False)
    items = [
        Outbound.of(b'{"type":"topic_created","n":%d}' % i + b"x" * EVENT_PADDING, "topics", i + 1)
        for i in range(m)
    ]
    big = Outbound.of(b"B" * BIG)
    try:
        async with trio.open_nursery() as nursery:
            transports = [SocketTransport(a, nursery, queue_size=max(m, 1)) for a, _ in pairs]
            for t in transports:
                t.offer(big)
            t0 = time.process_time()
            for item in items:
                for t in transports:
                    t.offer(item)
            offer_us = (time.process_time() - t0) / (n * m) * 1e6
            want = len(big.frame) + sum(len(i.frame) for i in items)
            got = [0] * n
            t0 = time.process_time()
            while min(got) < want:
                _read_all(peers, got)
                await trio.lowlevel.checkpoint()
            drain_us = (time.process_time() - t0) / (n * m) * 1e6
            for t in transports:
                t.abort("done")
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    return offer_us, drain_us


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog", description=__doc__)
    parser.add_argument("--peers", type=int, default=500)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    for _ in range(args.rounds):
        offer_us, drain_us = trio.run(one_round, args.peers, args.items)
        print(f"offer into a backlog {offer_us:.3f} us/item   drained {drain_us:.3f} us/item")


if __name__ == "__main__":
    main()
