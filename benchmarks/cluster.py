"""The cluster-size axis: what one tick of the ``prometheus`` source costs as clusters grow.

For each size of :data:`benchmarks.exposition.SIZES` (8x4/4 up to 3,000 topics x 12
partitions / 1,000 groups) a realistic broker exposition is served by a child process
(``benchmarks.exposition``, counters advancing in real time) and measured twice:

- ``source``: in this process, :class:`takhin_ws.sources.PrometheusSource` collects
  ``--ticks`` times, ``--interval`` apart; each tick's CPU time (the whole process,
  worker threads included) is split into *collect* (scrape, scan, compute) and *publish*
  (diff against the previous snapshot, encode the ``metrics`` envelope). The JSON bytes
  of the frame, and its size compressed as the server sends it to a client that
  negotiated permessage-deflate (``takhin_ws.wire.websocket.deflate.deflate``, once per
  publish), are recorded, and the rates are checked against the exposition's known ones.
- ``server``: ``python -m takhin_ws --source prometheus`` at ``--interval`` with one
  WebSocket client: the seconds between the client's ``metrics`` frames (and how many
  were stale) and the server process's CPU per frame.

The server under test (or this process) runs on core 0, the exporter and the client on
core 1 (where there are two). ``python -m benchmarks.cluster --help`` lists the flags.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import psutil
import trio

from benchmarks.exposition import SIZES, Shape
from takhin_ws.core.metrics.changes import diff
from takhin_ws.core.metrics.snapshot import Snapshot
from takhin_ws.protocol import Envelope, encode
from takhin_ws.sources import PrometheusSource, ScrapeError
from takhin_ws.wire.websocket.deflate import deflate

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
#: Body limit for the in-process source (the server uses its own setting).
MAX_BODY: Final = 256 * 1024 * 1024
#: Share of the interval a scrape may take (as ``sources.source_for`` gives it).
SCRAPE_SHARE: Final = 0.9
SERVING: Final = re.compile(rb"takhin-ws serving http://127\.0\.0\.1:(\d+)/")
STARTUP_TIMEOUT: Final = 60.0


def deflated_size(payload: bytes) -> int:
    """Bytes of *payload* as the server sends it to a client that negotiated
    permessage-deflate (its compress-once function)."""
    return len(deflate(payload))


#: Pin the measured process to core 0, the exporter and client to core 1 (--no-pin).
PIN = True


def _pin(pid: int, core: int) -> None:
    if not PIN:
        return
    with contextlib.suppress(OSError, AttributeError):
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(pid, {core})


@contextlib.contextmanager
def exporter(shape: Shape, interval: float, scrapes: int) -> Iterator[dict[str, Any]]:
    """A ``benchmarks.exposition`` child serving *shape*; yields its JSON hello line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.exposition",
            "--size",
            str(shape),
            "--interval",
            str(interval),
            "--ahead",
            str(scrapes),
            "--total",
            str(scrapes),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        _pin(proc.pid, 1)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"exporter for {shape} exited with {proc.wait()}")
        yield json.loads(line)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the source, in this process ---


@attrs.frozen
class Tick:
    failed: str | None
    collect_cpu: float
    publish_cpu: float
    collect_wall: float
    json_bytes: int
    wire_bytes: int
    produce_rate: float
    fetch_rate: float


async def _source_ticks(url: str, ticks: int, interval: float) -> list[Tick]:
    out: list[Tick] = []
    previous: Snapshot | None = None
    async with PrometheusSource(
        url, timeout=interval * SCRAPE_SHARE, max_body_bytes=MAX_BODY
    ) as source:
        start = trio.current_time()
        for index in range(ticks):
            await trio.sleep_until(start + index * interval)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            try:
                snapshot = await source.collect()
            except ScrapeError as exc:
                cpu1, wall1 = time.process_time(), time.perf_counter()
                out.append(Tick(str(exc), cpu1 - cpu0, 0.0, wall1 - wall0, 0, 0, 0.0, 0.0))
                continue
            cpu1, wall1 = time.process_time(), time.perf_counter()
            if previous is not None:
                diff(previous, snapshot)
            frame = encode(Envelope(payload=snapshot.metrics, timestamp=int(time.time())))
            cpu2 = time.process_time()
            previous = snapshot
            throughput = snapshot.metrics.throughput
            out.append(
                Tick(
                    failed=None,
                    collect_cpu=cpu1 - cpu0,
                    publish_cpu=cpu2 - cpu1,
                    collect_wall=wall1 - wall0,
                    json_bytes=len(frame),
                    wire_bytes=deflated_size(frame),
                    produce_rate=throughput.produce_rate,
                    fetch_rate=throughput.fetch_rate,
                )
            )
    return out


