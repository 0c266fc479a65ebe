"""The ``kafka`` metrics source: a cluster read over the Kafka protocol itself.

Every Kafka-compatible cluster (Takhin, Apache Kafka, Redpanda, MSK...) answers the
admin side of the protocol: Metadata, ListOffsets, ListGroups, DescribeGroups and
OffsetFetch. :class:`KafkaSource` asks it with confluent-kafka's ``AdminClient``
(librdkafka), one client for the source's life, from Trio worker threads bounded by a
:class:`trio.CapacityLimiter`, so the event loop never waits on the cluster. One tick:

- the topics and their partitions (one metadata request), then the log end offset of
  every partition (ListOffsets in calls of 500 partitions; the start offsets every 30 s,
  see :mod:`takhin_ws.sources.kafka_client`);
- meanwhile the consumer groups (one listing), described in batches of
  :data:`DESCRIBE_BATCH`, and the committed offsets of every group, all requested at once.

The blocking requests live in :mod:`takhin_ws.sources.kafka_client`; every one runs
under the collect deadline. The offsets become a snapshot in
:mod:`takhin_ws.sources.kafka_model` (rates from offset deltas between ticks, lag from
committed offsets). With a *prometheus* source beside it, the fields the protocol cannot
give (bytes, latency, connections, disk, memory) are merged from the broker's exposition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final, TypeVar

import trio

from ..core.snapshot import GroupInfo, MetricsSourceError, Snapshot
from .kafka_client import (
    DESCRIBE_BATCH,
    Committed,
    KafkaAdmin,
    KafkaSourceError,
    is_secret,
    logger,
    mask_config,
)
from .kafka_model import Observation, Offsets, compute_snapshot, merge_exposition
from .prometheus import PrometheusSource

__all__ = [
    "DESCRIBE_BATCH",
    "KafkaSource",
    "KafkaSourceError",
    "is_secret",
    "mask_config",
]

#: Worker threads one source may occupy at once (the metadata/offsets chain and the
#: groups chain run side by side; a tick abandoned at its deadline keeps its thread
#: until the client's own timeout, which is the same deadline).
WORKER_THREADS: Final = 2
#: Share of the collect deadline the requests may use: they give up a little before
#: it, so the error says which request failed and why.
REQUEST_SHARE: Final = 0.9

_T = TypeVar("_T")


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first source error of *group* when that is all it holds (two chains of one
    tick failing for one reason: the cluster is down); else the group itself."""
    errors, rest = group.split(MetricsSourceError)
    if errors is None or rest is not None:
        return group
    leaf: BaseException = errors
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


class KafkaSource:
    """Read the cluster at *bootstrap* (``host:port[,host:port...]``) on every collect.

    *config* adds librdkafka client properties (``security.protocol``,
    ``sasl.mechanism``, ``sasl.password``...); secret values never appear in the
    source's repr nor in its messages. Each collect must finish within *timeout*
    seconds. Internal topics (``__consumer_offsets``...) are left out unless
    *show_internal_topics*. A *prometheus* source, if given, is scraped alongside and
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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not bootstrap or not bootstrap.strip():
            raise ValueError("kafka bootstrap must be HOST:PORT[,HOST:PORT...], got ''")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if describe_batch < 1:
            raise ValueError(f"describe_batch must be >= 1, got {describe_batch!r}")
        self.bootstrap = bootstrap
        self.config = tuple(config)
        self.timeout = float(timeout)
        self.show_internal_topics = show_internal_topics
        self.prometheus = prometheus
        self.describe_batch = describe_batch
        self._clock = clock
        self._wall_clock = wall_clock
        self._limiter = trio.CapacityLimiter(WORKER_THREADS)
        self._previous: Observation | None = None
        self._scrape_failing = False
        self._closed = False
        self._admin = KafkaAdmin(bootstrap, self.config, describe_batch=describe_batch)

    def __repr__(self) -> str:
        merged = f", prometheus={self.prometheus.url!r}" if self.prometheus else ""
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
                await trio.to_thread.run_sync(self._admin.close)
        if self.prometheus is not None:
            await self.prometheus.aclose()

    # --- one tick ---

    async def collect(self) -> Snapshot:
        if self._closed:
            raise KafkaSourceError("kafka source is closed")
        extras: list[Snapshot] = []
        try:
            with trio.fail_after(self.timeout):
                async with trio.open_nursery() as nursery:
                    if self.prometheus is not None:
                        nursery.start_soon(self._scrape, self.prometheus, extras)
                    observation = await self._observe(
                        time.monotonic() + self.timeout * REQUEST_SHARE
                    )
                # thousands of partitions: the arithmetic too stays off the event loop
                snapshot = await self._in_thread(self._compute, observation, extras)
        except trio.TooSlowError:
            raise KafkaSourceError(
                f"kafka {self.bootstrap}: no answer within {self.timeout:g} s{self._admin.cause()}"
            ) from None
        except BaseExceptionGroup as group:
            single = _single(group)
            if single is group:
                raise
            raise single from None
        if self._previous is None:
            logger.info(
                "metrics from the kafka cluster at %s (%d topics, %d groups)%s",
                self.bootstrap,
                len(snapshot.metrics.topic_stats),
                len(snapshot.groups),
                f", merged with {self.prometheus.url}" if self.prometheus else "",
            )
        self._previous = observation
        self._admin.succeeded()
        return snapshot

    def _compute(self, observation: Observation, extras: list[Snapshot]) -> Snapshot:
        snapshot = compute_snapshot(
            self._previous, observation, show_internal_topics=self.show_internal_topics
        )
        return merge_exposition(snapshot, extras[0].metrics) if extras else snapshot

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

    async def _in_thread(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self._limiter, abandon_on_cancel=True
        )

    async def _observe(self, deadline: float) -> Observation:
        groups: list[tuple[dict[str, GroupInfo], dict[str, Committed]]] = []

        async def read_groups() -> None:
            groups.append(await self._in_thread(self._groups, deadline))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_groups)
            partitions = await self._in_thread(self._metadata, deadline)
            offsets = await self._in_thread(self._offsets, partitions, deadline)
        infos, committed = groups[0]
        return Observation(
            monotonic=self._clock(),
            wall=self._wall_clock(),
            partitions={topic: len(ids) for topic, ids in partitions.items() if topic in offsets},
            offsets=offsets,
            groups=infos,
            committed=committed,
        )

    # --- the blocking requests (worker threads; a test may wrap them) ---

    def _metadata(self, deadline: float) -> dict[str, list[int]]:
        return self._admin.metadata(deadline)

    def _offsets(
        self, partitions: dict[str, list[int]], deadline: float
    ) -> dict[str, dict[int, Offsets]]:
        return self._admin.offsets(partitions, deadline)

    def _groups(self, deadline: float) -> tuple[dict[str, GroupInfo], dict[str, Committed]]:
        return self._admin.groups(deadline)
