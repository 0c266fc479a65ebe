"""The ``kafka`` metrics source: a cluster read over the Kafka protocol itself.

Every Kafka-compatible cluster (Takhin, Apache Kafka, Redpanda, MSK...) answers the
admin side of the protocol: Metadata, ListOffsets, ListGroups, DescribeGroups and
OffsetFetch. :class:`KafkaSource` asks it with confluent-kafka's ``AdminClient``
(librdkafka) in a collector process of its own (:mod:`takhin_ws.sources.kafka.worker` starts,
watches and restarts it; :mod:`takhin_ws.sources.kafka.process` is its main), so
that an abort, a hang or a leak in the client library never touches the server, and a
tick's CPU never holds the event loop. One tick, in that process
(:mod:`takhin_ws.sources.kafka.collector`):

- the topics and their partitions (one metadata request, every 10 s or after a change
  or a failure: :mod:`takhin_ws.sources.kafka.collector`), then the log end offset of
  every partition (one ListOffsets to each leader over the protocol itself on a
  plaintext listener, else with librdkafka in calls of 500 partitions; the start offsets
  every 30 s, see :mod:`takhin_ws.sources.kafka.admin.offsets`);
- meanwhile the consumer groups (one listing), described in batches of
  :data:`DESCRIBE_BATCH`, and the committed offsets of every group, all requested at once.

A tick is whole or it fails: a partition or group that answers with an error is asked
again within the deadline, and the tick fails if it still does (the producer then
republishes the last good snapshot as stale). After ``reset_after`` failed ticks in a
row the client is closed and a new one made (:mod:`takhin_ws.sources.kafka.recovery`);
a process that does not answer that many ticks is killed and a new one started. The
offsets become a snapshot in :mod:`takhin_ws.sources.kafka.model` (rates from offset
deltas between ticks, lag from committed offsets). With a *prometheus* source beside
it, the fields the protocol cannot give (bytes, latency, connections, disk, memory) are
merged from the broker's exposition (scraped here, in the server).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Final

import trio

from ...config.settings import DEFAULT_KAFKA_RESET_AFTER
from ...core.metrics.snapshot import MetricsSourceError, Snapshot
from ..prometheus.source import PrometheusSource
from .errors import KafkaSourceError, is_secret, mask_config
from .model import merge_exposition
from .worker import COMMAND, Collector, open_collector

__all__ = [
    "DEFAULT_RESET_AFTER",
    "DESCRIBE_BATCH",
    "KafkaSource",
    "KafkaSourceError",
    "is_secret",
    "mask_config",
]

logger: Final = logging.getLogger("takhin_ws.metrics")
#: Failed ticks in a row before a new client (or a new collector process) is made.
DEFAULT_RESET_AFTER: Final = DEFAULT_KAFKA_RESET_AFTER
#: Groups described per DescribeGroups request.
DESCRIBE_BATCH: Final = 100
#: Share of the collect deadline the collector process is given for its tick: the rest
#: is for the answer to come over the pipe and be put back together.
PROCESS_SHARE: Final = 0.95
#: Loggers whose level the collector process takes from this one.
_LOGGERS: Final = ("takhin_ws.metrics", "takhin_ws.metrics.librdkafka")


class KafkaSource:
    """Read the cluster at *bootstrap* (``host:port[,host:port...]``) on every collect.

    *config* adds librdkafka client properties (``security.protocol``,
    ``sasl.mechanism``, ``sasl.password``...); secret values never appear in the
    source's repr nor in its messages (nor on a command line: the collector process
    gets them over its pipe). Each collect must finish within *timeout* seconds.
    Internal topics (``__consumer_offsets``...) are left out unless
    *show_internal_topics*. After *reset_after* failed collects in a row the client is
    closed and a new one made. A *prometheus* source, if given, is scraped alongside and
    its bytes, latency and health figures merged in (a failed scrape leaves them 0 and
    logs one warning per streak).

    Enter it with ``async with`` before collecting: that starts the collector process
    (and raises :class:`ValueError` if librdkafka refuses a client property); leaving
    kills it. *command* runs another collector (a test's).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        config: Iterable[tuple[str, str]] = (),
        timeout: float = 5.0,
        show_internal_topics: bool = False,
        prometheus: PrometheusSource | None = None,
        describe_batch: int = DESCRIBE_BATCH,
        reset_after: int = DEFAULT_RESET_AFTER,
        command: Sequence[str] = COMMAND,
    ) -> None:
        if not bootstrap or not bootstrap.strip():
            raise ValueError("kafka bootstrap must be HOST:PORT[,HOST:PORT...], got ''")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if reset_after < 1:
            raise ValueError(f"reset_after must be >= 1, got {reset_after!r}")
        if describe_batch < 1:
            raise ValueError(f"describe_batch must be >= 1, got {describe_batch!r}")
        self.bootstrap = bootstrap
        self.config = tuple(config)
        self.timeout = float(timeout)
        self.show_internal_topics = show_internal_topics
        self.prometheus = prometheus
        self.describe_batch = describe_batch
        self.reset_after = reset_after
        self.command = tuple(command)
        self._stack: contextlib.AsyncExitStack | None = None
        self._collector: Collector | None = None
        self._scrape_failing = False
        self._closed = False
        self._first = True

    @property
    def kind(self) -> str:
        """What clients are told the data comes from: ``kafka``, or
        ``kafka+prometheus`` with a *prometheus* source merged in."""
        return "kafka+prometheus" if self.prometheus is not None else "kafka"

    def __repr__(self) -> str:
        merged = f", prometheus={self.prometheus!r}" if self.prometheus else ""
        return (
            f"KafkaSource({self.bootstrap!r}, config={mask_config(self.config)!r}, "
            f"timeout={self.timeout:g}{merged})"
        )

    @property
    def collector_pid(self) -> int | None:
        """The collector process's id (``None`` while there is none)."""
        return None if self._collector is None else self._collector.pid

    def _settings(self) -> dict[str, Any]:
        """The collector process's first frame (secrets included: never logged)."""
        return {
            "bootstrap": self.bootstrap,
            "config": [list(pair) for pair in self.config],
            "show_internal_topics": self.show_internal_topics,
            "describe_batch": self.describe_batch,
            "reset_after": self.reset_after,
            "levels": {name: logging.getLogger(name).getEffectiveLevel() for name in _LOGGERS},
        }

    async def __aenter__(self) -> KafkaSource:
        if self._closed or self._stack is not None:
            raise RuntimeError("a KafkaSource is entered once")
        stack = contextlib.AsyncExitStack()
        try:
            self._collector = await stack.enter_async_context(
                open_collector(
                    self._settings(),
                    name=f"kafka {self.bootstrap}: collector process",
                    hang_after=self.reset_after,
                    command=self.command,
                )
            )
        except ValueError as exc:
            await stack.aclose()
            raise ValueError(mask_text(str(exc), self.config)) from None
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill the collector process (if entered) and close the Prometheus source."""
        self._closed = True
        stack, self._stack, self._collector = self._stack, None, None
        try:
            if stack is not None:  # (the collector's nursery: exited as it was entered)
                await stack.aclose()
        finally:
            if self.prometheus is not None:
                with trio.CancelScope(shield=True):
                    await self.prometheus.aclose()

    # --- one tick ---

    async def collect(self) -> Snapshot:
        if self._closed:
            raise KafkaSourceError("kafka source is closed")
        collector = self._collector
        if collector is None:
            raise KafkaSourceError(
                "kafka source not started: enter it with `async with` (it runs its "
                "collector process)"
            )
        extras: list[Snapshot] = []
        ticked: list[Snapshot | KafkaSourceError] = []
        async with trio.open_nursery() as nursery:
            if self.prometheus is not None:
                nursery.start_soon(self._scrape, self.prometheus, extras)
            nursery.start_soon(self._tick, collector, ticked)
        (snapshot,) = ticked
        if isinstance(snapshot, KafkaSourceError):
            raise snapshot
        if extras:
            snapshot = merge_exposition(snapshot, extras[0].metrics)
        if self._first:
            self._first = False
            logger.info(
                "metrics from the kafka cluster at %s (%d topics, %d groups)%s",
                self.bootstrap,
                len(snapshot.metrics.topic_stats),
                len(snapshot.groups),
                f", merged with {self.prometheus.url}" if self.prometheus else "",
            )
        return snapshot

    async def _tick(self, collector: Collector, out: list[Snapshot | KafkaSourceError]) -> None:
        try:
            out.append(await collector.ask(self.timeout * PROCESS_SHARE, self.timeout))
        except KafkaSourceError as exc:
            out.append(exc)

    async def _scrape(self, prometheus: PrometheusSource, out: list[Snapshot]) -> None:
        try:
            out.append(await prometheus.collect())
        except MetricsSourceError as exc:
            if not self._scrape_failing:
                logger.warning("%s; bytes, latency and health figures are 0 meanwhile", exc)
            self._scrape_failing = True
            return
        if self._scrape_failing:
            logger.info("scrape of %s recovered", prometheus.url)
        self._scrape_failing = False


def mask_text(text: str, config: Iterable[tuple[str, str]]) -> str:
    """*text* with the value of every secret property of *config* replaced by ``***``."""
    for key, value in config:
        if value and is_secret(key):
            text = text.replace(value, "***")
    return text
