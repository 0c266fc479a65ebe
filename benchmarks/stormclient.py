"""A load-client process that can drop its connections and reconnect them all at once.

``python -m benchmarks.stormclient --cpu 1 --lib libwsload.so`` (run by
``benchmarks/storm.py``): the load client of ``benchmarks/loadclient.py`` (same
commands, the C receive loop) plus, for the reconnect storm,

- ``track``: follow every open connection's sequence of benchmark messages from
  ``expect`` on (the C engine counts holes and duplicates per connection);
- ``drop``: close every open connection at once; each remembers the next sequence
  number it expected;
- ``reconnect``: reconnect each dropped client at a random moment within ``spread``
  seconds of the drop (each its own timer, no client-side limit on handshakes in
  flight), with ``?since=topics:<offset>`` naming the last event it received when
  ``since_base`` is given (offset = ``since_base`` + sequence number), else with the
  plain URL. A ``503`` is retried after its ``Retry-After`` (plus up to ``spread`` s
  of jitter), any other failure after ``RETRY_DELAY`` s. Once open, a client is
  followed from its expected number on (holes: events it never got), and it has
  *resumed* once it has every event published before it reconnected: the offset its
  ``welcome`` names, or, from a server that replays nothing (no ``since_base``), as
  soon as it is open;
- ``storm_status``: clients open, followed and resumed, the latest resume time,
  holes, duplicates, retries and failures so far;
- ``resume_times``: when each followed client resumed (``CLOCK_MONOTONIC`` s).
"""

from __future__ import annotations

import heapq
import os
import random
import re
import socket
import time
from typing import Any, Final

from benchmarks.common import child_setup, reply
from benchmarks.loadclient import OPEN_C, STALLED, CEngine, Conn, LoadClient

#: Seconds before a client whose connection failed (not a 503) tries again.
RETRY_DELAY: Final = 1.0
_RETRY_AFTER: Final = re.compile(rb"\r\nretry-after:\s*(\d+)", re.IGNORECASE)


class StormConn(Conn):
    __slots__ = ("request",)

    def __init__(self, sock: socket.socket, idx: int, stall: bool) -> None:
        super().__init__(sock, idx, stall)
        self.request = b""


