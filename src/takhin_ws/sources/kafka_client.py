"""The blocking side of the ``kafka`` source: one confluent-kafka ``AdminClient`` and
the requests of one tick, each bounded by a deadline (run them in worker threads).

:class:`KafkaAdmin` owns the client (librdkafka). Its calls batch what Kafka lets them
batch: one metadata request, one ListOffsets per offset kind for every partition, one
group listing, DescribeGroups in batches of :data:`DESCRIBE_BATCH`, and the committed
offsets of every group requested at once. An answer about one partition or group that
went away (a topic deleted mid-tick) drops that partition or group; an error about the
cluster or the connection raises :class:`KafkaSourceError`, whose message names the
bootstrap, the request, and what librdkafka itself reported (a refused login...), with
every secret property value masked (which errors are which, and the secrets: see
:mod:`takhin_ws.sources.kafka_errors`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

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

from ..core.snapshot import GroupInfo
from ..wire.messages import GroupState
from .kafka_errors import (
    FATAL,
    GONE,
    ClientLog,
    ErrorLog,
    KafkaSourceError,
    error_of,
    is_secret,
    mask_config,
)
from .kafka_model import Offsets

__all__ = [
    "DESCRIBE_BATCH",
    "KafkaAdmin",
    "KafkaSourceError",
    "is_secret",
    "mask_config",
]

logger: Final = logging.getLogger("takhin_ws.metrics")
#: Groups described per DescribeGroups request.
DESCRIBE_BATCH: Final = 100
#: Partitions per ListOffsets call.
LIST_OFFSETS_BATCH: Final = 500
#: Seconds a log start offset is reused before it is read again.
START_OFFSETS_REFRESH: Final = 30.0
#: Shortest request timeout handed to librdkafka (it refuses 0).
_MIN_REQUEST_TIMEOUT: Final = 0.05
#: Seconds a failed request waits for the client's own report of the cause.
_CAUSE_WAIT: Final = 0.5
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


#: Committed offsets of one group's partitions, by topic.
Committed = dict[str, dict[int, int]]


def _state(state: object) -> GroupState:
    """One of the five 2.9 states. librdkafka says UNKNOWN for the states of the new
    consumer protocol it does not name (``Assigning``, ``Reconciling``): a rebalance
    under way."""
    if isinstance(state, ConsumerGroupState):
        return _STATES.get(state, "PreparingRebalance")
    return "PreparingRebalance"


def _key(tp: TopicPartition) -> tuple[str, int]:
    return (tp.topic, tp.partition)


def _since(began: float) -> str:
    return f"{(time.monotonic() - began) * 1000:.0f} ms"


class KafkaAdmin:
    """One ``AdminClient`` for *bootstrap* with the client properties *config*; every
    method blocks (up to its *deadline*, a :func:`time.monotonic` time).

    The client is only ever reached through ``self._admin`` (never kept in a local
    that a traceback could hold on to), so :meth:`close` drops the last reference in
    the calling thread, or a call still running drops it in its own thread.
    """

    def __init__(
        self, bootstrap: str, config: Iterable[tuple[str, str]] = (), *, describe_batch: int
    ) -> None:
        self.bootstrap = bootstrap
        self.config = tuple(config)
        self.describe_batch = describe_batch
        self._errors = ErrorLog()
        self._polling = threading.Lock()
        #: Remembered log start offsets, by (topic, partition), and when read.
        self._starts: dict[tuple[str, int], int] = {}
        self._starts_read = -math.inf
        conf: dict[str, Any] = dict(self.config)
        conf.update(
            {"bootstrap.servers": bootstrap, "error_cb": self._errors, "logger": ClientLog()}
        )
        try:
            self._admin: AdminClient | None = AdminClient(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            error = error_of(exc)
            reason = error.str() if error is not None else str(exc)
            raise ValueError(f"kafka client config refused: {self._redact(reason)}") from None

    def close(self) -> None:
        """Destroy the client (librdkafka joins its threads: blocks briefly)."""
        self._admin = None

    def succeeded(self) -> None:
        """A tick went through: forget the client's last complaint."""
        self._errors.last = None

    @property
    def _client(self) -> AdminClient:
        if self._admin is None:
            raise KafkaSourceError("kafka source is closed")
        return self._admin

    def _serve(self, wait: float = 0.0) -> None:
        """Serve the client's error and log callbacks (waiting up to *wait* s).

        One thread at a time: two threads polling one client at once can crash
        librdkafka. A thread that finds another serving waits for it up to *wait* s
        (what it waits for may be what that one is serving), else leaves it to it.
        """
        if not self._polling.acquire(timeout=wait if wait > 0 else -1, blocking=wait > 0):
            return
        try:
            if self._admin is not None:
                self._admin.poll(wait)
        finally:
            self._polling.release()

    def _remaining(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), _MIN_REQUEST_TIMEOUT)

    def metadata(self, deadline: float) -> dict[str, list[int]]:
        """Partition ids of every topic the cluster lists."""
        began = time.monotonic()
        self._serve()
        try:
            metadata = self._client.list_topics(timeout=self._remaining(deadline))
        except KafkaException as exc:
            raise self._failure("metadata request", exc) from None
        logger.debug(
            "kafka %s: metadata of %d topics in %s",
            self.bootstrap,
            len(metadata.topics),
            _since(began),
        )
        return {
            name: sorted(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.partitions and (topic.error is None or topic.error.code() not in GONE)
        }

    def offsets(
        self, partitions: Mapping[str, list[int]], deadline: float
    ) -> dict[str, dict[int, Offsets]]:
        """(start, end) offsets of every partition; a topic deleted since the
        metadata came back is absent.

        End offsets are read every tick; start offsets (they move only when retention
        deletes a segment) every :data:`START_OFFSETS_REFRESH` seconds, and at once for
        a partition not seen before. A partition whose end is below its remembered
        start was deleted and made again: it starts at 0 and is read afresh next tick.
        """
        began = time.monotonic()
        wanted = [TopicPartition(t, p) for t, ids in partitions.items() for p in ids]
        if not wanted:
            return {}
        refresh = began - self._starts_read >= START_OFFSETS_REFRESH
        unknown = wanted if refresh else [tp for tp in wanted if _key(tp) not in self._starts]
        self._serve()
        ends = self._list_offsets(wanted, _LATEST, deadline)
        starts = self._list_offsets(unknown, _EARLIEST, deadline)
        end_of = self._wait(ends, deadline, "offsets request")
        start_of = self._wait(starts, deadline, "offsets request")
        if refresh:
            self._starts = {}
            self._starts_read = began
        out: dict[str, dict[int, Offsets]] = {}
        for tp in wanted:
            end, start = end_of[tp], start_of.get(tp)
            if isinstance(end, BaseException) or isinstance(start, BaseException):
                self._partition_error("offsets", tp, end, start)
                self._starts.pop(_key(tp), None)
                continue
            if start is not None:
                self._starts[_key(tp)] = int(start.offset)
            first = self._starts.get(_key(tp), 0)
            if int(end.offset) < first:  # a new partition under an old name
                first = 0
                del self._starts[_key(tp)]
            out.setdefault(tp.topic, {})[tp.partition] = (first, int(end.offset))
        if len(self._starts) > len(wanted):  # forget deleted partitions
            self._starts = {
                _key(tp): self._starts[_key(tp)] for tp in wanted if _key(tp) in self._starts
            }
        logger.debug(
            "kafka %s: offsets of %d partitions (%d start offsets) in %s",
            self.bootstrap,
            len(wanted),
            len(unknown),
            _since(began),
        )
        return out

    def _list_offsets(
        self, wanted: list[TopicPartition], spec: OffsetSpec, deadline: float
    ) -> dict[TopicPartition, concurrent.futures.Future[Any]]:
        """ListOffsets for *wanted*, in requests of :data:`LIST_OFFSETS_BATCH` partitions
        (librdkafka's cost grows faster than linearly with the partitions of one call)."""
        futures: dict[TopicPartition, concurrent.futures.Future[Any]] = {}
        timeout = self._remaining(deadline)
        try:
            for start in range(0, len(wanted), LIST_OFFSETS_BATCH):
                batch = wanted[start : start + LIST_OFFSETS_BATCH]
                futures.update(
                    self._client.list_offsets(dict.fromkeys(batch, spec), request_timeout=timeout)
                )
        except KafkaException as exc:
            raise self._failure("offsets request", exc) from None
        return futures

    def groups(self, deadline: float) -> tuple[dict[str, GroupInfo], dict[str, Committed]]:
        """Every consumer group's state and members, and its committed offsets."""
        began = time.monotonic()
        self._serve()
        try:
            listing = self._client.list_consumer_groups(request_timeout=self._remaining(deadline))
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
                described.update(
                    self._client.describe_consumer_groups(batch, request_timeout=timeout)
                )
            for group in ids:
                offsets.update(
                    self._client.list_consumer_group_offsets(
                        [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
                    )
                )
        except KafkaException as exc:
            raise self._failure("group request", exc) from None
        descriptions = self._wait(described, deadline, "group description")
        commits = self._wait(offsets, deadline, "committed offsets request")
        infos: dict[str, GroupInfo] = {}
        committed: dict[str, Committed] = {}
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
            by_topic: Committed = {}
            for tp in answer.topic_partitions or ():
                if tp.error is None and tp.offset >= 0:
                    by_topic.setdefault(tp.topic, {})[tp.partition] = int(tp.offset)
            committed[group] = by_topic
        logger.debug("kafka %s: %d groups described in %s", self.bootstrap, len(ids), _since(began))
        return infos, committed

    # --- waiting and errors ---

    def _wait(
        self, futures: Mapping[_K, concurrent.futures.Future[Any]], deadline: float, what: str
    ) -> dict[_K, Any]:
        """The result (or exception) of every future, all within the deadline.

        One by one: ``concurrent.futures.wait`` on thousands of futures costs far more.
        """
        out: dict[_K, Any] = {}
        for key, future in futures.items():
            try:
                out[key] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except concurrent.futures.TimeoutError:
                raise KafkaSourceError(
                    f"kafka {self.bootstrap}: {what} timed out{self.cause(_CAUSE_WAIT)}"
                ) from None
            except Exception as exc:  # this key's error (KafkaException...)
                out[key] = exc
        return out

    def _check(self, exc: BaseException | KafkaError, what: str) -> None:
        """Raise if *exc* is about the cluster rather than one group or partition."""
        error = exc if isinstance(exc, KafkaError) else error_of(exc)
        if error is None or error.code() in FATAL:
            raise self._failure(what, exc)
        if error.code() not in GONE:
            logger.debug("kafka %s: %s: %s", self.bootstrap, what, error.str())

    def _partition_error(self, what: str, tp: TopicPartition, *answers: object) -> None:
        for answer in answers:
            if isinstance(answer, BaseException):
                self._check(answer, f"{what} of {tp.topic}[{tp.partition}]")

    def _failure(self, what: str, exc: BaseException | KafkaError) -> KafkaSourceError:
        """The error for a failed request (in a worker thread)."""
        error = exc if isinstance(exc, KafkaError) else error_of(exc)
        detail = error.str() if error is not None else f"{type(exc).__name__}: {exc}"
        return KafkaSourceError(
            self._redact(
                f"kafka {self.bootstrap}: {what} failed: {detail}{self.cause(_CAUSE_WAIT)}"
            )
        )

    def cause(self, wait: float = 0.0) -> str:
        """What the client last reported about the cluster (refused login...), if any.

        In a worker thread, *wait* seconds may be spent for the report to come; on
        the event loop, 0.
        """
        self._serve(wait if self._errors.last is None else 0.0)
        error = self._errors.last
        return "" if error is None else self._redact(f" (client: {error.str()})")

    def _redact(self, text: str) -> str:
        for key, value in self.config:
            if value and is_secret(key):
                text = text.replace(value, "***")
        return text
