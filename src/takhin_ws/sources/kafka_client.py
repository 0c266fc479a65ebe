"""The blocking side of the ``kafka`` source: one confluent-kafka ``AdminClient`` and
the requests of one tick, each bounded by a deadline.

:class:`KafkaAdmin` owns the client (librdkafka). Its calls batch what Kafka lets them
batch: one metadata request, one ListOffsets per offset kind for every partition, one
group listing, DescribeGroups in batches of :data:`DESCRIBE_BATCH`, and the committed
offsets of every group requested at once. An answer is whole or the call fails:

- a partition or group that went away (a topic deleted mid-tick) is left out;
- a partition or group that answers with any other error (no leader yet, a coordinator
  still loading, a leader epoch the broker does not know yet...) is asked again after
  a short pause while the deadline allows, and fails the call if it still fails;
- an error about the cluster or the connection fails the call at once.

How it asks, waits and fails (a :class:`KafkaSourceError` naming the bootstrap, the
request and what librdkafka reported, secrets masked; an incompatible broker said so):
:mod:`takhin_ws.sources.kafka_requests`; which errors are which:
:mod:`takhin_ws.sources.kafka_errors`.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)

# confluent_kafka.admin exports OffsetSpec without re-exporting it for type checkers
from confluent_kafka.admin._listoffsets import OffsetSpec

from ..core.snapshot import GroupInfo
from ..wire.messages import GroupState
from .kafka_errors import GONE, KafkaSourceError, is_secret, mask_config
from .kafka_model import Offsets
from .kafka_requests import RETRY_PAUSE, AdminRequests, Key, logger

__all__ = [
    "DESCRIBE_BATCH",
    "Committed",
    "KafkaAdmin",
    "KafkaSourceError",
    "is_secret",
    "mask_config",
]

#: Groups described per DescribeGroups request.
DESCRIBE_BATCH: Final = 100
#: Partitions per ListOffsets call.
LIST_OFFSETS_BATCH: Final = 500
#: Seconds a log start offset is reused before it is read again.
START_OFFSETS_REFRESH: Final = 30.0
_STATES: Final[Mapping[ConsumerGroupState, GroupState]] = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.DEAD: "Dead",
}

_EARLIEST: Final[OffsetSpec] = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: Final[OffsetSpec] = OffsetSpec.latest()  # type: ignore[no-untyped-call]

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


class KafkaAdmin(AdminRequests):
    """The requests of one tick (see the module docstring) on one ``AdminClient`` for
    *bootstrap* with the client properties *config*; every method blocks (up to its
    *deadline*, a :func:`time.monotonic` time)."""

    def __init__(
        self, bootstrap: str, config: Iterable[tuple[str, str]] = (), *, describe_batch: int
    ) -> None:
        super().__init__(bootstrap, config)
        self.describe_batch = describe_batch
        #: Remembered log start offsets, by (topic, partition), and when read.
        self._starts: dict[tuple[str, int], int] = {}
        self._starts_read = -math.inf

    def metadata(self, deadline: float) -> dict[str, list[int]]:
        """Partition ids of every topic the cluster lists. The cluster answered, so
        what the client said about reaching it before is no longer the cause of
        anything: it is forgotten."""
        began = time.monotonic()
        while True:
            self._serve()
            try:
                metadata = self._client.list_topics(timeout=self._remaining(deadline))
                break
            except KafkaException as exc:
                # one broken handshake may be a broker going down or one that never
                # speaks the protocol: ask again while the deadline lets it tell
                if not (self.inconclusive() and deadline - time.monotonic() > 2 * RETRY_PAUSE):
                    raise self._failure("metadata request", exc) from None
            time.sleep(RETRY_PAUSE)
        self._errors.last = None
        self._answered = True
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
        answers = self.ask(keys, self._request_offsets, deadline, "offsets request")
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
        self, keys: list[Key], timeout: float
    ) -> dict[Key, concurrent.futures.Future[Any]]:
        """ListOffsets for *keys*, in requests of :data:`LIST_OFFSETS_BATCH` partitions
        (librdkafka's cost grows faster than linearly with the partitions of one call)."""
        futures: dict[Key, concurrent.futures.Future[Any]] = {}
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
        answers = self.ask(keys, self._request_groups, deadline, "group request")
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
        self, keys: list[Key], timeout: float
    ) -> dict[Key, concurrent.futures.Future[Any]]:
        futures: dict[Key, concurrent.futures.Future[Any]] = {}
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
