"""Realistic Takhin broker expositions of any size, and a local HTTP server for them.

:class:`Broker` models one broker of *topics* x *partitions* with *groups* consumer
groups and renders, for any time ``t`` (seconds since it started), the Prometheus text
exposition a Takhin 2.9 broker would serve then: every ``takhin_*`` family of the facts
sheet (counters, gauges, the latency histograms with Takhin's buckets), the Go runtime
families, in the Go client's style (families sorted by name, label pairs sorted by name,
``le`` last, ``strconv.FormatFloat(v, 'g', -1, 64)`` numbers such as ``1.234567e+06``).

Counters advance linearly at known per-series rates, so the rates a source should
report are known exactly (:meth:`Broker.expected`).

``python -m benchmarks.exposition --size 1000x12/300`` serves it on
``http://127.0.0.1:PORT/metrics`` (printed as one JSON line on stdout; gzip when the
client accepts it) until its stdin closes: scrape *k* gets the exposition at
``t = k * --interval``, rendered ahead of time. ``--write FILE`` writes one rendering.
"""

from __future__ import annotations

import argparse
import collections
import decimal
import gzip
import json
import math
import random
import re
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import attrs

#: Takhin's latency buckets (seconds); the Kafka request histogram adds 10 s.
LATENCY_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUEST_BUCKETS: Final = (*LATENCY_BUCKETS, 10.0)
#: Kafka API keys a broker answers (Produce, Fetch, ListOffsets, Metadata, OffsetCommit...).
API_KEYS: Final = (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 32)
#: Every fourth group reads a second topic.
SECOND_TOPIC_EVERY: Final = 4
#: Gzip level of served bodies (Go's promhttp uses the default, 6; a Python exporter
#: needs a second for 25 MiB at that level, so the benchmark uses the fastest).
GZIP_LEVEL: Final = 1

#: Integers below this are exact doubles (their digits are the shortest form).
_EXACT: Final = 2**53
_SIZE: Final = re.compile(r"(\d+)x(\d+)/(\d+)")


@attrs.frozen
class Shape:
    """A cluster size: *topics* x *partitions* per topic, *groups* consumer groups."""

    topics: int
    partitions: int
    groups: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        match = _SIZE.fullmatch(text)
        if match is None:
            raise ValueError(f"size must look like 1000x12/300, got {text!r}")
        return cls(*(int(part) for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.topics}x{self.partitions}/{self.groups}"


#: The cluster-size axis of the benchmarks (issue 12).
SIZES: Final = tuple(Shape.parse(s) for s in ("8x4/4", "200x6/50", "1000x12/300", "3000x12/1000"))


def go_float(value: float) -> str:
    """*value* as the Go client writes it (``strconv.FormatFloat(v, 'g', -1, 64)``):
    the shortest digits, in exponent form below 1e-4 and from 1e6 up."""
    if value == 0:
        return "0"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if 1e-4 <= abs(value) < 1e6:
        return str(int(value)) if value.is_integer() else repr(value)
    if value.is_integer() and abs(value) < _EXACT:
        whole = str(abs(int(value)))
        power = len(whole) - 1
        digits = whole.rstrip("0")
    else:
        exact = decimal.Decimal(repr(abs(value))).normalize()
        digits = "".join(map(str, exact.as_tuple().digits))
        power = len(digits) - 1 + int(exact.as_tuple().exponent)
    sign = "-" if value < 0 else ""
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"


@attrs.define
class _Series:
    """One sample line: a fixed prefix and ``value(t) = base + rate * t`` (whole numbers
    unless *fractional*: counts are)."""

    prefix: str
    base: float
    rate: float
    fractional: bool = False

    def value(self, t: float) -> float:
        value = self.base + self.rate * t
        return value if self.fractional else float(math.floor(value))


def _labels(**pairs: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items())) + "}"


