"""The committed offsets of many consumer groups over the Kafka protocol itself: one
OffsetFetch per coordinator for all its groups, without librdkafka.

librdkafka's ``list_consumer_group_offsets`` takes one group a call: one OffsetFetch,
one future and a Python object per partition, built on its own threads (~60 ms of CPU
a tick at 300 groups, most of a tick at 3,000). Brokers since Kafka 3.0 read many
groups in one request: FindCoordinator v4 finds the coordinator of every group at once
(KIP-699), OffsetFetch v8 reads every committed offset of many groups at once (KIP-709;
:mod:`takhin_ws.sources.kafka.admin.groupwire` writes and reads them). Each broker
says first which versions it offers (ApiVersions, once a connection); a broker without
them, a listener with TLS or SASL (not asked here at all), a broker that could not be
read and every group whose answer carried another error are left to librdkafka, whose
errors are the ones the source reports.

:class:`DirectGroupOffsets` holds one blocking socket per broker and the coordinator of
every group, kept from tick to tick. Within one read, a group whose coordinator moved
or is not ready (:data:`SETTLING`: ``NOT_COORDINATOR``, ``COORDINATOR_NOT_AVAILABLE``,
``COORDINATOR_LOAD_IN_PROGRESS``, what a broker answers for a while after it starts)
or could not be reached has its coordinator found again and is asked again, up to
:data:`ATTEMPTS` rounds in all. A group still settling after them is not left to
librdkafka, which would meet the same state: the read says so, and the tick is not
whole. (librdkafka 2.16's ``ListConsumerGroupOffsets`` also crashes the process on a
``NOT_COORDINATOR`` or ``COORDINATOR_NOT_AVAILABLE`` answer: its OffsetFetch handler
asks the client's consumer group, which an admin client lacks, to find the coordinator
again; librdkafka issue 5040.)
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from .framing import Address, ProtocolError, connect, reason_of, receive, send
from .groupwire import (
    FIND_COORDINATOR,
    FIND_COORDINATOR_VERSIONS,
    OFFSET_FETCH,
    OFFSET_FETCH_VERSIONS,
    Committed,
    choose,
    decode_api_versions,
    decode_find_coordinator,
    decode_offset_fetch,
    encode_api_versions,
    encode_find_coordinator,
    encode_offset_fetch,
)

__all__ = [
    "ATTEMPTS",
    "DIRECT_SHARE",
    "MOVED",
    "SETTLING",
    "SETTLING_PAUSE",
    "DirectGroupOffsets",
    "Lacking",
]

#: Share of the time left that the groups read here may take: the rest is for
#: librdkafka to read the groups this could not.
DIRECT_SHARE: Final = 0.5
#: Group errors that say its coordinator is elsewhere now, or not known: found again.
MOVED: Final = frozenset({15, 16})  # COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
#: Group errors that say its coordinator moved or is not ready yet (a broker that has
#: just started loads its groups first): asked again, and never left to librdkafka.
SETTLING: Final = {
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE",
    16: "NOT_COORDINATOR",
}
#: Rounds of asking in one read: a group whose coordinator is settling (or could not be
#: reached) is asked again, its coordinator found again if it moved, up to this many.
ATTEMPTS: Final = 4
#: Seconds before a round after a coordinator said it is not ready yet.
SETTLING_PAUSE: Final = 0.05


class Lacking(Exception):
    """The broker does not offer the version asked for (its connection is kept)."""


class _Link:
    """One broker's socket and the versions it offers, by API key."""

    def __init__(self, sock: socket.socket, versions: dict[int, tuple[int, int]]) -> None:
        self.sock = sock
        self.versions = versions


