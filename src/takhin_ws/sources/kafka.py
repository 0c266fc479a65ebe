"""The ``kafka`` metrics source: a cluster read over the Kafka protocol itself.

Every Kafka-compatible cluster (Takhin, Apache Kafka, Redpanda, MSK...) answers the
admin side of the protocol: Metadata, ListOffsets, ListGroups, DescribeGroups and
OffsetFetch. :class:`KafkaSource` asks it with confluent-kafka's ``AdminClient``
(librdkafka), one client for the source's life, from Trio worker threads bounded by a
:class:`trio.CapacityLimiter`, so the event loop never waits on the cluster. One tick:

- the topics and their partitions (one metadata request), then the log start and end
  offsets of every partition (one ListOffsets for all partitions, earliest and latest);
- meanwhile the consumer groups (one listing), described in batches of
  :data:`DESCRIBE_BATCH`, and the committed offsets of every group, all requested at once.

Every request runs under the collect deadline. The offsets become a snapshot in
:mod:`takhin_ws.sources.kafka_model` (rates from offset deltas between ticks, lag from
committed offsets). With a *prometheus* source beside it, the fields the protocol cannot
give (bytes, latency, connections, disk, memory) are merged from the broker's exposition.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

import trio
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin exports OffsetSpec without re-exporting it for type checkers
from confluent_kafka.admin._listoffsets import OffsetSpec

from .._messages import GroupState
from .._snapshot import GroupInfo, MetricsSourceError, Snapshot
from .kafka_model import Observation, Offsets, compute_snapshot, merge_exposition
from .prometheus import PrometheusSource

__all__ = [
    "DESCRIBE_BATCH",
    "KafkaSource",
    "KafkaSourceError",
    "mask_config",
]

logger: Final = logging.getLogger("takhin_ws.metrics")
#: librdkafka's own log lines (connection attempts...), all at debug level: the
#: producer already logs one line per failure streak.
client_logger: Final = logging.getLogger("takhin_ws.metrics.librdkafka")

#: Groups described per DescribeGroups request.
DESCRIBE_BATCH: Final = 100
#: Worker threads one source may occupy at once (the metadata/offsets chain and the
#: groups chain run side by side; a tick abandoned at its deadline keeps its thread
#: until the client's own timeout, which is the same deadline).
WORKER_THREADS: Final = 2
#: Share of the collect deadline the requests may use: they give up a little before
#: it, so the error says which request failed and why.
REQUEST_SHARE: Final = 0.9
#: Shortest request timeout handed to librdkafka (it refuses 0).
_MIN_REQUEST_TIMEOUT: Final = 0.05
#: Seconds a failed request waits for the client's own report of the cause.
_CAUSE_WAIT: Final = 0.5
#: Words that make a client property's value a secret (masked in reprs and messages).
SECRET_WORDS: Final = ("password", "secret", "jaas", "token", "credential", "key", "pem")

#: A partition error that means the topic went away during the tick: dropped quietly.
_GONE: Final = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.GROUP_ID_NOT_FOUND,
    }
)
#: Errors about the cluster or the connection, not one partition: the tick fails.
_FATAL: Final = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError._RESOLVE,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)

_STATES: Final[Mapping[ConsumerGroupState, GroupState]] = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.DEAD: "Dead",
}

_EARLIEST: Final[OffsetSpec] = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: Final[OffsetSpec] = OffsetSpec.latest()  # type: ignore[no-untyped-call]

_K = TypeVar("_K")
_T = TypeVar("_T")


class KafkaSourceError(MetricsSourceError):
    """The cluster could not be read: unreachable, refused, too slow."""


def is_secret(key: str) -> bool:
    """Whether the client property *key* holds a secret (``sasl.password``...)."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_config(config: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """*config* with the value of every secret property replaced by ``***``."""
    return tuple((key, "***" if is_secret(key) else value) for key, value in config)


def _state(state: object) -> GroupState:
    """One of the five 2.9 states. librdkafka says UNKNOWN for the states of the new
    consumer protocol it does not name (``Assigning``, ``Reconciling``): a rebalance
    under way."""
    if isinstance(state, ConsumerGroupState):
        return _STATES.get(state, "PreparingRebalance")
    return "PreparingRebalance"


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


def _error_of(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class _ClientLog:
    """librdkafka's log callback: its lines go to :data:`client_logger` at debug."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        client_logger.debug(fmt, *args)


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
        self._last_error: KafkaError | None = None
        self._scrape_failing = False
        conf: dict[str, Any] = dict(self.config)
        conf.update(
            {
                "bootstrap.servers": bootstrap,
                "error_cb": self._on_error,
                "logger": _ClientLog(),
            }
        )
        try:
            self._admin: AdminClient | None = AdminClient(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ValueError(f"kafka client config refused: {self._redact(str(exc))}") from None

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
        admin, self._admin = self._admin, None
        if admin is not None:
            holder = [admin]
            del admin
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(holder.clear)
        if self.prometheus is not None:
            await self.prometheus.aclose()

    # --- one tick ---

    async def collect(self) -> Snapshot:
        if self._admin is None:
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
                snapshot = await self._in_thread(
                    compute_snapshot,
                    self._previous,
                    observation,
                    show_internal_topics=self.show_internal_topics,
                )
        except trio.TooSlowError:
            raise KafkaSourceError(
                f"kafka {self.bootstrap}: no answer within {self.timeout:g} s{self._cause()}"
            ) from None
        except BaseExceptionGroup as group:
            single = _single(group)
            if single is group:
                raise
            raise single from None
        self._previous = observation
        self._last_error = None
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
        groups: list[tuple[dict[str, GroupInfo], dict[str, dict[str, dict[int, int]]]]] = []

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

    # --- blocking calls (worker threads) ---

    @property
    def _client(self) -> AdminClient:
        admin = self._admin
        if admin is None:
            raise KafkaSourceError("kafka source is closed")
        admin.poll(0)  # serve error and log callbacks
        return admin

    def _remaining(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), _MIN_REQUEST_TIMEOUT)

    def _metadata(self, deadline: float) -> dict[str, list[int]]:
        """Partition ids of every topic the cluster lists."""
        try:
            metadata = self._client.list_topics(timeout=self._remaining(deadline))
        except KafkaException as exc:
            raise self._failure("metadata request", exc) from None
        return {
            name: sorted(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.partitions and (topic.error is None or topic.error.code() not in _GONE)
        }

    def _offsets(
        self, partitions: Mapping[str, list[int]], deadline: float
    ) -> dict[str, dict[int, Offsets]]:
        """(start, end) offsets of every partition; a topic deleted since the
        metadata came back is absent."""
        wanted = [TopicPartition(t, p) for t, ids in partitions.items() for p in ids]
        if not wanted:
            return {}
        admin = self._client
        timeout = self._remaining(deadline)
        try:
            starts = admin.list_offsets(dict.fromkeys(wanted, _EARLIEST), request_timeout=timeout)
            ends = admin.list_offsets(dict.fromkeys(wanted, _LATEST), request_timeout=timeout)
        except KafkaException as exc:
            raise self._failure("offsets request", exc) from None
        start_of = self._wait(starts, deadline, "offsets request")
        end_of = self._wait(ends, deadline, "offsets request")
        out: dict[str, dict[int, Offsets]] = {}
        for tp in wanted:
            start, end = start_of[tp], end_of[tp]
            if isinstance(start, BaseException) or isinstance(end, BaseException):
                self._partition_error("offsets", tp, start, end)
                continue
            out.setdefault(tp.topic, {})[tp.partition] = (int(start.offset), int(end.offset))
        return out

    def _groups(
        self, deadline: float
    ) -> tuple[dict[str, GroupInfo], dict[str, dict[str, dict[int, int]]]]:
        """Every consumer group's state and members, and its committed offsets."""
        admin = self._client
        try:
            listing = admin.list_consumer_groups(request_timeout=self._remaining(deadline))
            listed = self._wait({"": listing}, deadline, "group listing")[""]
        except KafkaException as exc:
            raise self._failure("group listing", exc) from None
        if isinstance(listed, BaseException):
            raise self._failure("group listing", listed)
        for error in listed.errors:
            self._check(error, "group listing")
        ids = sorted({g.group_id for g in listed.valid})
        if not ids:
            return {}, {}
        timeout = self._remaining(deadline)
        described: dict[str, concurrent.futures.Future[Any]] = {}
        offsets: dict[str, concurrent.futures.Future[Any]] = {}
        try:
            for start in range(0, len(ids), self.describe_batch):
                batch = ids[start : start + self.describe_batch]
                described.update(admin.describe_consumer_groups(batch, request_timeout=timeout))
            for group in ids:
                offsets.update(
                    admin.list_consumer_group_offsets(
                        [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
                    )
                )
        except KafkaException as exc:
            raise self._failure("group request", exc) from None
        descriptions = self._wait(described, deadline, "group description")
        commits = self._wait(offsets, deadline, "committed offsets request")
        infos: dict[str, GroupInfo] = {}
        committed: dict[str, dict[str, dict[int, int]]] = {}
        for group in ids:
            description = descriptions[group]
            if isinstance(description, BaseException):
                self._check(description, "group description")
                continue
            state = _state(description.state)
            if state == "Dead":  # deleted since the listing
                continue
            infos[group] = GroupInfo(state=state, members=len(description.members))
            answer = commits[group]
            if isinstance(answer, BaseException):
                self._check(answer, "committed offsets request")
                continue
            by_topic: dict[str, dict[int, int]] = {}
            for tp in answer.topic_partitions or ():
                if tp.error is None and tp.offset >= 0:
                    by_topic.setdefault(tp.topic, {})[tp.partition] = int(tp.offset)
            committed[group] = by_topic
        return infos, committed

    # --- waiting and errors ---

    def _wait(
        self, futures: Mapping[_K, concurrent.futures.Future[Any]], deadline: float, what: str
    ) -> dict[_K, Any]:
        """The result (or exception) of every future, all within the deadline."""
        _, pending = concurrent.futures.wait(
            futures.values(), timeout=max(deadline - time.monotonic(), 0.0)
        )
        if pending:
            for future in pending:
                future.cancel()
            raise KafkaSourceError(
                f"kafka {self.bootstrap}: {what} timed out{self._cause(_CAUSE_WAIT)}"
            )
        return {
            key: future.exception() if future.exception() is not None else future.result()
            for key, future in futures.items()
        }

    def _check(self, exc: BaseException | KafkaError, what: str) -> None:
        """Raise if *exc* is about the cluster rather than one group or partition."""
        error = exc if isinstance(exc, KafkaError) else _error_of(exc)
        if error is None or error.code() in _FATAL:
            raise self._failure(what, exc)
        if error.code() not in _GONE:
            logger.debug("kafka %s: %s: %s", self.bootstrap, what, error.str())

    def _partition_error(self, what: str, tp: TopicPartition, *answers: object) -> None:
        for answer in answers:
            if isinstance(answer, BaseException):
                self._check(answer, f"{what} of {tp.topic}[{tp.partition}]")

    def _failure(self, what: str, exc: BaseException | KafkaError) -> KafkaSourceError:
        """The error for a failed request (in a worker thread)."""
        error = exc if isinstance(exc, KafkaError) else _error_of(exc)
        detail = error.str() if error is not None else f"{type(exc).__name__}: {exc}"
        return KafkaSourceError(
            self._redact(
                f"kafka {self.bootstrap}: {what} failed: {detail}{self._cause(_CAUSE_WAIT)}"
            )
        )

    def _cause(self, wait: float = 0.0) -> str:
        """What the client last reported about the cluster (refused login...), if any.

        In a worker thread, *wait* seconds may be spent for the report to come; on
        the event loop, 0.
        """
        admin = self._admin
        if admin is not None:
            admin.poll(wait if self._last_error is None else 0)
        error = self._last_error
        return "" if error is None else self._redact(f" (client: {error.str()})")

    def _on_error(self, error: KafkaError) -> None:
        # "all brokers are down" sums up what the errors before it said better
        if error.code() != KafkaError._ALL_BROKERS_DOWN or self._last_error is None:
            self._last_error = error

    def _redact(self, text: str) -> str:
        for key, value in self.config:
            if value and is_secret(key):
                text = text.replace(value, "***")
        return text