def measure_source(shape: Shape, ticks: int, interval: float) -> dict[str, Any]:
    with exporter(shape, interval, ticks + 1) as hello:
        _pin(0, 0)
        result = trio.run(_source_ticks, hello["url"], ticks, interval)
    failures = [t.failed for t in result if t.failed]
    good = [t for t in result if not t.failed]
    # the first good tick has no rates (and builds the scanner's memory)
    steady = good[1:]
    expected = hello["expected"]
    if not steady:
        return {
            "size": str(shape),
            "samples": hello["samples"],
            "failed": len(failures),
            "first_failure": failures[0] if failures else None,
            "collect_cpu_ms": statistics.median(t.collect_cpu for t in result) * 1000,
            "collect_wall_ms": statistics.median(t.collect_wall for t in result) * 1000,
        }
    return {
        "size": str(shape),
        "samples": hello["samples"],
        "failed": len(failures),
        "first_collect_cpu_ms": good[0].collect_cpu * 1000,
        "collect_cpu_ms": statistics.median(t.collect_cpu for t in steady) * 1000,
        "collect_cpu_max_ms": max(t.collect_cpu for t in steady) * 1000,
        "publish_cpu_ms": statistics.median(t.publish_cpu for t in steady) * 1000,
        "collect_wall_ms": statistics.median(t.collect_wall for t in steady) * 1000,
        "json_bytes": steady[-1].json_bytes,
        "wire_bytes": steady[-1].wire_bytes,
        "produce_rate_error": max(
            abs(t.produce_rate / expected["produceRate"] - 1) for t in steady
        ),
        "fetch_rate_error": max(abs(t.fetch_rate / expected["fetchRate"] - 1) for t in steady),
    }


# --- the real server ---


def measure_server(shape: Shape, frames: int, interval: float) -> dict[str, Any]:
    from websockets.sync.client import connect

    with exporter(shape, interval, frames + 3) as hello:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "takhin_ws",
                "--port",
                "0",
                "--source",
                "prometheus",
                "--prometheus-url",
                hello["url"],
                "--interval",
                str(interval),
            ],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
        )
        try:
            _pin(proc.pid, 0)
            _pin(0, 1)
            port = _wait_serving(proc)
            server = psutil.Process(proc.pid)
            url = f"ws://127.0.0.1:{port}/api/monitoring/ws?channels=metrics&format=envelope"
            arrivals: list[float] = []
            stale = 0
            cpu: list[float] = []
            sizes: list[int] = []
            deadline = time.monotonic() + (frames + 5) * interval * 4 + STARTUP_TIMEOUT
            with connect(url, max_size=None, open_timeout=STARTUP_TIMEOUT) as ws:
                while len(arrivals) < frames + 1 and time.monotonic() < deadline:
                    raw = ws.recv(timeout=max(deadline - time.monotonic(), 0.1))
                    if isinstance(raw, str):
                        raw = raw.encode()
                    if not raw.startswith(b'{"type":"metrics"'):
                        continue
                    times = server.cpu_times()
                    arrivals.append(time.monotonic())
                    cpu.append(times.user + times.system)
                    sizes.append(len(raw))
                    stale += b'"stale":true' in raw
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # the first frame is the snapshot sent on connect: measure from the second one
    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]
    per_frame = (cpu[-1] - cpu[1]) / (len(cpu) - 2) if len(cpu) > 2 else math.nan
    return {
        "size": str(shape),
        "frames": len(gaps),
        "gap_median_s": statistics.median(gaps) if gaps else math.nan,
        "gap_max_s": max(gaps) if gaps else math.nan,
        "stale": stale,
        "server_cpu_per_frame_ms": per_frame * 1000,
        "frame_bytes": sizes[-1] if sizes else 0,
    }


def _wait_serving(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"takhin-ws exited before serving: {seen.decode()[-500:]}")
        seen += line
        if match := SERVING.search(line):
            # keep draining stderr so the server never blocks on a full pipe
            import threading

            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return int(match.group(1))
    raise RuntimeError("takhin-ws did not start serving")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument(
        "--sizes", nargs="+", type=Shape.parse, default=list(SIZES), help="TxP/G ..."
    )
    parser.add_argument("--modes", nargs="+", choices=("source", "server"), default=["source"])
    parser.add_argument("--ticks", type=int, default=6, help="collects per size (source)")
    parser.add_argument("--frames", type=int, default=10, help="frames per size (server)")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the scheduler place every process (on a machine busy with other work)",
    )
    args = parser.parse_args(argv)
    global PIN
    PIN = args.pin
    for shape in args.sizes:
        for mode in args.modes:
            if mode == "source":
                row = measure_source(shape, args.ticks, args.interval)
            else:
                row = measure_server(shape, args.frames, args.interval)
            row["mode"] = mode
            row["loadavg_1m"] = os.getloadavg()[0]  # other sessions share the machine
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()
                    ),
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
