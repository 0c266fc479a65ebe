"""The blocking side of the ``kafka`` source: one confluent-kafka ``AdminClient`` and
the requests of one tick, each bounded by a deadline.

:class:`KafkaAdmin` owns the client (librdkafka). Its calls batch what Kafka lets them
batch: one metadata request, one ListOffsets per offset kind for every partition, one
group listing, DescribeGroups in batches of :data:`DESCRIBE_BATCH`, and the committed
offsets of every group requested at once. An answer is whole or the call fails:

- a partition or group that went away (a topic deleted mid-tick) is left out;
- a partition or group that answers with any other error (no leader yet, a coordinator
  still loading, a leader epoch the broker does not know yet...) is asked again after
  :data:`RETRY_PAUSE` while the deadline allows, and fails the call if it still fails;
- an error about the cluster or the connection fails the call at once.

A failure is a :class:`KafkaSourceError` whose message names the bootstrap, the request,
and what librdkafka itself reported (a refused login...), with every secret property
value masked (which errors are which, and the secrets: see
:mod:`takhin_ws.sources.kafka_errors`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
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
#: Seconds between two askings of a partition or group that answered with an error.
RETRY_PAUSE: Final = 0.1
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
#: What one asking is about: ("end" | "start", partition) or ("describe" | "offsets", group).
_Key = tuple[str, Any]


def _state(state: object) -> GroupState:
    """One of the five 2.9 states. librdkafka says UNKNOWN for the states of the new
    consumer protocol it does not name (``Assigning``, ``Reconciling``): a rebalance
    under way."""
    if isinstance(state, ConsumerGroupState):
        return _STATES.get(state, "PreparingRebalance")
    return "PreparingRebalance"


def _key(tp: TopicPartition) -> tuple[str, int]:
    return (tp.topic, tp.partition)


def _name(key: _Key) -> str:
    subject = key[1]
    if isinstance(subject, TopicPartition):
        return f"{subject.topic}[{subject.partition}]"
    return f"group {subject}"


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
        #: When the tick's caller stops waiting (monotonic): waiting for the client's
        #: report of a cause never goes past it.
        self.hard_deadline = math.inf
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
        """Partition ids of every topic the cluster lists. The cluster answered, so
        what the client said about reaching it before is no longer the cause of
        anything: it is forgotten."""
        began = time.monotonic()
        self._serve()
        try:
            metadata = self._client.list_topics(timeout=self._remaining(deadline))
        except KafkaException as exc:
            raise self._failure("metadata request", exc) from None
        self._errors.last = None
        logger.debug(
            "kafka %s: metadata of %d topics in %s",
            self.bootstrap,
            len(metadata.topics),
            _since(began),
        )
        out: dict[str, list[int]] = {}
        for name, topic in metadata.topics.items():
            if topic.error is not None and topic.error.code() in GONE:
                continue
            if not topic.partitions:
                raise self._failure(f"metadata of topic {name}", topic.error or "no partitions")
            out[name] = sorted(topic.partitions)
        return out

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
        keys = [("end", tp) for tp in wanted] + [("start", tp) for tp in unknown]
        answers = self._ask(keys, self._request_offsets, deadline, "offsets request")
        if refresh:
            self._starts = {}
            self._starts_read = began
        out: dict[str, dict[int, Offsets]] = {}
        for tp in wanted:
            end, start = answers[("end", tp)], answers.get(("start", tp), 0)
            if end is None or start is None:  # deleted since the metadata
                self._starts.pop(_key(tp), None)
                continue
            if ("start", tp) in answers:
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

    def _request_offsets(
        self, keys: list[_Key], timeout: float
    ) -> dict[_Key, concurrent.futures.Future[Any]]:
        """ListOffsets for *keys*, in requests of :data:`LIST_OFFSETS_BATCH` partitions
        (librdkafka's cost grows faster than linearly with the partitions of one call)."""
        futures: dict[_Key, concurrent.futures.Future[Any]] = {}
        for kind, spec in (("end", _LATEST), ("start", _EARLIEST)):
            wanted = [tp for k, tp in keys if k == kind]
            for start in range(0, len(wanted), LIST_OFFSETS_BATCH):
                batch = wanted[start : start + LIST_OFFSETS_BATCH]
                answer = self._client.list_offsets(
                    dict.fromkeys(batch, spec), request_timeout=timeout
                )
                futures.update(((kind, tp), future) for tp, future in answer.items())
        return futures

    def groups(
        self, deadline: float, known: Collection[str] = ()
    ) -> tuple[dict[str, GroupInfo], dict[str, Committed]]:
        """Every consumer group's state and members, and its committed offsets.

        A group of *known* (those of the last snapshot) that the listing lacks is
        described before it is let go: a coordinator that is shutting down or still
        loading lists fewer groups, without an error, and a group is gone only when
        its own description says so.
        """
        began = time.monotonic()
        self._serve()
        try:
            listing = self._client.list_consumer_groups(request_timeout=self._remaining(deadline))
        except KafkaException as exc:
            raise self._failure("group listing", exc) from None
        listed = self._wait({"": listing}, deadline, "group listing")[""]
        if isinstance(listed, BaseException):
            raise self._failure("group listing", listed)
        for error in listed.errors:  # a broker that could not list: not whole
            raise self._failure("group listing", error)
        ids = sorted({g.group_id for g in listed.valid} | set(known))
        if not ids:
            return {}, {}
        keys = [("describe", g) for g in ids] + [("offsets", g) for g in ids]
        answers = self._ask(keys, self._request_groups, deadline, "group request")
        infos: dict[str, GroupInfo] = {}
        committed: dict[str, Committed] = {}
        for group in ids:
            description, offsets = answers[("describe", group)], answers[("offsets", group)]
            if description is None or offsets is None:  # deleted since the listing
                continue
            state = _state(description.state)
            if state == "Dead":
                continue
            infos[group] = GroupInfo(state=state, members=len(description.members))
            by_topic: Committed = {}
            for tp in offsets.topic_partitions or ():
                if tp.error is None and tp.offset >= 0:
                    by_topic.setdefault(tp.topic, {})[tp.partition] = int(tp.offset)
            committed[group] = by_topic
        logger.debug("kafka %s: %d groups described in %s", self.bootstrap, len(ids), _since(began))
        return infos, committed

    def _request_groups(
        self, keys: list[_Key], timeout: float
    ) -> dict[_Key, concurrent.futures.Future[Any]]:
        futures: dict[_Key, concurrent.futures.Future[Any]] = {}
        described = [group for kind, group in keys if kind == "describe"]
        for start in range(0, len(described), self.describe_batch):
            batch = described[start : start + self.describe_batch]
            answer = self._client.describe_consumer_groups(batch, request_timeout=timeout)
            futures.update((("describe", group), future) for group, future in answer.items())
        for kind, group in keys:
            if kind == "offsets":
                answer = self._client.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
                )
                futures[(kind, group)] = answer[group]
        return futures

    # --- asking, waiting and errors ---

    def _ask(
        self,
        keys: list[_Key],
        request: Callable[[list[_Key], float], Mapping[_Key, concurrent.futures.Future[Any]]],
        deadline: float,
        what: str,
    ) -> dict[_Key, Any]:
        """The answer to every key (``None`` for a partition or group that is gone),
        asking again those that failed, until the deadline: whole, or an error."""
        out: dict[_Key, Any] = {}
        pending = keys
        while pending:
            try:
                futures = request(pending, self._remaining(deadline))
            except KafkaException as exc:
                raise self._failure(what, exc) from None
            failed: dict[_Key, BaseException] = {}
            for key, answer in self._wait(futures, deadline, what).items():
                if not isinstance(answer, BaseException):
                    out[key] = answer
                elif self._gone(answer, what):
                    out[key] = None
                else:
                    failed[key] = answer
            if failed:
                self._pause_or_fail(deadline, what, failed)
            pending = [key for key in pending if key in failed]
        return out

    def _pause_or_fail(
        self, deadline: float, what: str, failed: Mapping[_Key, BaseException]
    ) -> None:
        """Wait a little before asking *failed* again, or fail if the deadline is near."""
        (key, first), *_ = failed.items()
        reason = f"{_name(key)}: {self._detail(first)}"
        if deadline - time.monotonic() < 2 * RETRY_PAUSE:
            many = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise KafkaSourceError(
                self._redact(
                    f"kafka {self.bootstrap}: {what} incomplete at the deadline: "
                    f"{reason}{many}{self.cause()}"
                )
            )
        logger.debug("kafka %s: %s: %d asked again (%s)", self.bootstrap, what, len(failed), reason)
        time.sleep(RETRY_PAUSE)

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

    def _gone(self, exc: BaseException, what: str) -> bool:
        """Whether *exc* says the partition or group went away; raises if it is about
        the cluster (unreachable, refused) rather than one of them."""
        error = error_of(exc)
        if error is None or error.code() in FATAL:
            raise self._failure(what, exc)
        return error.code() in GONE

    def _detail(self, exc: BaseException | KafkaError | str) -> str:
        if isinstance(exc, str):
            return exc
        error = exc if isinstance(exc, KafkaError) else error_of(exc)
        return error.str() if error is not None else f"{type(exc).__name__}: {exc}"

    def _failure(self, what: str, exc: BaseException | KafkaError | str) -> KafkaSourceError:
        """The error for a failed request (in a worker thread)."""
        detail = self._detail(exc)
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
        wait = min(wait, self.hard_deadline - time.monotonic())
        self._serve(wait if self._errors.last is None else 0.0)
        error = self._errors.last
        return "" if error is None else self._redact(f" (client: {error.str()})")

    def _redact(self, text: str) -> str:
        for key, value in self.config:
            if value and is_secret(key):
                text = text.replace(value, "***")
        return text
