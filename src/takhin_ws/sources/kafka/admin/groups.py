"""The consumer groups of a cluster over the Kafka protocol itself: every group and
its state (ListGroups to each broker) and the members of many groups at once
(DescribeGroups to each coordinator), beside their committed offsets
(:mod:`.groupoffsets`), without librdkafka.

librdkafka's ``describe_consumer_groups`` builds a Python object per group and per
member on its own threads, and on a 4.x broker first asks ConsumerGroupDescribe (the
new consumer protocol's request) and then, for a classic group, DescribeGroups: at
3,000 groups the first tick, which describes every group, took ~0.8 s of CPU and 2.6
s or more of a 5 s interval (0.13-0.17 s and 0.5 s this way: docs/benchmarks.md).
Here one DescribeGroups v5 (:mod:`.groupwire`) describes a batch of groups at their
coordinator, found and kept by the committed offsets' read, and the answer is read
down to what a snapshot needs: the state and how many members.

As the other direct requests, only over a plaintext listener; the caller asks
librdkafka for what this could not do, and it names its errors:

- the listing as a whole, when a broker could not be read, lacks ListGroups v4-v5 or
  answered an error (a coordinator still loading: librdkafka meets the same and the
  tick fails with its reason);
- a group whose coordinator is not known (its offsets were not read here), that a
  broker could not describe, that answered an error, or that its answer says is
  ``Dead`` (deleted between the listing and the description);
- a group of the new consumer protocol (KIP-848, type ``consumer`` in the listing):
  DescribeGroups answers ``Dead`` for it, librdkafka asks ConsumerGroupDescribe.

Groups are listed as librdkafka lists them: of protocol type ``consumer`` or none (a
group that only commits offsets), not Connect's or a share group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Final, get_args

from ....core.metrics.snapshot import GroupInfo
from ....wire.messages import GroupState
from .framing import Address, ProtocolError, reason_of, receive, send
from .groupoffsets import DIRECT_SHARE, DirectGroupOffsets, Lacking
from .groupwire import (
    DESCRIBE_GROUPS,
    DESCRIBE_GROUPS_VERSIONS,
    LIST_GROUPS,
    LIST_GROUPS_VERSIONS,
    decode_describe_groups,
    decode_list_groups,
    encode_describe_groups,
    encode_list_groups,
)
from .metadata import decode_response as decode_metadata
from .metadata import encode_request as encode_metadata

__all__ = ["CONSUMER_TYPES", "DIRECT_TYPES", "DirectGroups", "Listing", "state_of"]

#: Protocol types of the groups listed (as librdkafka's ``list_consumer_groups``).
CONSUMER_TYPES: Final = frozenset({"consumer", ""})
#: Group types described here (empty: a v4 listing, from a broker without the new
#: consumer protocol).
DIRECT_TYPES: Final = frozenset({"classic", ""})
#: The 2.9 states, by the name a broker gives them.
_NAMES: Final[dict[str, GroupState]] = {name: name for name in get_args(GroupState)}

#: Every group listed: its state (``None``: a state 2.9 does not name) and whether it
#: is described over the protocol (see :data:`DIRECT_TYPES`), by group.
Listing = dict[str, tuple[GroupState | None, bool]]


def _share(deadline: float) -> float:
    """The time by which a direct request must be done: :data:`DIRECT_SHARE` of the
    time left before *deadline*, the rest for librdkafka."""
    now = time.monotonic()
    return now + max(deadline - now, 0.0) * DIRECT_SHARE


def state_of(name: str) -> GroupState:
    """One of the five 2.9 states, as librdkafka reads them: the states of the new
    consumer protocol it does not name (``Assigning``, ``Reconciling``) are a
    rebalance under way."""
    return _NAMES.get(name, "PreparingRebalance")


class DirectGroups(DirectGroupOffsets):
    """The committed offsets' reader (:class:`DirectGroupOffsets`) that also lists and
    describes the groups, on the same sockets and with the same coordinators."""

    def listing(self, brokers: Iterable[Address], deadline: float) -> tuple[Listing | None, str]:
        """Every group of every broker of *brokers* (none known: those a Metadata
        answer of the bootstrap servers names), asked at once and read by a share
        (:data:`DIRECT_SHARE`) of the time left; ``None`` and why when a broker could
        not be read, lacks the versions or answered an error."""
        deadline = _share(deadline)
        addresses = list(dict.fromkeys(brokers))
        try:
            addresses = addresses or self._cluster(deadline)
        except (OSError, ProtocolError) as exc:
            return None, f"Metadata: {reason_of(exc)}"
        if not addresses:
            return None, "Metadata: no broker"
        sent: list[tuple[Address, int, int]] = []
        why = ""
        for address in addresses:
            try:
                _, version, correlation = self._ask(
                    address,
                    LIST_GROUPS,
                    LIST_GROUPS_VERSIONS,
                    deadline,
                    encode_list_groups,
                    self._client_id,
                )
            except Lacking as exc:
                why = str(exc)
                break
            except (OSError, ProtocolError) as exc:
                why = f"ListGroups to {address[0]}:{address[1]}: {reason_of(exc)}"
                self._drop(address)
                break
            sent.append((address, version, correlation))
        listing: Listing = {}
        for address, version, correlation in sent:  # (every answer read: none left behind)
            try:
                body = receive(self._links[address].sock, deadline)
                error, groups = decode_list_groups(body, correlation, version)
            except (OSError, ProtocolError) as exc:
                why = why or f"ListGroups to {address[0]}:{address[1]}: {reason_of(exc)}"
                self._drop(address)
                continue
            if error:
                why = why or f"ListGroups to {address[0]}:{address[1]}: error {error}"
            for group in groups:
                if group.protocol_type in CONSUMER_TYPES:
                    listing[group.group] = (_NAMES.get(group.state), group.type in DIRECT_TYPES)
        return (None, why) if why else (listing, "")

    def _cluster(self, deadline: float) -> list[Address]:
        """The brokers of the cluster, from the first bootstrap server that answers."""
        error: OSError | ProtocolError = ConnectionError("no bootstrap server")
        for address in self._bootstrap:
            try:
                link = self._link(address, deadline)
                correlation = self._next()
                send(link.sock, encode_metadata(correlation, self._client_id, []), deadline)
                cluster = decode_metadata(receive(link.sock, deadline), correlation)
                return list(cluster.brokers.values())
            except (OSError, ProtocolError) as exc:
                error = exc
                self._drop(address)
        raise error

    def describe(
        self, groups: Sequence[str], deadline: float, batch: int
    ) -> tuple[dict[str, GroupInfo], dict[str, str]]:
        """The state and members of each of *groups* whose coordinator is known,
        asked of it in requests of up to *batch* groups (one request a coordinator at
        a time, all coordinators at once), read by a share (:data:`DIRECT_SHARE`) of
        the time left; and why each other group was not described (for librdkafka)."""
        deadline = _share(deadline)
        left: dict[str, str] = {}
        chunks: dict[Address, list[list[str]]] = {}
        for group in groups:
            address = self.coordinators.get(group)
            if address is None:
                left[group] = "its coordinator is not known"
                continue
            waiting = chunks.setdefault(address, [[]])
            if len(waiting[-1]) >= batch:
                waiting.append([])
            waiting[-1].append(group)
        found: dict[str, GroupInfo] = {}
        while chunks:
            sent: list[tuple[Address, int, list[str]]] = []
            for address, waiting in list(chunks.items()):
                asked = waiting.pop(0)
                if not waiting:
                    del chunks[address]
                try:
                    _, _, correlation = self._ask(
                        address,
                        DESCRIBE_GROUPS,
                        DESCRIBE_GROUPS_VERSIONS,
                        deadline,
                        encode_describe_groups,
                        self._client_id,
                        asked,
                    )
                except (OSError, ProtocolError, Lacking) as exc:
                    self._undescribed(address, exc, asked, chunks.pop(address, []), left)
                    continue
                sent.append((address, correlation, asked))
            for address, correlation, asked in sent:
                try:
                    answer = decode_describe_groups(
                        receive(self._links[address].sock, deadline), correlation
                    )
                except (OSError, ProtocolError) as exc:
                    self._undescribed(address, exc, asked, chunks.pop(address, []), left)
                    continue
                for group in asked:
                    described = answer.get(group)
                    if described is None:
                        left[group] = "not in the answer"
                    elif described.error:
                        left[group] = f"error {described.error}"
                        self.coordinators.pop(group, None)
                    elif described.state == "Dead":
                        left[group] = "Dead"
                    else:
                        found[group] = GroupInfo(
                            state=state_of(described.state), members=described.members
                        )
        return found, left

    def _undescribed(
        self,
        address: Address,
        exc: BaseException,
        asked: list[str],
        waiting: list[list[str]],
        left: dict[str, str],
    ) -> None:
        """*address* could not describe *asked*: they and its *waiting* batches go to
        *left* with why; unless it only lacks a version, its socket is closed and the
        coordinator of its groups found again next time."""
        why = f"DescribeGroups to {address[0]}:{address[1]}: {reason_of(exc)}"
        for group in [*asked, *(group for chunk in waiting for group in chunk)]:
            left[group] = why
        if not isinstance(exc, Lacking):
            self._drop(address)
            self.coordinators = {g: a for g, a in self.coordinators.items() if a != address}