class StormClient(LoadClient):
    conn_class = StormConn

    def __init__(self, engine: CEngine) -> None:
        super().__init__(engine)
        self.cengine = engine
        self.expect: dict[int, int] = {}  # dropped client -> next sequence number
        self.due: list[tuple[float, int]] = []  # (when, client) reconnects to start
        self.requests: dict[int, bytes] = {}
        self.spread = 1.0
        self.base = -1  # offset of sequence number 0, minus 1 (-1: no resume)
        self.retries = 0
        self.refusals = 0
        self.failures = 0
        self.dropped_holes = 0
        self.dropped_dups = 0
        self.rng = random.Random(os.getpid())

    # --- commands ---

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd["op"]
        if op == "track":
            self._track(int(cmd.get("expect", 0)))
        elif op == "drop":
            self._drop()
        elif op == "reconnect":
            self._reconnect(cmd)
        elif op == "storm_status":
            reply({"op": op, **self._storm_status()})
        elif op == "resume_times":
            reply({"op": op, "times": self._resume_times()})
        else:
            super().command(cmd)

    def _open(self) -> list[Conn]:
        return [c for c in self.conns.values() if c.state == OPEN_C]

    def _track(self, expect: int) -> None:
        conns = self._open()
        for conn in conns:
            self.cengine.lib.wl_track(conn.fd, expect, 0.0, -1)
        reply({"op": "track", "tracked": len(conns)})

    def _tracked(self, conn: Conn) -> tuple[int, int, int, float]:
        out = (self.cengine.ctypes.c_double * 4)()
        self.cengine.lib.wl_tracked(conn.fd, out)
        return int(out[0]), int(out[1]), int(out[2]), float(out[3])

    def _drop(self) -> None:
        conns = self._open()
        self.expect = {}
        for conn in conns:
            expect, holes, dups, _ = self._tracked(conn)
            self.expect[conn.idx] = expect
            self.dropped_holes += holes
            self.dropped_dups += dups
        t_drop = time.monotonic()
        for conn in conns:
            self._close(conn)
        reply({"op": "drop", "dropped": len(conns), "t_drop": t_drop})

    def _reconnect(self, cmd: dict[str, Any]) -> None:
        self.addr = (cmd["host"], int(cmd["port"]))
        self.spread = float(cmd["spread"])
        base = cmd.get("since_base")
        self.base = -1 if base is None else int(base)
        t0 = float(cmd["t_drop"])
        for idx, expect in self.expect.items():
            query = "" if base is None else f"?since=topics:{int(base) + expect}"
            self.requests[idx] = self.request.replace(
                f"GET {cmd['path']} ".encode(), f"GET {cmd['path']}{query} ".encode(), 1
            )
            heapq.heappush(self.due, (t0 + self.rng.uniform(0, self.spread), idx))
        reply({"op": "reconnect", "scheduled": len(self.expect)})

    def _storm_status(self) -> dict[str, Any]:
        out = (self.cengine.ctypes.c_double * 5)()
        self.cengine.lib.wl_track_totals(out)
        return {
            "open": len(self._open()),
            "tracked": int(out[0]),
            "resumed": int(out[1]),
            "t_last_resumed": float(out[2]),
            "holes": int(out[3]) + self.dropped_holes,
            "dups": int(out[4]) + self.dropped_dups,
            "waiting": len(self.due) + self.in_flight,
            "refusals": self.refusals,
            "retries": self.retries,
            "failures": self.failures,
        }

    def _resume_times(self) -> list[float]:
        return [self._tracked(conn)[3] for conn in self._open() if conn.idx in self.expect]

    # --- hooks ---

    def _request_for(self, conn: Conn) -> bytes:
        return self.requests.get(conn.idx, self.request)

    def _schedule(self, idx: int, when: float) -> None:
        self.retries += 1
        heapq.heappush(self.due, (when, idx))

    def _refused(self, conn: Conn, head: bytes) -> bool:
        if conn.idx not in self.expect or not head.startswith(b"HTTP/1.1 503"):
            return False
        found = _RETRY_AFTER.search(head)
        delay = float(found.group(1)) if found else RETRY_DELAY
        self.in_flight -= 1
        self._close(conn)
        self.refusals += 1
        self._schedule(conn.idx, time.monotonic() + delay + self.rng.uniform(0, self.spread))
        return True

    def _handshake_failed(self, conn: Conn, reason: str) -> None:
        if conn.idx not in self.expect or conn.state == STALLED:
            super()._handshake_failed(conn, reason)
            return
        self.in_flight -= 1
        self._close(conn)
        self.failures += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self._schedule(conn.idx, time.monotonic() + RETRY_DELAY)

    def _opened(self, conn: Conn, now: float) -> None:
        expect = self.expect.get(conn.idx)
        if expect is not None:
            self.cengine.lib.wl_track(conn.fd, expect, now, self.base)

    def _poll_timeout(self) -> float:
        if not self.due:
            return 1.0
        return max(0.0, min(1.0, self.due[0][0] - time.monotonic()))

    def _tick(self, now: float) -> None:
        due = self.due
        while due and due[0][0] <= now:
            _, idx = heapq.heappop(due)
            self._start_one(idx, False)


def main() -> None:
    import argparse
    import ctypes
    import resource

    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--lib", required=True, help="the compiled wsload.c")
    args = parser.parse_args()
    child_setup(args.cpu)
    engine = CEngine(args.lib, resource.getrlimit(resource.RLIMIT_NOFILE)[0] + 16)
    lib = engine.lib
    lib.wl_track.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_int64]
    lib.wl_tracked.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
    lib.wl_track_totals.argtypes = [ctypes.POINTER(ctypes.c_double)]
    client = StormClient(engine)
    reply({"ready": True, "pid": os.getpid()})
    client.loop()


if __name__ == "__main__":
    main()
