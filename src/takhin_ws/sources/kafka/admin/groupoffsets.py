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
read and every group whose answer carried an error are left to librdkafka, whose
errors are the ones the source reports.

:class:`DirectGroupOffsets` holds one blocking socket per broker and the coordinator of
every group, kept from tick to tick; a coordinator is asked again for a group whose
answer says it moved (``NOT_COORDINATOR``, ``COORDINATOR_NOT_AVAILABLE``) or whose
coordinator could not be read.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Final

from .groupwire import (
    FIND_COORDINATOR,
    FIND_COORDINATOR_VERSIONS,
    OFFSET_FETCH,
    OFFSET_FETCH_VERSIONS,
    Committed,
    ProtocolError,
    choose,
    decode_api_versions,
    decode_find_coordinator,
    decode_offset_fetch,
    encode_api_versions,
    encode_find_coordinator,
    encode_offset_fetch,
)
from .listoffsets import Address, _receive, _remaining, _why

__all__ = ["DIRECT_SHARE", "MOVED", "DirectGroupOffsets"]

#: Share of the time left that the groups read here may take: the rest is for
#: librdkafka to read the groups this could not.
DIRECT_SHARE: Final = 0.5
#: Group errors that say its coordinator is elsewhere now (asked again).
MOVED: Final = frozenset({15, 16})  # COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR


class _Lacking(Exception):
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
    ) -> tuple[dict[str, Committed], dict[str, str]]:
        """The committed offsets of *groups*, read by a share (:data:`DIRECT_SHARE`) of
        the time left before *deadline* (a :func:`time.monotonic` time).

        Returns the committed offsets of every group read whole, and why each other
        group of *groups* was not (for librdkafka to ask).
        """
        now = time.monotonic()
        deadline = now + max(deadline - now, 0.0) * DIRECT_SHARE
        left: dict[str, str] = {}
        self._finders = tuple(brokers)
        unknown = [group for group in groups if group not in self.coordinators]
        if unknown:
            left.update(self._find(unknown, deadline))
        by_address: dict[Address, list[str]] = {}
        for group in groups:
            address = self.coordinators.get(group)
            if address is not None:
                by_address.setdefault(address, []).append(group)
        sent: list[tuple[Address, _Link, int, list[str]]] = []
        for address, asked in by_address.items():
            try:
                link = self._link(address, deadline)
                version = self._version(link, OFFSET_FETCH, OFFSET_FETCH_VERSIONS)
                correlation = self._next()
                link.sock.settimeout(_remaining(deadline))
                link.sock.sendall(encode_offset_fetch(version, correlation, self._client_id, asked))
            except (OSError, ProtocolError, _Lacking) as exc:
                self._failed(address, exc, asked, left)
                continue
            sent.append((address, link, correlation, asked))
        found: dict[str, Committed] = {}
        for address, link, correlation, asked in sent:
            try:
                got, errors = decode_offset_fetch(_receive(link.sock, deadline), correlation)
            except (OSError, ProtocolError) as exc:
                self._failed(address, exc, asked, left)
                continue
            for group in asked:
                if group in got:
                    found[group] = got[group]
                    continue
                code = errors.get(group)
                left[group] = "not in the answer" if code is None else f"error {code}"
                if code is None or code in MOVED:
                    self.coordinators.pop(group, None)
        self._forget(groups)
        return found, left

    def _forget(self, groups: Sequence[str]) -> None:
        """Forget the coordinators of groups no longer asked for (gone), and close
        the sockets to brokers that coordinate none of the rest."""
        if len(self.coordinators) > len(groups):
            known = self.coordinators
            self.coordinators = {g: known[g] for g in groups if g in known}
        used = {*self.coordinators.values(), *self._bootstrap, *self._finders}
        for address in set(self._links) - used:
            self._drop(address)

    def _find(self, groups: list[str], deadline: float) -> dict[str, str]:
        """Find the coordinator of every group of *groups*, asking the first broker
        that answers (of the last metadata, else of the bootstrap list); returns why
        each group not found was not."""
        why = "no broker to ask"
        for address in dict.fromkeys([*self._finders, *self._bootstrap]):
            try:
                link = self._link(address, deadline)
                version = self._version(link, FIND_COORDINATOR, FIND_COORDINATOR_VERSIONS)
                correlation = self._next()
                link.sock.settimeout(_remaining(deadline))
                link.sock.sendall(
                    encode_find_coordinator(version, correlation, self._client_id, groups)
                )
                found, errors = decode_find_coordinator(_receive(link.sock, deadline), correlation)
            except _Lacking as exc:
                why = str(exc)
                break  # (the brokers of one cluster offer the same)
            except (OSError, ProtocolError) as exc:
                why = f"FindCoordinator to {address[0]}:{address[1]}: {_why(exc)}"
                self._drop(address)
                if isinstance(exc, TimeoutError):
                    break
                continue
            for group, (_node, host, port) in found.items():
                self.coordinators[group] = (host, port)
            return {
                group: f"FindCoordinator: error {errors.get(group)}"
                for group in groups
                if group not in found
            }
        return dict.fromkeys(groups, why)

    def _failed(
        self, address: Address, exc: BaseException, asked: list[str], left: dict[str, str]
    ) -> None:
        """*address* could not be read: its groups left with why; unless it only
        lacks a version, its socket is closed and their coordinator asked again."""
        why = f"OffsetFetch to {address[0]}:{address[1]}: {_why(exc)}"
        left.update(dict.fromkeys(asked, why))
        if isinstance(exc, _Lacking):
            return
        self._drop(address)
        self.coordinators = {g: a for g, a in self.coordinators.items() if a != address}

    def _version(self, link: _Link, api: int, spoken: Sequence[int]) -> int:
        version = choose(spoken, link.versions.get(api))
        if version is None:
            raise _Lacking(
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
        sock = socket.create_connection(address, timeout=_remaining(deadline))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            correlation = self._next()
            sock.sendall(encode_api_versions(correlation, self._client_id))
            versions = decode_api_versions(_receive(sock, deadline), correlation)
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
