"""The offsets of every partition, for the ``kafka`` source's tick: the log end offset
every tick and the log start offset now and then, asked over the Kafka protocol itself
where that can be done (:mod:`takhin_ws.sources.kafka.admin.listoffsets`: a plaintext
listener, a partition whose leader the last metadata named) and with librdkafka for the
rest (TLS or SASL, a broker that could not be read, a partition that answered an error
and is asked again).

:class:`OffsetRequests` adds this to :class:`~takhin_ws.sources.kafka.admin.requests.AdminRequests`;
:class:`~takhin_ws.sources.kafka.admin.client.KafkaAdmin` builds the rest of a tick on it.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from confluent_kafka import TopicPartition

# confluent_kafka.admin exports OffsetSpec without re-exporting it for type checkers
from confluent_kafka.admin._listoffsets import OffsetSpec

# the lower-level call AdminClient.list_offsets makes (one future per call)
from confluent_kafka.cimpl import _AdminClientImpl

from ..model import Offsets
from .framing import Address
from .listoffsets import EARLIEST, LATEST, UNKNOWN_TOPIC_OR_PARTITION, DirectOffsets
from .metadata import Leaders
from .requests import AdminRequests, Batch, Key, logger

__all__ = ["LIST_OFFSETS_BATCH", "START_OFFSETS_REFRESH", "OffsetRequests", "plaintext"]

#: Partitions per librdkafka ListOffsets call.
LIST_OFFSETS_BATCH: Final = 500
#: Seconds a log start offset is reused before it is read again.
START_OFFSETS_REFRESH: Final = 30.0

_OFFSET_SPECS: Final[Mapping[str, OffsetSpec]] = {
    "end": OffsetSpec.latest(),  # type: ignore[no-untyped-call]
    "start": OffsetSpec.earliest(),  # type: ignore[no-untyped-call]
}
#: The same, as the offset of a partition handed to the lower-level call.
_SPECS: Final[Mapping[str, int]] = {kind: int(spec._value) for kind, spec in _OFFSET_SPECS.items()}

#: The same, as asked over the protocol directly.
_TIMESTAMPS: Final[Mapping[str, int]] = {"end": LATEST, "start": EARLIEST}


def plaintext(config: Iterable[tuple[str, str]]) -> bool:
    """Whether the client properties *config* reach the brokers without TLS or SASL."""
    return dict(config).get("security.protocol", "plaintext").lower() == "plaintext"


def _by_partition(kind: str, result: Mapping[TopicPartition, Any]) -> Iterator[tuple[Key, Any]]:
    """The answers of a per-call ListOffsets, by key: the offset, or the error."""
    for tp, answer in result.items():
        yield (kind, (tp.topic, tp.partition)), getattr(answer, "offset", answer)


def _offset_of(key: Key, future: concurrent.futures.Future[Any]) -> Batch:
    """The batch of a public ListOffsets future: its answer's offset."""
    return (future, [key], lambda result: ((key, result.offset),))


