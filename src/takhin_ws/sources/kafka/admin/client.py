"""The blocking side of the ``kafka`` source: one confluent-kafka ``AdminClient`` and
the requests of one tick, each bounded by a deadline.

:class:`KafkaAdmin` owns the client (librdkafka). Its calls batch what Kafka lets them
batch: one metadata request (:mod:`.metadata`: over the protocol itself where it can,
else librdkafka's), the offsets of every partition (:mod:`.offsets`: over the
protocol itself where it can, else one librdkafka ListOffsets a kind), one group
listing (one ListGroups a broker), DescribeGroups in batches of :data:`DESCRIBE_BATCH`
(:mod:`.groups`: over the protocol itself where it can, else librdkafka's), and the
committed offsets of every group (:mod:`.groupoffsets`: one request per coordinator
over the protocol itself where it can, else one librdkafka request a group, all
requested at once). An answer is whole or the call fails:

- a partition or group that went away (a topic deleted mid-tick) is left out;
- a partition or group that answers with any other error (no leader yet, a coordinator
  still loading, a leader epoch the broker does not know yet...) is asked again after
  a short pause while the deadline allows, and fails the call if it still fails;
- an error about the cluster or the connection fails the call at once.

How it asks, waits and fails (a :class:`KafkaSourceError` naming the bootstrap, the
request and what librdkafka reported, secrets masked; an incompatible broker said so):
:mod:`takhin_ws.sources.kafka.admin.requests`; which errors are which:
:mod:`takhin_ws.sources.kafka.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
)

from ....core.metrics.snapshot import GroupInfo
from ....wire.messages import GroupState
from ..errors import GONE, KafkaSourceError, is_secret, mask_config
from .groupoffsets import ATTEMPTS
from .groups import DirectGroups, Listing
from .groupwire import Committed
from .metadata import Cluster, parse_bootstrap, read_metadata
from .offsets import OffsetRequests, plaintext
from .requests import RETRY_PAUSE, Batch, Key, logger, one

__all__ = [
    "DESCRIBE_BATCH",
    "DIRECT_METADATA_SHARE",
    "Committed",
    "KafkaAdmin",
    "KafkaSourceError",
    "is_secret",
    "mask_config",
]

#: Share of the time left that the metadata over the protocol may take: librdkafka,
#: asked when it fails, has the rest (and says why, a hung broker included).
DIRECT_METADATA_SHARE: Final = 0.5
#: Groups described per DescribeGroups request.
DESCRIBE_BATCH: Final = 100
#: Ticks over which every unchanged group is described once (one in this many each tick).
DESCRIBE_ROUNDS: Final = 5
_STATES: Final[Mapping[ConsumerGroupState, GroupState]] = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.DEAD: "Dead",
}


def _state(state: object) -> GroupState:
    """One of the five 2.9 states. librdkafka says UNKNOWN for the states of the new
    consumer protocol it does not name (``Assigning``, ``Reconciling``): a rebalance
    under way."""
    if isinstance(state, ConsumerGroupState):
        return _STATES.get(state, "PreparingRebalance")
    return "PreparingRebalance"


def _topic_error(code: int | None) -> KafkaError | str:
    return "no partitions" if code is None else KafkaError(code)


def _committed(offsets: ConsumerGroupTopicPartitions | None) -> Committed | None:
    """The committed offsets of librdkafka's answer (``None``: the group is gone)."""
    if offsets is None:
        return None
    by_topic: Committed = {}
    for tp in offsets.topic_partitions or ():
        if tp.error is None and tp.offset >= 0:
            by_topic.setdefault(tp.topic, {})[tp.partition] = int(tp.offset)
    return by_topic


def _since(began: float) -> str:
    return f"{(time.monotonic() - began) * 1000:.0f} ms"


