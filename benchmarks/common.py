"""What every benchmark process shares: process set-up, the payload and the control protocol.

Control protocol: the harness writes one JSON object per line to a child's stdin and
reads one JSON object per line (the reply) from its stdout. A child exits when its
stdin reaches EOF, so it never outlives the harness.

Payload: every server carries the same ~1 KB metrics snapshot (the takhin-ws
``metrics`` envelope). The first topic's name is the *marker* ``bm:<run>:<seq>:<us>`` (fixed width):
the run id, the message's sequence number and its planned send time in microseconds
of ``CLOCK_MONOTONIC`` (``time.monotonic()``, shared by every process on the host),
from which the load client computes publish-to-receive latency.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import hashlib
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

from takhin_ws import (
    ClusterHealth,
    ConsumerLag,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicLag,
    TopicStats,
)
from takhin_ws.protocol import Envelope, encode

WS_PATH: Final = "/api/monitoring/ws"
MARKER_PREFIX: Final = b'"bm:'
WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --- process set-up ---


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin(cpu: int | None) -> None:
    """Pin this process to one CPU (no-op if *cpu* is None or it does not exist)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})


def child_setup(cpu: int | None) -> None:
    """Common start of every child process: fd limit, CPU pin, Ctrl-C left to the harness."""
    raise_nofile()
    pin(cpu)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def monotonic_us() -> int:
    return int(time.monotonic() * 1_000_000)


# --- payload ---


def marker(run: int, seq: int, planned: float) -> str:
    """Fixed width, so the load client parses it by slicing: ``bm:RRRR:SSSSSS:U{16}``."""
    return f"bm:{run % 10_000:04d}:{seq:06d}:{int(planned * 1_000_000):016d}"


def run_tag(run: int) -> bytes:
    """The run field of the marker, as it appears in the payload."""
    return b"%04d" % (run % 10_000)


#: Offsets of the marker's fields from its opening quote.
MARK_RUN: Final = 4
MARK_SEQ: Final = 9
MARK_US: Final = 16
MARK_END: Final = 32


def template_metrics(name: str = "orders") -> MonitoringMetrics:
    """A realistic ~1 KB snapshot (one topic, one lagging group with 4 partitions)."""
    return MonitoringMetrics(
        throughput=Throughput(
            produce_rate=1523.8466358552405,
            fetch_rate=1519.25,
            produce_bytes=1_561_516.477383333,
            fetch_bytes=1_555_665.267515813,
        ),
        latency=Latency(
            produce_p50=0.0030884658917779387,
            produce_p95=0.008750845868530763,
            produce_p99=0.0383530380897797,
            fetch_p50=0.005894448479118649,
            fetch_p95=0.02428849747128063,
            fetch_p99=0.09235066233491046,
        ),
        topic_stats=(
            TopicStats(
                name=name,
                partitions=4,
                total_messages=17_555_893,
                total_bytes=5_798_213_718,
                produce_rate=1523.8466358552405,
                fetch_rate=1519.25,
            ),
        ),
        consumer_lags=(
            ConsumerLag(
                group_id="billing-service",
                total_lag=3_287,
                topic_lags=(
                    TopicLag(
                        topic="orders",
                        total_lag=3_287,
                        partition_lags=tuple(
                            PartitionLag(
                                partition=p,
                                current_offset=3_012_902 + 1_000_003 * p,
                                log_end_offset=3_012_902 + 1_000_003 * p + lag,
                                lag=lag,
                            )
                            for p, lag in enumerate((634, 202, 1494, 957))
                        ),
                    ),
                ),
            ),
        ),
        cluster_health=ClusterHealth(
            active_connections=7,
            total_topics=1,
            total_partitions=4,
            total_consumers=3,
            disk_usage_bytes=5_798_213_718,
            memory_usage_bytes=113_704_960,
            goroutine_count=72,
        ),
        timestamp=int(time.time()),
    )


def template_envelope_dict() -> dict[str, Any]:
    """The takhin-ws wire form of the snapshot as a dict (what the peers serialise)."""
    envelope = Envelope(
        payload=template_metrics(),
        timestamp=int(time.time()),
        channel="metrics",
        offset=0,
        epoch="0123456789abcdef",
    )
    parsed: dict[str, Any] = json.loads(encode(envelope))
    return parsed


# --- WebSocket bits ---


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


def text_frame_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


# --- control protocol (blocking side, used by the asyncio/selectors children) ---


def reply(obj: dict[str, Any]) -> None:
    """Write one reply line to stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    t = os.times()
    return t.user + t.system


class StdinCommands:
    """Non-blocking reader of the harness's JSON-lines commands on a child's stdin."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def read(self) -> list[dict[str, Any]]:
        """The complete commands available now (none if nothing is ready); sets ``eof``
        once the harness has closed the pipe."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not data:
            self.eof = True
            return []
        self.buf += data
        commands = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                commands.append(json.loads(line))
        return commands


def add_freeze_option(parser: argparse.ArgumentParser) -> None:
    """``--no-freeze``: leave the heap to the garbage collector's full collections (as an
    embedding application may); by default a benchmark freezes what it holds once set
    up, as ``python -m takhin_ws`` does once started (``args.freeze``)."""
    parser.add_argument(
        "--no-freeze",
        dest="freeze",
        action="store_false",
        help="leave the heap to the garbage collector's full collections (an embedder's)",
    )


@contextlib.contextmanager
def frozen_heap(freeze: bool = True) -> Iterator[None]:
    """With *freeze*, the heap as ``python -m takhin_ws`` leaves it once started for the
    block (collected, then ``config.cli.freeze_startup``: what the process holds out of
    full collections, and those rarer); after it, unfrozen and the collector's
    thresholds as they were, so the next measure (or test) starts from the same
    collector."""
    from takhin_ws.config.cli import freeze_startup  # the server's modules: only here

    thresholds = gc.get_threshold()
    if freeze:
        gc.collect()
        freeze_startup()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