def _by_topic(partitions: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for topic, partition in partitions:
        out.setdefault(topic, []).append(partition)
    return out


def _since(began: float) -> str:
    return f"{(time.monotonic() - began) * 1000:.0f} ms"


class OffsetRequests(AdminRequests):
    """ListOffsets for a tick on the client of :class:`AdminRequests` (and, over a
    plaintext listener, on sockets of its own to each broker)."""

    def __init__(self, bootstrap: str, config: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(bootstrap, config)
        #: Remembered log start offsets, by (topic, partition), and when read.
        self._starts: dict[tuple[str, int], int] = {}
        self._starts_read = -math.inf
        #: Whether ListOffsets goes through the lower-level call (one future per call).
        self._per_call = True
        #: ListOffsets over the protocol itself (:mod:`.listoffsets`), on a plaintext
        #: listener; the leader of every partition and the brokers' addresses, from the
        #: last metadata.
        self.direct = DirectOffsets() if plaintext(self.config) else None
        self._leaders: dict[str, dict[int, int]] = {}
        self._brokers: dict[int, Address] = {}
        #: Whether the last offsets saw the cluster differ from the last metadata (a
        #: partition gone, or one its leader there did not answer for).
        self.metadata_outdated = False
        #: Set by the caller for a tick that already carries the metadata's refresh:
        #: the start offsets' refresh, if due, and a turn of group descriptions
        #: (:class:`~takhin_ws.sources.kafka.admin.client.KafkaAdmin`) wait for the next tick
        #: (once).
        self.metadata_tick = False
        #: Whether the last tick put the start offsets' refresh off.
        self._starts_postponed = False

    def close(self) -> None:
        if self.direct is not None:
            self.direct.close()
        super().close()

    def learn_leaders(self, leaders: Leaders, brokers: dict[int, Address]) -> None:
        """Remember each partition's leader (by topic) and where the brokers are."""
        self._leaders = leaders
        self._brokers = brokers
        self.metadata_outdated = False
        if self.direct is not None:
            self.direct.forget(brokers.values())

    def offsets(
        self, partitions: Mapping[str, list[int]], deadline: float
    ) -> dict[str, dict[int, Offsets]]:
        """(start, end) offsets of every partition; a topic deleted since the
        metadata came back is absent.

        End offsets are read every tick; start offsets (they move only when retention
        deletes a segment) every :data:`START_OFFSETS_REFRESH` seconds, and at once for
        a partition not seen before. A refresh due on a :attr:`metadata_tick` waits
        for the next tick (never two ticks in a row), so that no tick carries both
        periodic reads of every partition. A partition whose end is below its
        remembered start was deleted and made again: it starts at 0 and is read
        afresh next tick.
        """
        began = time.monotonic()
        wanted = [(t, p) for t, ids in partitions.items() for p in ids]
        if not wanted:
            return {}
        due = began - self._starts_read >= START_OFFSETS_REFRESH
        # (nothing remembered yet: every start offset is read now anyway)
        postpone = due and self.metadata_tick and not self._starts_postponed and bool(self._starts)
        self._starts_postponed = postpone
        refresh = due and not postpone
        unknown = wanted if refresh else [tp for tp in wanted if tp not in self._starts]
        self._serve()
        ends, left = self._read_directly("end", partitions, deadline)
        starts: dict[tuple[str, int], int | None] = {}
        if unknown:
            starts, more = self._read_directly(
                "start", partitions if refresh else _by_topic(unknown), deadline
            )
            left += more
        if left or None in ends.values():  # (a leader moved, a topic deleted...)
            self.metadata_outdated = True
        if left:  # with librdkafka, asked again while the deadline allows
            answers = self.ask(left, self._request_offsets, deadline, "offsets request")
            for (kind, tp), answer in answers.items():
                (ends if kind == "end" else starts)[tp] = answer
        if refresh:
            self._starts = {}
            self._starts_read = began
        out: dict[str, dict[int, Offsets]] = {}
        for tp in wanted:
            end, start = ends[tp], starts.get(tp, 0)
            if end is None or start is None:  # deleted since the metadata
                self._starts.pop(tp, None)
                continue
            if tp in starts:
                self._starts[tp] = start
            first = self._starts.get(tp, 0)
            if end < first:  # a new partition under an old name
                first = 0
                del self._starts[tp]
            out.setdefault(tp[0], {})[tp[1]] = (first, end)
        if len(self._starts) > len(wanted):  # forget deleted partitions
            self._starts = {tp: self._starts[tp] for tp in wanted if tp in self._starts}
        logger.debug(
            "kafka %s: offsets of %d partitions (%d start offsets, %d through librdkafka) in %s",
            self.bootstrap,
            len(wanted),
            len(unknown),
            len(left),
            _since(began),
        )
        return out

    def _read_directly(
        self, kind: str, topics: Mapping[str, list[int]], deadline: float
    ) -> tuple[dict[tuple[str, int], int | None], list[Key]]:
        """The *kind* offset of the partitions of *topics*, over the protocol itself,
        each asked of its leader in the last metadata (``None``: the partition is
        gone); and the keys it could not read, for librdkafka: all of them without a
        plaintext listener, else those with no known leader, of a broker that could not
        be read, or that answered an error (a leader that moved...)."""
        if self.direct is None:
            return {}, [(kind, (t, p)) for t, ids in topics.items() for p in ids]
        by_broker: dict[Address, dict[str, list[int]]] = {}
        left: list[Key] = []
        brokers = self._brokers
        for topic, ids in topics.items():
            leaders = self._leaders.get(topic, {})
            for partition in ids:
                address = brokers.get(leaders.get(partition, -1))
                if address is None:
                    left.append((kind, (topic, partition)))
                else:
                    by_broker.setdefault(address, {}).setdefault(topic, []).append(partition)
        if not by_broker:
            return {}, left
        found, errors, failed = self.direct.read(by_broker, _TIMESTAMPS[kind], deadline)
        out: dict[tuple[str, int], int | None] = dict(found)
        for address, why in failed.items():
            logger.debug("kafka %s: ListOffsets to %s:%d: %s", self.bootstrap, *address, why)
        for tp, code in errors.items():
            if code == UNKNOWN_TOPIC_OR_PARTITION:
                out[tp] = None
        answered = sum(
            len(ids)
            for address, asked in by_broker.items()
            if address not in failed
            for ids in asked.values()
        )
        if failed or errors or len(out) < answered:  # the rest, one by one
            left += [
                (kind, (topic, partition))
                for asked in by_broker.values()
                for topic, ids in asked.items()
                for partition in ids
                if (topic, partition) not in out
            ]
        return out, left

    def _request_offsets(self, keys: list[Key], timeout: float) -> list[Batch]:
        """ListOffsets for *keys* with librdkafka, in requests of
        :data:`LIST_OFFSETS_BATCH` partitions (its cost grows faster than linearly
        with the partitions of one call)."""
        batches: list[Batch] = []
        for kind in ("end", "start"):
            wanted = [tp for k, tp in keys if k == kind]
            for start in range(0, len(wanted), LIST_OFFSETS_BATCH):
                batches.extend(
                    self._list_offsets(kind, wanted[start : start + LIST_OFFSETS_BATCH], timeout)
                )
        return batches

    def _list_offsets(
        self, kind: str, partitions: list[tuple[str, int]], timeout: float
    ) -> list[Batch]:
        """One ListOffsets call: with one future for the whole call (confluent-kafka's
        own lower-level call, 5x less CPU than a future per partition), or with the
        public API if that call is not there as expected."""
        spec = _SPECS[kind]
        if self._per_call:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()
            asked = [TopicPartition(topic, partition, spec) for topic, partition in partitions]
            try:
                _AdminClientImpl.list_offsets(self._client, asked, future, request_timeout=timeout)
            except (AttributeError, TypeError) as exc:  # another confluent-kafka
                logger.debug("kafka %s: per-call ListOffsets unavailable (%s)", self.bootstrap, exc)
                self._per_call = False
            else:
                keys = [(kind, tp) for tp in partitions]
                return [(future, keys, lambda result: _by_partition(kind, result))]
        answer = self._client.list_offsets(
            {TopicPartition(t, p): _OFFSET_SPECS[kind] for t, p in partitions},
            request_timeout=timeout,
        )
        return [_offset_of((kind, (tp.topic, tp.partition)), f) for tp, f in answer.items()]
