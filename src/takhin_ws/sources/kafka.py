"""The ``kafka`` metrics source: a cluster read over the Kafka protocol itself.

Every Kafka-compatible cluster (Takhin, Apache Kafka, Redpanda, MSK...) answers the
admin side of the protocol: Metadata, ListOffsets, ListGroups, DescribeGroups and
OffsetFetch. :class:`KafkaSource` asks it with confluent-kafka's ``AdminClient``
(librdkafka) through a :class:`~takhin_ws.sources.kafka_collector.KafkaCollector` in a
Trio worker thread, so the event loop never waits on the cluster. One tick:

- the topics and their partitions (one metadata request), then the log end offset of
  every partition (ListOffsets in calls of 500 partitions; the start offsets every 30 s,
  see :mod:`takhin_ws.sources.kafka_client`);
- meanwhile the consumer groups (one listing), described in batches of
  :data:`DESCRIBE_BATCH`, and the committed offsets of every group, all requested at once.

A tick is whole or it fails: a partition or group that answers with an error is asked
again within the deadline, and the tick fails if it still does (the producer then
republishes the last good snapshot as stale). After ``reset_after`` failed ticks in a
row the client is closed and a new one made (:mod:`takhin_ws.sources.kafka_recovery`).
The offsets become a snapshot in :mod:`takhin_ws.sources.kafka_model` (rates from
offset deltas between ticks, lag from committed offsets). With a *prometheus* source
beside it, the fields the protocol cannot give (bytes, latency, connections, disk,
memory) are merged from the broker's exposition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final

import trio

from ..core.snapshot import MetricsSourceError, Snapshot
from .kafka_client import DESCRIBE_BATCH, KafkaSourceError, is_secret, logger, mask_config
from .kafka_collector import DEFAULT_RESET_AFTER, KafkaCollector
from .kafka_model import merge_exposition
from .prometheus import PrometheusSource

__all__ = [
    "DEFAULT_RESET_AFTER",
    "DESCRIBE_BATCH",
    "KafkaSource",
    "KafkaSourceError",
    "is_secret",
    "mask_config",
]

#: Seconds the collect waits past the collector's own deadline for its answer.
ANSWER_GRACE: Final = 0.05


class KafkaSource:
    """Read the cluster at *bootstrap* (``host:port[,host:port...]``) on every collect.

    *config* adds librdkafka client properties (``security.protocol``,
    ``sasl.mechanism``, ``sasl.password``...); secret values never appear in the
    source's repr nor in its messages. Each collect must finish within *timeout*
    seconds. Internal topics (``__consumer_offsets``...) are left out unless
    *show_internal_topics*. After *reset_after* failed collects in a row the client is
    closed and a new one made. A *prometheus* source, if given, is scraped alongside and
    its bytes, latency and health figures merged in (a failed scrape leaves them 0 and
    logs one warning per streak). *clock* (monotonic) times the rate window (the
    deadlines always use :func:`time.monotonic`); *wall_clock* stamps the message.

    Use it as an async context manager (or call :meth:`aclose`): the client lives
    until then.
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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not bootstrap or not bootstrap.strip():
            raise ValueError("kafka bootstrap must be HOST:PORT[,HOST:PORT...], got ''")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if reset_after < 1:
            raise ValueError(f"reset_after must be >= 1, got {reset_after!r}")
        self.bootstrap = bootstrap
        self.config = tuple(config)
        self.timeout = float(timeout)
        self.show_internal_topics = show_internal_topics
        self.prometheus = prometheus
        self.reset_after = reset_after
        # one tick at a time: a tick abandoned at its deadline keeps its thread until
        # its own requests give up (the same deadline), and the next waits for it
        self._limiter = trio.CapacityLimiter(1)
        self._scrape_failing = False
        self._closed = False
        self._collector = self._make_collector(
            bootstrap,
            self.config,
            show_internal_topics=show_internal_topics,
            describe_batch=describe_batch,
            reset_after=reset_after,
            clock=clock,
            wall_clock=wall_clock,
        )

    _make_collector = KafkaCollector  # a test may put a subclass here

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

    async def __aenter__(self) -> KafkaSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Destroy the client (in a worker thread: librdkafka joins its threads) and
        close the Prometheus source if there is one."""
        if not self._closed:
            self._closed = True
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._collector.close, limiter=self._limiter)
        if self.prometheus is not None:
            await self.prometheus.aclose()

    # --- one tick ---

    async def collect(self) -> Snapshot:
        if self._closed:
            raise KafkaSourceError("kafka source is closed")
        extras: list[Snapshot] = []
        ticked: list[Snapshot | KafkaSourceError] = []
        first = self._collector.first
        async with trio.open_nursery() as nursery:
            if self.prometheus is not None:
                nursery.start_soon(self._scrape, self.prometheus, extras)
            nursery.start_soon(self._tick, ticked)
        (snapshot,) = ticked
        if isinstance(snapshot, KafkaSourceError):
            raise snapshot
        if extras:
            snapshot = merge_exposition(snapshot, extras[0].metrics)
        if first:
            logger.info(
                "metrics from the kafka cluster at %s (%d topics, %d groups)%s",
                self.bootstrap,
                len(snapshot.metrics.topic_stats),
                len(snapshot.groups),
                f", merged with {self.prometheus.url}" if self.prometheus else "",
            )
        return snapshot

    async def _tick(self, out: list[Snapshot | KafkaSourceError]) -> None:
        """The collector's tick in a worker thread, its snapshot or error into *out*."""
        try:
            with trio.fail_after(self.timeout + ANSWER_GRACE):
                out.append(
                    await trio.to_thread.run_sync(
                        self._collector.collect,
                        self.timeout,
                        limiter=self._limiter,
                        abandon_on_cancel=True,
                    )
                )
        except trio.TooSlowError:
            out.append(
                KafkaSourceError(f"kafka {self.bootstrap}: no answer within {self.timeout:g} s")
            )
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