class DirectGroupOffsets:
    """FindCoordinator and OffsetFetch over a socket of their own to each broker
    (blocking, each step within the caller's deadline), kept open from one call to
    the next; the servers of *bootstrap* are asked who coordinates until a broker of
    the last metadata is known (:meth:`read`'s *brokers*)."""

    def __init__(self, bootstrap: Sequence[Address], client_id: str = "takhin-ws") -> None:
        self._bootstrap = tuple(bootstrap)
        self._client_id = client_id.encode()
        self._links: dict[Address, _Link] = {}
        self._correlation = 0
        #: The coordinator of every group found, by group.
        self.coordinators: dict[str, Address] = {}
        #: The brokers of the last metadata, asked who coordinates (their sockets kept).
        self._finders: tuple[Address, ...] = ()

    def close(self) -> None:
        for address in list(self._links):
            self._drop(address)

    def read(
        self, groups: Sequence[str], deadline: float, brokers: Iterable[Address] = ()
    ) -> tuple[dict[str, Committed], dict[str, str], dict[str, str]]:
        """The committed offsets of *groups*, read by a share (:data:`DIRECT_SHARE`) of
        the time left before *deadline* (a :func:`time.monotonic` time), in up to
        :data:`ATTEMPTS` rounds (see the module docstring).

        Returns the committed offsets of every group read whole; why each group that
        could not be read was not (for librdkafka to ask); and why each group whose
        coordinator was still moving or loading at the end was not (librdkafka would
        meet the same: the caller's tick is not whole).
        """
        now = time.monotonic()
        deadline = now + max(deadline - now, 0.0) * DIRECT_SHARE
        self._finders = tuple(brokers)
        found: dict[str, Committed] = {}
        left: dict[str, str] = {}
        #: Groups to ask again: why, and whether their coordinator said it is settling.
        again: dict[str, tuple[str, int]] = dict.fromkeys(groups, ("not asked", 0))
        for attempt in range(ATTEMPTS):
            if attempt:
                pause = SETTLING_PAUSE if any(code for _, code in again.values()) else 0.0
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            asking, again = list(again), {}
            self._round(asking, deadline, found, left, again)
            if not again:
                break
        waiting = {group: why for group, (why, code) in again.items() if code}
        left.update((group, why) for group, (why, code) in again.items() if not code)
        self._forget(groups)
        return found, left, waiting

    def _round(
        self,
        groups: list[str],
        deadline: float,
        found: dict[str, Committed],
        left: dict[str, str],
        again: dict[str, tuple[str, int]],
    ) -> None:
        """One round: the coordinators not known found, then each asked for its
        groups; each group goes to *found*, *left* (for librdkafka) or *again*."""
        unknown = [group for group in groups if group not in self.coordinators]
        if unknown:
            self._find(unknown, deadline, left, again)
        by_address: dict[Address, list[str]] = {}
        for group in groups:
            address = self.coordinators.get(group)
            if address is not None and group not in again and group not in left:
                by_address.setdefault(address, []).append(group)
        sent: list[tuple[Address, _Link, int, list[str]]] = []
        for address, asked in by_address.items():
            try:
                link, _, correlation = self._ask(
                    address,
                    OFFSET_FETCH,
                    OFFSET_FETCH_VERSIONS,
                    deadline,
                    encode_offset_fetch,
                    self._client_id,
                    asked,
                )
            except (OSError, ProtocolError, Lacking) as exc:
                self._failed(address, exc, asked, left, again)
                continue
            sent.append((address, link, correlation, asked))
        for address, link, correlation, asked in sent:
            try:
                got, errors = decode_offset_fetch(receive(link.sock, deadline), correlation)
            except (OSError, ProtocolError) as exc:
                self._failed(address, exc, asked, left, again)
                continue
            for group in asked:
                if group in got:
                    found[group] = got[group]
                    continue
                code = errors.get(group)
                if code in SETTLING:
                    again[group] = (f"error {code} ({SETTLING[code]})", code)
                else:
                    left[group] = "not in the answer" if code is None else f"error {code}"
                if code is None or code in MOVED:
                    self.coordinators.pop(group, None)

    def _forget(self, groups: Sequence[str]) -> None:
        """Forget the coordinators of groups no longer asked for (gone), and close
        the sockets to brokers that coordinate none of the rest."""
        if len(self.coordinators) > len(groups):
            known = self.coordinators
            self.coordinators = {g: known[g] for g in groups if g in known}
        used = {*self.coordinators.values(), *self._bootstrap, *self._finders}
        for address in set(self._links) - used:
            self._drop(address)

    def _find(
        self,
        groups: list[str],
        deadline: float,
        left: dict[str, str],
        again: dict[str, tuple[str, int]],
    ) -> None:
        """Find the coordinator of every group of *groups*, asking the first broker
        that answers (of the last metadata, else of the bootstrap list); each group
        not found goes to *left* or *again* with why."""
        why = "no broker to ask"
        retry = False
        for address in dict.fromkeys([*self._finders, *self._bootstrap]):
            try:
                link, _, correlation = self._ask(
                    address,
                    FIND_COORDINATOR,
                    FIND_COORDINATOR_VERSIONS,
                    deadline,
                    encode_find_coordinator,
                    self._client_id,
                    groups,
                )
                found, errors = decode_find_coordinator(receive(link.sock, deadline), correlation)
            except Lacking as exc:
                why, retry = str(exc), False
                break  # (the brokers of one cluster offer the same)
            except (OSError, ProtocolError) as exc:
                why = f"FindCoordinator to {address[0]}:{address[1]}: {reason_of(exc)}"
                retry = isinstance(exc, OSError)
                self._drop(address)
                if isinstance(exc, TimeoutError):
                    break
                continue
            for group, (_node, host, port) in found.items():
                self.coordinators[group] = (host, port)
            for group in groups:
                code = errors.get(group)
                if group in found:
                    continue
                if code in SETTLING:
                    again[group] = (f"FindCoordinator: error {code} ({SETTLING[code]})", code)
                else:
                    left[group] = f"FindCoordinator: error {code}"
            return
        if retry:  # no broker could be reached: asked again next round, then librdkafka
            again.update(dict.fromkeys(groups, (why, 0)))
        else:
            left.update(dict.fromkeys(groups, why))

    def _failed(
        self,
        address: Address,
        exc: BaseException,
        asked: list[str],
        left: dict[str, str],
        again: dict[str, tuple[str, int]],
    ) -> None:
        """*address* could not be read: its groups go to *again* if it could not be
        reached, else to *left*, with why; unless it only lacks a version, its socket
        is closed and their coordinator found again."""
        why = f"OffsetFetch to {address[0]}:{address[1]}: {reason_of(exc)}"
        if isinstance(exc, OSError):
            again.update(dict.fromkeys(asked, (why, 0)))
        else:
            left.update(dict.fromkeys(asked, why))
        if isinstance(exc, Lacking):
            return
        self._drop(address)
        self.coordinators = {g: a for g, a in self.coordinators.items() if a != address}

    def _ask(
        self,
        address: Address,
        api: int,
        spoken: Sequence[int],
        deadline: float,
        encode: Callable[..., bytes],
        *args: Any,
    ) -> tuple[_Link, int, int]:
        """Send *address* one request of *api* in the newest of the *spoken* versions it
        takes (``encode(version, correlation, *args)``): its link, that version and the
        correlation id to read the answer by. Raises ``OSError``, :class:`ProtocolError`,
        :class:`Lacking`."""
        link = self._link(address, deadline)
        version = self._version(link, api, spoken)
        correlation = self._next()
        send(link.sock, encode(version, correlation, *args), deadline)
        return link, version, correlation

    def _version(self, link: _Link, api: int, spoken: Sequence[int]) -> int:
        version = choose(spoken, link.versions.get(api))
        if version is None:
            raise Lacking(
                f"the broker offers no version {spoken[0]}-{spoken[-1]} of API {api} "
                f"(it offers {link.versions.get(api, 'none')})"
            )
        return version

    def _next(self) -> int:
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        return self._correlation

    def _link(self, address: Address, deadline: float) -> _Link:
        """The connection to *address*: one made (and asked its versions) if none."""
        link = self._links.get(address)
        if link is not None:
            return link
        sock = connect(address, deadline)
        try:
            correlation = self._next()
            send(sock, encode_api_versions(correlation, self._client_id), deadline)
            versions = decode_api_versions(receive(sock, deadline), correlation)
        except BaseException:
            sock.close()
            raise
        link = self._links[address] = _Link(sock, versions)
        return link

    def _drop(self, address: Address) -> None:
        link = self._links.pop(address, None)
        if link is not None:
            with contextlib.suppress(OSError):
                link.sock.close()
