"""The ``prometheus`` metrics source: a Takhin broker's ``/metrics`` endpoint.

:class:`PrometheusSource` scrapes the broker's Prometheus text exposition with httpx
(which runs on Trio), parses it with prometheus-client's parser, and derives the
``metrics`` message from two successive scrapes (:func:`compute_snapshot`):

- rates are counter increases (:func:`~takhin_ws.sources.promql.counter_increase`,
  resets handled) over the real time elapsed between the two scrapes;
- latency quantiles come from the increase of each histogram bucket over that same
  window, summed by ``le``, through PromQL's ``histogram_quantile`` algorithm;
- totals, lag and cluster health come from gauges of the latest scrape.

The metric names and labels are those of Takhin 2.9 (``takhin_*``); a family the
broker does not expose counts as zero. ``docs/metrics.md`` defines every field.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Final, TypeAlias

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from .._messages import (
    GROUP_STATES,
    ClusterHealth,
    ConsumerLag,
    GroupState,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicLag,
    TopicStats,
)
from .._snapshot import GroupInfo, MetricsSourceError, Snapshot
from .promql import QUANTILES, counter_increase, histogram_quantile

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Exposition",
    "PrometheusSource",
    "Scrape",
    "ScrapeError",
    "compute_snapshot",
    "parse_exposition",
]

logger: Final = logging.getLogger("takhin_ws.metrics")

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
_ACCEPT: Final = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"

#: Takhin's state gauge encodes the state as a number (facts sheet).
STATE_CODES: Final[Mapping[int, GroupState]] = {
    0: "Dead",
    1: "Empty",
    2: "PreparingRebalance",
    3: "CompletingRebalance",
    4: "Stable",
}
_STATE_CODE_OF: Final = {state: code for code, state in STATE_CODES.items()}

Labels: TypeAlias = tuple[tuple[str, str], ...]
#: Samples of one scrape: sample name -> labels (sorted pairs) -> value.
Exposition: TypeAlias = Mapping[str, Mapping[Labels, float]]


class ScrapeError(MetricsSourceError):
    """A scrape failed: unreachable, non-200, too large, too slow, or not parseable."""


@attrs.frozen
class Scrape:
    """One parsed scrape and when it was taken (``monotonic`` for rates, ``wall`` for
    the message's timestamp)."""

    samples: Exposition
    monotonic: float
    wall: float


# --- parsing ---


#: The samples this source reads; every other line is checked for form and skipped.
READ_SAMPLES: Final = frozenset(
    {
        "takhin_produce_messages_total",
        "takhin_fetch_messages_total",
        "takhin_produce_bytes_total",
        "takhin_fetch_bytes_total",
        "takhin_produce_latency_seconds_bucket",
        "takhin_fetch_latency_seconds_bucket",
        "takhin_connections_active",
        "takhin_storage_disk_usage_bytes",
        "takhin_storage_log_end_offset",
        "takhin_consumer_group_members",
        "takhin_consumer_group_state",
        "takhin_consumer_group_lag_offsets",
        "takhin_go_goroutines",
        "takhin_go_mem_sys_bytes",
        # the Go runtime's standard gauges, a fallback for Takhin's own
        "go_goroutines",
        "go_memstats_sys_bytes",
    }
)
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NAME_END: Final = re.compile(r"[{\s]")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _select(text: str) -> str:
    """The lines of *text* that carry samples this source reads.

    prometheus-client's parser costs tens of microseconds per sample, so the lines
    of other families are not given to it; they are still checked to look like
    samples (a metric name, then a number), so that an HTML error page or other
    garbage is refused rather than read as an empty exposition.
    """
    kept: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _NAME_END.search(line)
        name = line[: match.start()] if match else line
        if name in READ_SAMPLES:
            kept.append(line)
            continue
        rest = line[len(name) :]
        if rest.startswith("{"):
            rest = rest.rpartition("}")[2]
        tokens = rest.split()
        if not (_METRIC_NAME.fullmatch(name) and tokens and _is_number(tokens[0])):
            shown = line if len(line) <= 60 else line[:60] + "..."
            raise ValueError(f"line {number} is not a sample: {shown!r}")
    kept.append("")
    return "\n".join(kept)


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus text exposition into samples by name and labels.

    Only the samples named in :data:`READ_SAMPLES` are kept (and parsed, with
    prometheus-client's parser). Raises ``ValueError`` saying what is wrong when
    *text* is not exposition text.
    """
    samples: dict[str, dict[Labels, float]] = {}
    try:
        for family in text_string_to_metric_families(_select(text)):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[labels] = float(sample.value)
    except ValueError:
        raise
    except Exception as exc:  # the parser can fail with IndexError, KeyError...
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    return samples


# --- the maths of one snapshot ---


def _label(labels: Labels, key: str) -> str | None:
    for name, value in labels:
        if name == key:
            return value
    return None


def _int(value: float) -> int:
    return int(value) if math.isfinite(value) else 0


def _partition(labels: Labels) -> int | None:
    raw = _label(labels, "partition")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _le(raw: str) -> float | None:
    try:
        return float(raw)  # "+Inf" -> inf
    except ValueError:
        return None


class _Window:
    """The two scrapes of one computation and the helpers that read them."""

    def __init__(self, previous: Scrape | None, current: Scrape) -> None:
        self.previous = previous
        self.current = current
        elapsed = current.monotonic - previous.monotonic if previous is not None else 0.0
        self.elapsed = elapsed if math.isfinite(elapsed) and elapsed > 0 else 0.0

    def series(self, name: str) -> Mapping[Labels, float]:
        return self.current.samples.get(name, {})

    def increases(self, name: str) -> dict[Labels, float]:
        """Counter increase of each series of *name* since the previous scrape (all 0
        on the first scrape or when no time has passed)."""
        if self.previous is None or self.elapsed == 0.0:
            return {}
        before = self.previous.samples.get(name, {})
        return {
            labels: counter_increase(before.get(labels), value)
            for labels, value in self.series(name).items()
        }

    def rate(self, name: str) -> float:
        if self.elapsed == 0.0:
            return 0.0
        return sum(self.increases(name).values()) / self.elapsed

    def rates_by(self, name: str, key: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        if self.elapsed == 0.0:
            return out
        for labels, increase in self.increases(name).items():
            value = _label(labels, key)
            if value is not None:
                out[value] += increase / self.elapsed
        return out

    def gauge(self, name: str, *fallbacks: str) -> float:
        for candidate in (name, *fallbacks):
            series = self.current.samples.get(candidate)
            if series:
                return sum(v for v in series.values() if math.isfinite(v))
        return 0.0

    def quantiles(self, histogram: str) -> tuple[float, float, float]:
        """p50/p95/p99 of the observations made between the two scrapes, all series
        summed by ``le`` (``histogram_quantile(q, sum by (le) (increase(h_bucket)))``)."""
        buckets: list[tuple[float, float]] = []
        for labels, increase in self.increases(histogram + "_bucket").items():
            raw = _label(labels, "le")
            upper = _le(raw) if raw is not None else None
            if upper is not None:
                buckets.append((upper, increase))
        p50, p95, p99 = (histogram_quantile(q, buckets) for q in QUANTILES)
        return p50, p95, p99


def _topics(window: _Window) -> list[TopicStats]:
    log_end = window.series("takhin_storage_log_end_offset")
    disk = window.series("takhin_storage_disk_usage_bytes")
    produced = window.series("takhin_produce_messages_total")
    fetched = window.series("takhin_fetch_messages_total")

    def partitions_of(*families: Mapping[Labels, float]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for family in families:
            for labels in family:
                topic = _label(labels, "topic")
                if topic is None:
                    continue
                found = out.setdefault(topic, set())
                partition = _partition(labels)
                if partition is not None:
                    found.add(partition)
        return out

    # The storage gauges say which topics exist (counters of a deleted topic may
    # linger in the broker's registry); without them, the traffic counters do.
    partitions = partitions_of(log_end, disk) if (log_end or disk) else {}
    if not partitions:
        partitions = partitions_of(produced, fetched)

    def sum_by_topic(series: Mapping[Labels, float]) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for labels, value in series.items():
            topic = _label(labels, "topic")
            if topic is not None and math.isfinite(value):
                out[topic] += value
        return out

    messages = sum_by_topic(log_end) if log_end else sum_by_topic(produced)
    bytes_ = sum_by_topic(disk)
    produce_rates = window.rates_by("takhin_produce_messages_total", "topic")
    fetch_rates = window.rates_by("takhin_fetch_messages_total", "topic")
    return [
        TopicStats(
            name=topic,
            partitions=len(partitions[topic]),
            total_messages=_int(messages.get(topic, 0.0)),
            total_bytes=_int(bytes_.get(topic, 0.0)),
            produce_rate=produce_rates.get(topic, 0.0),
            fetch_rate=fetch_rates.get(topic, 0.0),
        )
        for topic in sorted(partitions)
    ]


def group_state(series: Iterable[tuple[str | None, float]]) -> GroupState | None:
    """The state of one group from its ``takhin_consumer_group_state`` series,
    given as ``(state label, value)`` pairs.

    Two encodings are understood: a state set (one series per state, 1 for the
    current one, 0 for the others) and Takhin's coded gauge (the value is the state
    code 0=Dead 1=Empty 2=PreparingRebalance 3=CompletingRebalance 4=Stable, the
    label naming it too). The current series is the only non-zero one; its state
    label wins when it names a state, else its value is decoded. All zero: Dead (code
    0). Several non-zero series (stale coded series left behind): the one whose value
    is its own label's code, the most advanced state if several are.
    """
    pairs = [(label, value) for label, value in series if math.isfinite(value)]
    if not pairs:
        return None
    nonzero = [(label, value) for label, value in pairs if value != 0]
    if not nonzero:
        return "Dead"
    if len(nonzero) == 1:
        label, value = nonzero[0]
        if label in GROUP_STATES:
            return label  # type: ignore[return-value]
        return STATE_CODES.get(int(value)) if value == int(value) else None
    consistent = [
        _STATE_CODE_OF[label]
        for label, value in nonzero
        if label in _STATE_CODE_OF and value == _STATE_CODE_OF[label]
    ]
    if consistent:
        return STATE_CODES[max(consistent)]
    codes = [
        int(value) for _, value in nonzero if value == int(value) and int(value) in STATE_CODES
    ]
    return STATE_CODES[max(codes)] if codes else None


def _groups(
    window: _Window, log_ends: Mapping[tuple[str, int], int]
) -> tuple[list[ConsumerLag], dict[str, GroupInfo], int]:
    members: dict[str, int] = defaultdict(int)
    for labels, value in window.series("takhin_consumer_group_members").items():
        group = _label(labels, "group_id")
        if group is not None:
            members[group] += _int(value)
    states: dict[str, list[tuple[str | None, float]]] = defaultdict(list)
    for labels, value in window.series("takhin_consumer_group_state").items():
        group = _label(labels, "group_id")
        if group is not None:
            states[group].append((_label(labels, "state"), value))
    lags: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for labels, value in window.series("takhin_consumer_group_lag_offsets").items():
        group, topic, partition = (
            _label(labels, "group_id"),
            _label(labels, "topic"),
            _partition(labels),
        )
        if group is None or topic is None or partition is None:
            continue
        lags[group][topic][partition] = max(_int(value), 0)

    groups: dict[str, GroupInfo] = {}
    consumer_lags: list[ConsumerLag] = []
    for group in sorted(set(members) | set(states) | set(lags)):
        count = members.get(group, 0)
        state = group_state(states.get(group, ()))
        if state is None:
            state = "Stable" if count > 0 else "Empty"
        groups[group] = GroupInfo(state=state, members=count)
        topic_lags: list[TopicLag] = []
        for topic in sorted(lags.get(group, {})):
            partition_lags = []
            for partition, lag in sorted(lags[group][topic].items()):
                log_end = log_ends.get((topic, partition), 0)
                partition_lags.append(
                    PartitionLag(
                        partition=partition,
                        current_offset=max(log_end - lag, 0),
                        log_end_offset=log_end,
                        lag=lag,
                    )
                )
            topic_lags.append(
                TopicLag(
                    topic=topic,
                    total_lag=sum(p.lag for p in partition_lags),
                    partition_lags=tuple(partition_lags),
                )
            )
        consumer_lags.append(
            ConsumerLag(
                group_id=group,
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=tuple(topic_lags),
            )
        )
    return consumer_lags, groups, sum(members.values())


def compute_snapshot(previous: Scrape | None, current: Scrape) -> Snapshot:
    """The snapshot described by *current*, with rates and quantiles over the window
    since *previous* (``None``: the first scrape, so rates and quantiles are 0)."""
    window = _Window(previous, current)
    produce_p50, produce_p95, produce_p99 = window.quantiles("takhin_produce_latency_seconds")
    fetch_p50, fetch_p95, fetch_p99 = window.quantiles("takhin_fetch_latency_seconds")
    topics = _topics(window)
    log_ends: dict[tuple[str, int], int] = {}
    for labels, value in window.series("takhin_storage_log_end_offset").items():
        topic, partition = _label(labels, "topic"), _partition(labels)
        if topic is not None and partition is not None:
            log_ends[(topic, partition)] = _int(value)
    consumer_lags, groups, consumers = _groups(window, log_ends)
    metrics = MonitoringMetrics(
        throughput=Throughput(
            produce_rate=window.rate("takhin_produce_messages_total"),
            fetch_rate=window.rate("takhin_fetch_messages_total"),
            produce_bytes=window.rate("takhin_produce_bytes_total"),
            fetch_bytes=window.rate("takhin_fetch_bytes_total"),
        ),
        latency=Latency(
            produce_p50=produce_p50,
            produce_p95=produce_p95,
            produce_p99=produce_p99,
            fetch_p50=fetch_p50,
            fetch_p95=fetch_p95,
            fetch_p99=fetch_p99,
        ),
        topic_stats=tuple(topics),
        consumer_lags=tuple(consumer_lags),
        cluster_health=ClusterHealth(
            active_connections=_int(window.gauge("takhin_connections_active")),
            total_topics=len(topics),
            total_partitions=sum(t.partitions for t in topics),
            total_consumers=consumers,
            disk_usage_bytes=_int(window.gauge("takhin_storage_disk_usage_bytes")),
            memory_usage_bytes=_int(
                window.gauge("takhin_go_mem_sys_bytes", "go_memstats_sys_bytes")
            ),
            goroutine_count=_int(window.gauge("takhin_go_goroutines", "go_goroutines")),
        ),
        timestamp=int(current.wall),
    )
    return Snapshot(metrics=metrics, groups=groups)


# --- the source ---


class PrometheusSource:
    """Scrape ``url`` (a Takhin broker's ``/metrics``) on every :meth:`collect`.

    Each scrape must finish within *timeout* seconds (connect to last byte) and its
    body may hold at most *max_body_bytes* bytes (after decompression); a scrape that
    fails raises :class:`ScrapeError` and leaves the previous good scrape as the base
    of the next rates. Pass *client* to share an ``httpx.AsyncClient`` (it is then not
    closed by :meth:`aclose`). *clock* (monotonic) times the rate window; *wall_clock*
    stamps the message.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"prometheus URL must be http(s)://HOST[:PORT]/PATH, got {url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes!r}")
        self.url = url
        self.timeout = float(timeout)
        self.max_body_bytes = max_body_bytes
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._clock = clock
        self._wall_clock = wall_clock
        self._previous: Scrape | None = None
        self._warned_empty = False

    async def __aenter__(self) -> PrometheusSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client:
            await self._client.aclose()

    async def collect(self) -> Snapshot:
        body = await self.fetch()
        taken = self._clock()
        wall = self._wall_clock()
        # Parsing a large exposition takes a while: a worker thread keeps the
        # event loop (and every client) going meanwhile.
        scrape, snapshot = await trio.to_thread.run_sync(self._process, body, taken, wall)
        self._previous = scrape
        if not scrape.samples and not self._warned_empty:
            self._warned_empty = True
            logger.warning(
                "%s exposes none of the takhin_* metrics this source reads: is it a "
                "Takhin broker's /metrics endpoint? (reporting zeros)",
                self.url,
            )
        return snapshot

    def _process(self, body: bytes, taken: float, wall: float) -> tuple[Scrape, Snapshot]:
        try:
            samples = parse_exposition(body.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            reason = " ".join(str(exc).split())
            if len(reason) > 160:
                reason = reason[:160] + "..."
            raise ScrapeError(
                f"{self.url} did not answer Prometheus text exposition: {reason}"
            ) from None
        scrape = Scrape(samples, taken, wall)
        return scrape, compute_snapshot(self._previous, scrape)

    async def fetch(self) -> bytes:
        """The body of one scrape (bounded in time and size)."""
        try:
            with trio.fail_after(self.timeout):
                return await self._fetch()
        except trio.TooSlowError:
            raise ScrapeError(f"scrape of {self.url} timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ScrapeError(
                f"scrape of {self.url} failed: {type(exc).__name__}: {exc or 'no detail'}"
            ) from None

    async def _fetch(self) -> bytes:
        async with self._client.stream(
            "GET", self.url, headers={"Accept": _ACCEPT}, follow_redirects=True
        ) as response:
            if response.status_code != 200:
                snippet = await self._read(response, 200)
                text = " ".join(snippet[:200].decode("utf-8", "replace").split())
                status = response.status_code
                reason = response.reason_phrase or httpx.codes.get_reason_phrase(status)
                raise ScrapeError(
                    f"scrape of {self.url} answered HTTP {status} {reason}".rstrip()
                    + (f": {text}" if text else "")
                )
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._abandon(response, response.aiter_bytes())
                raise ScrapeError(self._too_large(f"{int(declared)} bytes announced"))
            body = await self._read(response, self.max_body_bytes + 1)
            if len(body) > self.max_body_bytes:
                raise ScrapeError(self._too_large(f"more than {self.max_body_bytes} bytes sent"))
            return body

    @staticmethod
    async def _read(response: httpx.Response, limit: int) -> bytes:
        """Up to about *limit* bytes of the body; the rest is not read."""
        chunks: list[bytes] = []
        size = 0
        body = response.aiter_bytes()
        async for chunk in body:
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                await PrometheusSource._abandon(response, body)
                break
        return b"".join(chunks)

    @staticmethod
    async def _abandon(response: httpx.Response, body: AsyncIterator[bytes]) -> None:
        """Stop reading a body half-way: close the connection, then run the body's
        iterator to its end (it fails at once on the closed connection).

        Simply leaving the loop would leave httpx's and httpcore's chain of async
        generators suspended, for Trio to finalize later with a ResourceWarning.
        """
        await response.aclose()
        with contextlib.suppress(Exception):
            async for _ in body:
                pass

    def _too_large(self, what: str) -> str:
        return (
            f"scrape of {self.url} refused: body too large ({what}; "
            f"the limit is max_body_bytes={self.max_body_bytes})"
        )