class KafkaAdmin(OffsetRequests):
    """The requests of one tick (see the module docstring) on one ``AdminClient`` for
    *bootstrap* with the client properties *config*; every method blocks (up to its
    *deadline*, a :func:`time.monotonic` time)."""

    def __init__(
        self, bootstrap: str, config: Iterable[tuple[str, str]] = (), *, describe_batch: int
    ) -> None:
        super().__init__(bootstrap, config)
        self.describe_batch = describe_batch
        #: Which turn of the unchanged groups is described this tick.
        self._round = 0
        #: Whether the last tick put its turn off (it read the metadata).
        self._turn_postponed = False
        #: The groups' listing, descriptions and committed offsets over the protocol
        #: itself (:mod:`.groups`, :mod:`.groupoffsets`), on a plaintext listener.
        self.group_direct = (
            DirectGroups(parse_bootstrap(bootstrap)) if plaintext(self.config) else None
        )

    def close(self) -> None:
        if self.group_direct is not None:
            self.group_direct.close()
        super().close()

    def metadata(self, deadline: float) -> dict[str, list[int]]:
        """Partition ids of every topic the cluster lists (a topic gone since is left
        out; one that lists no partition fails the call), over the protocol itself
        where it can (:mod:`.metadata`) and else with librdkafka. The cluster answered,
        so what the client said about reaching it before is no longer the cause of
        anything: it is forgotten."""
        began = time.monotonic()
        cluster = self._metadata_directly(deadline)
        how = "over the protocol"
        if cluster is None:
            cluster = self._metadata_librdkafka(deadline)
            how = "through librdkafka"
        self._errors.last = None
        self._answered = True
        logger.debug(
            "kafka %s: metadata of %d topics %s in %s",
            self.bootstrap,
            len(cluster.leaders),
            how,
            _since(began),
        )
        out: dict[str, list[int]] = {}
        for name, leaders in cluster.leaders.items():
            error = cluster.errors.get(name)
            if error in GONE:
                continue
            if not leaders:
                raise self._failure(f"metadata of topic {name}", _topic_error(error))
            out[name] = sorted(leaders)
        self.learn_leaders({name: cluster.leaders[name] for name in out}, cluster.brokers)
        return out

    def _metadata_directly(self, deadline: float) -> Cluster | None:
        """The metadata over the protocol (a plaintext listener), asked of the brokers
        of the last metadata, then of the bootstrap addresses, within
        :data:`DIRECT_METADATA_SHARE` of the time left; ``None`` (librdkafka asks then)
        when none answered, or the answer has a topic that would fail the call
        (librdkafka's answer names its error)."""
        if self.direct is None:
            return None
        now = time.monotonic()
        addresses = [*self._brokers.values(), *parse_bootstrap(self.bootstrap)]
        cluster, failed = read_metadata(
            self.direct, addresses, now + (deadline - now) * DIRECT_METADATA_SHARE
        )
        for address, why in failed.items():
            logger.debug("kafka %s: Metadata to %s:%d: %s", self.bootstrap, *address, why)
        if cluster is None:
            return None
        for name, leaders in cluster.leaders.items():
            if not leaders and cluster.errors.get(name) not in GONE:
                logger.debug("kafka %s: Metadata: topic %s has no partition", self.bootstrap, name)
                return None
        return cluster

    def _metadata_librdkafka(self, deadline: float) -> Cluster:
        """The metadata through librdkafka's ``list_topics``."""
        while True:
            self._serve()
            try:
                metadata = self._client.list_topics(timeout=self._remaining(deadline))
                break
            except KafkaException as exc:
                # a cluster that never answered: down, or one that breaks off every
                # handshake? ask again while the deadline lets its handshakes tell
                if not (self.inconclusive() and deadline - time.monotonic() > 2 * RETRY_PAUSE):
                    raise self._failure("metadata request", exc) from None
            time.sleep(RETRY_PAUSE)
        return Cluster(
            brokers={b.id: (str(b.host), int(b.port)) for b in metadata.brokers.values()},
            leaders={
                name: {p: m.leader for p, m in topic.partitions.items()}
                for name, topic in metadata.topics.items()
            },
            errors={
                name: topic.error.code()
                for name, topic in metadata.topics.items()
                if topic.error is not None
            },
        )

    def groups(
        self, deadline: float, known: Mapping[str, GroupInfo] = MappingProxyType({})
    ) -> tuple[dict[str, GroupInfo], dict[str, Committed]]:
        """Every consumer group's state and members, and its committed offsets.

        The listing gives each group's state: a group of *known* (the last snapshot's)
        whose state did not change is described again only every
        :data:`DESCRIBE_ROUNDS` ticks (its member count may have moved through a
        rebalance too quick to see), in turns, a turn waiting a tick that reads the
        metadata (:attr:`metadata_tick`; never two ticks in a row); a new group, or one
        whose state changed, at once. A group of *known* that the listing lacks is
        described before it is let go: a coordinator that is shutting down or still
        loading lists fewer groups, without an error, and a group is gone only when its
        own description says so.
        The listing and the descriptions go over the protocol itself where they can
        (:mod:`.groups`: one ListGroups a broker, DescribeGroups in batches at each
        coordinator), else through librdkafka.
        The committed offsets of every group are read every tick: over the protocol
        itself where it can (:mod:`.groupoffsets`, one request per coordinator), the
        rest with librdkafka (one request a group).
        """
        began = time.monotonic()
        listing = self._list_groups(deadline)
        states = {group: state for group, (state, _direct) in listing.items()}
        ids = sorted(states.keys() | known.keys())
        if not ids:
            return {}, {}
        turn = -1  # (no index is this turn's: it waits)
        self._turn_postponed = self.metadata_tick and not self._turn_postponed
        if not self._turn_postponed:
            self._round = turn = (self._round + 1) % DESCRIBE_ROUNDS
        described = [
            group
            for index, group in enumerate(ids)
            if index % DESCRIBE_ROUNDS == turn
            or group not in known
            or states.get(group) != known[group].state
        ]
        read, left = self._committed_directly(ids, deadline)
        found = self._describe_directly(
            [group for group in described if listing.get(group, (None, False))[1]], deadline
        )
        keys = [("describe", g) for g in described if g not in found]
        keys += [("offsets", g) for g in left]
        answers = self.ask(keys, self._request_groups, deadline, "group request")
        infos: dict[str, GroupInfo] = {}
        committed: dict[str, Committed] = {}
        for group in ids:
            description = found.get(group) or answers.get(("describe", group), known.get(group))
            by_topic = read.get(group)
            if by_topic is None:
                by_topic = _committed(answers[("offsets", group)])
            if description is None or by_topic is None:  # deleted since the listing
                continue
            if isinstance(description, GroupInfo):  # unchanged since it was described
                infos[group] = description
            else:
                state = _state(description.state)
                if state == "Dead":
                    continue
                infos[group] = GroupInfo(state=state, members=len(description.members))
            committed[group] = by_topic
        logger.debug(
            "kafka %s: %d groups (%d described) in %s",
            self.bootstrap,
            len(ids),
            len(described),
            _since(began),
        )
        return infos, committed

    def _list_groups(self, deadline: float) -> Listing:
        """Every group and its state, listed over the protocol itself where it can
        (:mod:`.groups`), else by librdkafka (which fails the call, with its reason,
        if a broker could not list its groups: the listing is not whole)."""
        if self.group_direct is not None:
            listing, why = self.group_direct.listing(self._brokers.values(), deadline)
            if listing is not None:
                return listing
            logger.debug("kafka %s: group listing left to librdkafka (%s)", self.bootstrap, why)
        self._serve()
        try:
            future = self._client.list_consumer_groups(request_timeout=self._remaining(deadline))
        except KafkaException as exc:
            raise self._failure("group listing", exc) from None
        (listed,) = self._wait({"": future}, deadline, "group listing").values()
        if isinstance(listed, BaseException):
            raise self._failure("group listing", listed)
        for error in listed.errors:  # a broker that could not list: not whole
            raise self._failure("group listing", error)
        return {
            g.group_id: (_STATES.get(g.state), g.type != ConsumerGroupType.CONSUMER)
            for g in listed.valid
        }

    def _describe_directly(self, groups: list[str], deadline: float) -> dict[str, GroupInfo]:
        """The state and members of *groups* (of the classic protocol) over the
        protocol itself where it can (:mod:`.groups`): those it could not describe
        are left to librdkafka."""
        if self.group_direct is None or not groups:
            return {}
        found, left = self.group_direct.describe(groups, deadline, self.describe_batch)
        if left:
            (group, why), *_ = left.items()
            logger.debug(
                "kafka %s: %d groups' descriptions left to librdkafka (group %s: %s)",
                self.bootstrap,
                len(left),
                group,
                why,
            )
        return found

    def _committed_directly(
        self, groups: list[str], deadline: float
    ) -> tuple[dict[str, Committed], list[str]]:
        """The committed offsets of *groups* over the protocol itself, and the groups
        it could not read, for librdkafka: all of them without a plaintext listener,
        else those of a broker that could not be read or lacks the versions, or that
        answered an error. A group whose coordinator was still moving or loading after
        the read's rounds fails the tick (not whole): librdkafka would meet the same
        state."""
        if self.group_direct is None:
            return {}, groups
        brokers = self._brokers.values()
        read, failed, waiting = self.group_direct.read(groups, deadline, brokers)
        if waiting:
            (group, why), *_ = waiting.items()
            more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
            raise self._error(
                f"committed offsets of group {group}{more} not read: its coordinator is "
                f"moving or loading ({why}; asked up to {ATTEMPTS} times)",
                None,
            )
        if failed:
            (group, why), *_ = failed.items()
            logger.debug(
                "kafka %s: %d groups' offsets left to librdkafka (group %s: %s)",
                self.bootstrap,
                len(failed),
                group,
                why,
            )
        return read, [group for group in groups if group in failed]

    def _request_groups(self, keys: list[Key], timeout: float) -> list[Batch]:
        batches: list[Batch] = []
        described = [group for kind, group in keys if kind == "describe"]
        for start in range(0, len(described), self.describe_batch):
            batch = described[start : start + self.describe_batch]
            answer = self._client.describe_consumer_groups(batch, request_timeout=timeout)
            batches.extend(one(("describe", group), future) for group, future in answer.items())
        for kind, group in keys:
            if kind == "offsets":
                answer = self._client.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
                )
                batches.append(one((kind, group), answer[group]))
        return batches