class Broker:
    """A deterministic Takhin broker of a given :class:`Shape` (see the module docstring)."""

    def __init__(self, shape: Shape, *, seed: int = 0) -> None:
        self.shape = shape
        rng = random.Random(seed)
        self.topics = [f"cluster-{i:05d}.events" for i in range(shape.topics)]
        self.groups = [f"consumer-group-{i:05d}" for i in range(shape.groups)]
        # per topic-partition produce rate (messages/s) and message size
        self.produce: dict[tuple[str, int], float] = {}
        self.size: dict[str, float] = {}
        for topic in self.topics:
            per_topic = 10 ** rng.uniform(0.0, 2.5)
            self.size[topic] = rng.choice((180.0, 512.0, 1024.0, 2048.0))
            for p in range(shape.partitions):
                self.produce[(topic, p)] = per_topic / shape.partitions * rng.uniform(0.8, 1.2)
        self.start_offset = {key: float(rng.randint(10_000, 50_000_000)) for key in self.produce}
        self.reads: dict[str, list[str]] = {}
        for i, group in enumerate(self.groups):
            read = [self.topics[i % shape.topics]]
            if i % SECOND_TOPIC_EVERY == 0 and shape.topics > 1:
                read.append(self.topics[(i + shape.topics // 2) % shape.topics])
            self.reads[group] = read
        self.members = {
            g: rng.randint(0, 4) if i % 10 == 0 else rng.randint(1, 4)
            for i, g in enumerate(self.groups)
        }
        self.lag = {
            (g, t, p): float(rng.randint(0, 5_000))
            for g, topics in self.reads.items()
            for t in topics
            for p in range(shape.partitions)
        }
        self._families = self._build(rng)

    # --- what a source should report ---

    def expected(self) -> dict[str, float]:
        """The throughput a correct source reports (messages/s and bytes/s)."""
        produce = sum(self.produce.values())
        fetch = sum(
            self.produce[(t, p)]
            for topics in self.reads.values()
            for t in topics
            for p in range(self.shape.partitions)
        )
        produce_bytes = sum(r * self.size[t] for (t, _), r in self.produce.items())
        fetch_bytes = sum(
            self.produce[(t, p)] * self.size[t]
            for topics in self.reads.values()
            for t in topics
            for p in range(self.shape.partitions)
        )
        return {
            "produceRate": produce,
            "fetchRate": fetch,
            "produceBytes": produce_bytes,
            "fetchBytes": fetch_bytes,
        }

    # --- the families ---

    def _build(self, rng: random.Random) -> list[tuple[str, str, str, list[_Series]]]:
        shape = self.shape
        tp = [(t, p) for t in self.topics for p in range(shape.partitions)]
        fetch_rate: dict[tuple[str, int], float] = dict.fromkeys(tp, 0.0)
        for topics in self.reads.values():
            for t in topics:
                for p in range(shape.partitions):
                    fetch_rate[(t, p)] += self.produce[(t, p)]
        by_topic = {
            t: sum(self.produce[(t, p)] for p in range(shape.partitions)) for t in self.topics
        }
        fetch_by_topic = {
            t: sum(fetch_rate[(t, p)] for p in range(shape.partitions)) for t in self.topics
        }
        families: list[tuple[str, str, str, list[_Series]]] = []

        def family(name: str, kind: str, help_: str, series: list[_Series]) -> None:
            families.append((name, kind, help_, series))

        def tp_series(
            name: str, rate: Callable[[str, int], float], base: Callable[[str, int], float]
        ) -> list[_Series]:
            return [
                _Series(name + _labels(partition=str(p), topic=t), base(t, p), rate(t, p))
                for t, p in tp
            ]

        def t_series(name: str, rate: Callable[[str], float]) -> list[_Series]:
            return [
                _Series(name + _labels(topic=t), rate(t) * 1000.0, rate(t)) for t in self.topics
            ]

        family(
            "takhin_produce_messages_total",
            "counter",
            "Total number of messages produced",
            tp_series(
                "takhin_produce_messages_total",
                lambda t, p: self.produce[(t, p)],
                lambda t, p: self.start_offset[(t, p)],
            ),
        )
        family(
            "takhin_fetch_messages_total",
            "counter",
            "Total number of messages fetched",
            tp_series(
                "takhin_fetch_messages_total",
                lambda t, p: fetch_rate[(t, p)],
                lambda t, p: self.start_offset[(t, p)] * 0.9,
            ),
        )
        family(
            "takhin_produce_bytes_total",
            "counter",
            "Total bytes produced",
            t_series("takhin_produce_bytes_total", lambda t: by_topic[t] * self.size[t]),
        )
        family(
            "takhin_fetch_bytes_total",
            "counter",
            "Total bytes fetched",
            t_series("takhin_fetch_bytes_total", lambda t: fetch_by_topic[t] * self.size[t]),
        )
        family(
            "takhin_produce_requests_total",
            "counter",
            "Total produce requests",
            t_series("takhin_produce_requests_total", lambda t: by_topic[t] / 10),
        )
        family(
            "takhin_fetch_requests_total",
            "counter",
            "Total fetch requests",
            t_series("takhin_fetch_requests_total", lambda t: fetch_by_topic[t] / 20 + 1),
        )
        connections = 2 * shape.topics + sum(self.members.values())
        family(
            "takhin_connections_total",
            "counter",
            "Total connections accepted",
            [_Series("takhin_connections_total", 5000.0, 0.5)],
        )
        family(
            "takhin_connections_active",
            "gauge",
            "Active client connections",
            [_Series("takhin_connections_active", float(connections), 0.0)],
        )
        total = sum(self.produce.values())
        family(
            "takhin_bytes_sent_total",
            "counter",
            "Total bytes sent",
            [_Series("takhin_bytes_sent_total", 1e9, total * 600)],
        )
        family(
            "takhin_bytes_received_total",
            "counter",
            "Total bytes received",
            [_Series("takhin_bytes_received_total", 2e9, total * 500)],
        )
        family(
            "takhin_kafka_requests_total",
            "counter",
            "Total Kafka requests",
            [
                _Series(
                    "takhin_kafka_requests_total" + _labels(api_key=str(k), version=str(v)),
                    1e4,
                    rng.uniform(0.1, 50.0),
                )
                for k in API_KEYS
                for v in range(3)
            ],
        )
        family(
            "takhin_consumer_group_rebalances_total",
            "counter",
            "Rebalances per group",
            [
                _Series("takhin_consumer_group_rebalances_total" + _labels(group_id=g), 3.0, 0.0)
                for g in self.groups
            ],
        )
        family(
            "takhin_consumer_group_commits_total",
            "counter",
            "Offset commits",
            [
                _Series(
                    "takhin_consumer_group_commits_total" + _labels(group_id=g, topic=t), 100.0, 1.0
                )
                for g, topics in self.reads.items()
                for t in topics
            ],
        )
        families.extend(self._histograms(rng, by_topic, fetch_by_topic))
        family(
            "takhin_storage_disk_usage_bytes",
            "gauge",
            "Disk usage per partition",
            tp_series(
                "takhin_storage_disk_usage_bytes",
                lambda t, p: self.produce[(t, p)] * self.size[t],
                lambda t, p: self.start_offset[(t, p)] * self.size[t],
            ),
        )
        family(
            "takhin_storage_log_end_offset",
            "gauge",
            "Log end offset per partition",
            tp_series(
                "takhin_storage_log_end_offset",
                lambda t, p: self.produce[(t, p)],
                lambda t, p: self.start_offset[(t, p)],
            ),
        )
        family(
            "takhin_storage_log_segments",
            "gauge",
            "Log segments per partition",
            tp_series(
                "takhin_storage_log_segments",
                lambda t, p: 0.0,
                lambda t, p: float(1 + int(self.start_offset[(t, p)]) % 40),
            ),
        )
        family(
            "takhin_replication_under_replicated",
            "gauge",
            "Under-replicated partitions",
            tp_series("takhin_replication_under_replicated", lambda t, p: 0.0, lambda t, p: 0.0),
        )
        family(
            "takhin_consumer_group_members",
            "gauge",
            "Members per consumer group",
            [
                _Series(
                    "takhin_consumer_group_members" + _labels(group_id=g),
                    float(self.members[g]),
                    0.0,
                )
                for g in self.groups
            ],
        )
        family(
            "takhin_consumer_group_state",
            "gauge",
            "Consumer group state (0=Dead, 1=Empty, 2=PreparingRebalance, "
            "3=CompletingRebalance, 4=Stable)",
            [
                _Series(
                    "takhin_consumer_group_state"
                    + _labels(group_id=g, state="Stable" if self.members[g] else "Empty"),
                    4.0 if self.members[g] else 1.0,
                    0.0,
                )
                for g in self.groups
            ],
        )
        family(
            "takhin_consumer_group_lag_offsets",
            "gauge",
            "Consumer lag per partition",
            [
                _Series(
                    "takhin_consumer_group_lag_offsets"
                    + _labels(group_id=g, partition=str(p), topic=t),
                    lag,
                    0.0,
                )
                for (g, t, p), lag in self.lag.items()
            ],
        )
        family(
            "takhin_go_goroutines",
            "gauge",
            "Number of goroutines",
            [_Series("takhin_go_goroutines", 40.0 + 3 * len(tp), 0.0)],
        )
        family(
            "takhin_go_mem_alloc_bytes",
            "gauge",
            "Bytes of allocated heap objects",
            [_Series("takhin_go_mem_alloc_bytes", 64e6 + 20000.0 * len(tp), 0.0)],
        )
        family(
            "takhin_go_mem_sys_bytes",
            "gauge",
            "Total bytes of memory obtained from the OS",
            [_Series("takhin_go_mem_sys_bytes", 128e6 + 40000.0 * len(tp), 0.0)],
        )
        for name, kind, value in (
            ("go_memstats_frees_total", "counter", 9.87e9),
            ("go_goroutines", "gauge", 40.0 + 3 * len(tp)),
            ("go_memstats_alloc_bytes", "gauge", 64e6 + 20000.0 * len(tp)),
            ("go_memstats_heap_inuse_bytes", "gauge", 70e6),
            ("go_memstats_sys_bytes", "gauge", 128e6 + 40000.0 * len(tp)),
            ("go_threads", "gauge", 24.0),
            ("process_cpu_seconds_total", "counter", 3600.0),
            ("process_open_fds", "gauge", 40.0 + 2 * len(tp)),
            ("process_resident_memory_bytes", "gauge", 150e6),
        ):
            family(name, kind, name.replace("_", " "), [_Series(name, value, 0.0)])
        families.sort(key=lambda f: f[0])
        for _, kind, _, series in families:
            if kind != "histogram":  # those are in order already: by series, then le
                series.sort(key=lambda s: s.prefix)
        return families

    def _histograms(
        self, rng: random.Random, produce: dict[str, float], fetch: dict[str, float]
    ) -> Iterator[tuple[str, str, str, list[_Series]]]:
        for name, rates, scale in (
            ("takhin_produce_latency_seconds", produce, 0.003),
            ("takhin_fetch_latency_seconds", fetch, 0.008),
        ):
            series: list[_Series] = []
            for topic in self.topics:
                requests = rates[topic] / 10 + 0.5
                median = scale * rng.uniform(0.5, 2.0)
                series.extend(
                    _histogram(name, _labels(topic=topic), LATENCY_BUCKETS, median, requests)
                )
            yield name, "histogram", name.replace("_", " "), series
        name = "takhin_kafka_request_duration_seconds"
        series = []
        for key in API_KEYS:
            series.extend(_histogram(name, _labels(api_key=str(key)), REQUEST_BUCKETS, 0.004, 20.0))
        yield name, "histogram", "Kafka request duration", series

    # --- rendering ---

    def render(self, t: float) -> bytes:
        """The exposition at *t* seconds (counters at ``base + rate * t``)."""
        out: list[str] = []
        for name, kind, help_, series in self._families:
            out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
            out.extend(f"{s.prefix} {go_float(s.value(t))}\n" for s in series)
        return "".join(out).encode()

    def samples(self) -> int:
        return sum(len(series) for _, _, _, series in self._families)


def _histogram(
    name: str, labels: str, bounds: tuple[float, ...], median: float, requests: float
) -> list[_Series]:
    """Bucket, sum and count series of one histogram whose observations are log-normal."""
    inner = labels[:-1] + "," if labels != "{}" else "{"
    out = []
    for upper in (*bounds, math.inf):
        share = (
            1.0
            if upper == math.inf
            else 0.5 * (1 + math.erf(math.log(upper / median) / (0.8 * math.sqrt(2))))
        )
        le = "+Inf" if upper == math.inf else go_float(upper)
        out.append(_Series(f'{name}_bucket{inner}le="{le}"}}', 1000.0 * share, requests * share))
    out.append(_Series(f"{name}_sum{labels}", 1000.0 * median, requests * median, True))
    out.append(_Series(f"{name}_count{labels}", 1000.0, requests))
    return out


# --- serving ---


class _Exporter(ThreadingHTTPServer):
    """Answers scrape *k* with the exposition at ``t = k * interval``, rendered (and
    gzipped) ahead of time by a background thread that keeps up to *ahead* bodies
    ready, so a request costs only the send and the counters advance by exactly
    ``rate * interval`` between scrapes."""

    daemon_threads = True

    def __init__(
        self, broker: Broker, interval: float, gzip_level: int, ahead: int, total: int | None
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.total = total
        self.broker = broker
        self.interval = interval
        self.gzip_level = gzip_level
        self.ahead = ahead
        self.scrapes = 0
        self._ready = threading.Condition()
        self._bodies: collections.deque[tuple[bytes, bytes | None]] = collections.deque()
        threading.Thread(target=self._render, daemon=True).start()

    def _render(self) -> None:
        scrape = 0
        while self.total is None or scrape < self.total:
            with self._ready:
                self._ready.wait_for(lambda: len(self._bodies) < self.ahead)
            body = self.broker.render(scrape * self.interval)
            packed = gzip.compress(body, self.gzip_level) if self.gzip_level else None
            with self._ready:
                self._bodies.append((body, packed))
                self._ready.notify_all()
            scrape += 1

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a scrape given up
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def wait_ready(self) -> None:
        ready = self.ahead if self.total is None else min(self.ahead, self.total)
        with self._ready:
            self._ready.wait_for(lambda: len(self._bodies) >= ready)

    def take(self, accepts_gzip: bool) -> tuple[bytes, bool]:
        """The next scrape's body (gzipped if accepted and enabled)."""
        with self._ready:
            self._ready.wait_for(lambda: bool(self._bodies))
            if self.total is not None and self.scrapes + 1 >= self.total:
                body, packed = self._bodies[0]  # the last one, again from now on
            else:
                body, packed = self._bodies.popleft()
            self.scrapes += 1
            self._ready.notify_all()
        if accepts_gzip and packed is not None:
            return packed, True
        return body, False


class _Handler(BaseHTTPRequestHandler):
    server: _Exporter
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        body, packed = self.server.take("gzip" in self.headers.get("Accept-Encoding", ""))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        if packed:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exposition", description=__doc__)
    parser.add_argument(
        "--size", type=Shape.parse, default=SIZES[2], help="TOPICSxPARTITIONS/GROUPS"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes")
    parser.add_argument(
        "--gzip-level", type=int, default=GZIP_LEVEL, help="0: never gzip (default %(default)s)"
    )
    parser.add_argument(
        "--ahead", type=int, default=2, help="bodies rendered in advance (default %(default)s)"
    )
    parser.add_argument(
        "--total",
        type=int,
        help="render only this many scrapes (all before serving when --ahead is as large): "
        "nothing renders while a benchmark measures; later scrapes get the last one again",
    )
    parser.add_argument("--write", metavar="FILE", help="write one rendering (t=0) and exit")
    args = parser.parse_args(argv)
    broker = Broker(args.size, seed=args.seed)
    if args.write:
        with open(args.write, "wb") as out:
            out.write(broker.render(0.0))
        return 0
    server = _Exporter(broker, args.interval, args.gzip_level, max(args.ahead, 1), args.total)
    server.wait_ready()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    print(
        json.dumps(
            {
                "url": f"http://127.0.0.1:{port}/metrics",
                "samples": broker.samples(),
                "expected": broker.expected(),
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the parent closes it
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
