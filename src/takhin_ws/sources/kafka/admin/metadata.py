"""Metadata over the Kafka protocol itself: the brokers, and every topic's partitions
and their leaders, asked of one broker without librdkafka.

librdkafka answers a Metadata request with a Python object per partition (its
replicas and in-sync replicas as lists): at 12,000 partitions ~30-60 ms of CPU a
metadata tick. Here one Metadata v4 request (a form every broker from Kafka 0.11 to
4.x reads: 4.0 dropped v0-v3, v9 on are "flexible") asks for every topic, and the
answer is read a topic at a time: a topic's partitions that have the same number of
replicas and of in-sync replicas (nearly always all of them) are one run of
fixed-size records, read with :meth:`struct.Struct.iter_unpack` and checked in C
(the counts read where that layout puts them: each equal to the first partition's
proves the layout); a topic whose partitions differ is read partition by partition.
Only over a plaintext listener, as :mod:`.listoffsets`: the caller asks librdkafka
when this path fails in any way.

:func:`encode_request` and :func:`decode_response` are the protocol (no I/O);
:func:`read_metadata` asks the first broker of a list that answers, on the sockets a
:class:`~.listoffsets.DirectOffsets` keeps (the metadata and the offsets of a tick are
asked from one thread, one after the other).
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from .framing import HEADER, I8, I16, I32, Address, ProtocolError
from .listoffsets import DirectOffsets

__all__ = [
    "API_KEY",
    "NO_LEADER",
    "VERSION",
    "Cluster",
    "Leaders",
    "decode_response",
    "encode_request",
    "parse_bootstrap",
    "read_metadata",
]

#: The Metadata request, and the version of it spoken here.
API_KEY: Final = 3
VERSION: Final = 4
#: A partition's leader when it has none (leader election under way, its broker down).
NO_LEADER: Final = -1
#: The port of a bootstrap address that names none (librdkafka's default).
DEFAULT_PORT: Final = 9092
#: A null array (v1 on: "every topic" in the request).
_NULL: Final = -1

#: The answer's head (v4): correlation id, throttle time, broker count.
_HEAD: Final = struct.Struct(">iii")
#: A partition's head (v4): error code, partition id, leader, replica count.
_PARTITION: Final = struct.Struct(">hiii")
#: Fields of a partition record read by :func:`_run` (error, id, leader, replicas, isr).
_FIELDS: Final = 5

#: Every topic's partitions' leaders: {topic: {partition: leader}}.
Leaders = dict[str, dict[int, int]]


class Cluster(NamedTuple):
    """What one Metadata answer says."""

    #: Each broker's (host, port) by its id.
    brokers: dict[int, Address]
    #: Each topic's leader by partition id (:data:`NO_LEADER`: none).
    leaders: Leaders
    #: The error code of each topic that answered one (its partitions may be empty).
    errors: dict[str, int]


def encode_request(
    correlation: int, client_id: bytes, topics: Sequence[str] | None = None
) -> bytes:
    """A whole Metadata v4 request (size prefix included) for *topics* (``None``:
    every topic), never creating a topic."""
    parts = [b"", HEADER.pack(API_KEY, VERSION, correlation, len(client_id)), client_id]
    if topics is None:
        parts.append(I32.pack(_NULL))
    else:
        parts.append(I32.pack(len(topics)))
        for name in topics:
            raw = name.encode()
            parts += (I16.pack(len(raw)), raw)
    parts.append(I8.pack(0))  # allow_auto_topic_creation: false
    body = b"".join(parts)
    return I32.pack(len(body)) + body


def decode_response(body: bytes | bytearray, correlation: int) -> Cluster:
    """The brokers and every topic's leaders of a Metadata v4 answer (*body*: after
    its size prefix); raises :class:`~.listoffsets.ProtocolError` if it does not fit."""
    view = memoryview(body)
    brokers: dict[int, Address] = {}
    leaders: Leaders = {}
    errors: dict[str, int] = {}
    try:
        answered, _throttle, brokers_count = _HEAD.unpack_from(view, 0)
        if answered != correlation:
            raise ProtocolError(f"answer to request {answered}, not to {correlation}")
        at = _HEAD.size
        for _ in range(_count(brokers_count)):
            (node,) = I32.unpack_from(view, at)
            host, at = _string(view, at + 4)
            (port,) = I32.unpack_from(view, at)
            _rack, at = _string(view, at + 4)
            brokers[node] = (host or "", port)
        _cluster_id, at = _string(view, at)
        _controller, topics = struct.unpack_from(">ii", view, at)
        at += 8
        for _ in range(_count(topics)):
            (error,) = I16.unpack_from(view, at)
            name, at = _string(view, at + 2)
            if name is None:
                raise ProtocolError("a topic without a name")
            (partitions,) = I32.unpack_from(view, at + 1)  # (after is_internal)
            leaders[name], at = _partitions(view, at + 5, _count(partitions))
            if error:
                errors[name] = error
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"an answer that does not read: {exc}") from None
    if at != len(view):
        raise ProtocolError(f"{len(view) - at} bytes after the answer")
    return Cluster(brokers, leaders, errors)


def _count(count: int) -> int:
    if count < 0:
        raise ProtocolError(f"an array of {count} items")
    return count


def _string(view: memoryview, at: int) -> tuple[str | None, int]:
    """A nullable string at *at*, and where what follows it starts."""
    (size,) = I16.unpack_from(view, at)
    if size < 0:
        return None, at + 2
    end = at + 2 + size
    if end > len(view):
        raise ProtocolError("an answer cut short")
    return bytes(view[at + 2 : end]).decode(), end


@functools.lru_cache(maxsize=64)
def _record(replicas: int, isr: int) -> struct.Struct:
    """A partition record with *replicas* replicas and *isr* in-sync replicas; what it
    unpacks: error, partition id, leader, replica count, isr count (the ids skipped)."""
    return struct.Struct(f">hiii{4 * replicas}xi{4 * isr}x")


def _partitions(view: memoryview, at: int, count: int) -> tuple[dict[int, int], int]:
    """The leader of each of *count* partition records from *at*, and where they end."""
    if not count:
        return {}, at
    (replicas,) = I32.unpack_from(view, at + _PARTITION.size - 4)
    (isr,) = I32.unpack_from(view, at + _PARTITION.size + 4 * _count(replicas))
    if 4 * (replicas + _count(isr)) > len(view):
        raise ProtocolError("an answer cut short")
    record = _record(replicas, isr)
    end = at + count * record.size
    if end <= len(view):
        flat = tuple(itertools.chain.from_iterable(record.iter_unpack(view[at:end])))
        # every record's counts where the first's layout puts them equal to the first's:
        # then each record starts where the one before ends (the layout is right)
        if flat[3::_FIELDS].count(replicas) == count and flat[4::_FIELDS].count(isr) == count:
            return dict(zip(flat[1::_FIELDS], flat[2::_FIELDS], strict=True)), end
    return _one_by_one(view, at, count)


def _one_by_one(view: memoryview, at: int, count: int) -> tuple[dict[int, int], int]:
    """:func:`_partitions` for partitions of different shapes, one at a time."""
    leaders: dict[int, int] = {}
    for _ in range(count):
        _error, partition, leader, replicas = _PARTITION.unpack_from(view, at)
        at += _PARTITION.size + 4 * _count(replicas)
        (isr,) = I32.unpack_from(view, at)
        at += 4 + 4 * _count(isr)
        leaders[partition] = leader
    if at > len(view):
        raise ProtocolError("an answer cut short")
    return leaders, at


def parse_bootstrap(bootstrap: str) -> list[Address]:
    """The (host, port) of each address of a ``bootstrap.servers`` list
    (``[proto://]host[:port]``, an IPv6 host in brackets); those that do not parse
    are left out."""
    out: list[Address] = []
    for item in bootstrap.split(","):
        address = item.strip().rpartition("://")[2]
        if address.startswith("["):  # [v6]:port
            host, _, rest = address[1:].partition("]")
            port = rest.removeprefix(":")
        elif address.count(":") == 1:
            host, _, port = address.partition(":")
        else:  # a bare host (or a bare IPv6 address)
            host, port = address, ""
        if not host:
            continue
        try:
            number = int(port) if port else DEFAULT_PORT
        except ValueError:
            continue
        if 0 < number < 2**16:
            out.append((host, number))
    return out


def read_metadata(
    direct: DirectOffsets, addresses: Iterable[Address], deadline: float
) -> tuple[Cluster | None, dict[Address, str]]:
    """Every topic's metadata from the first of *addresses* that answers by
    *deadline* (a :func:`time.monotonic` time), on *direct*'s sockets; ``None`` if
    none did, with why each one asked did not."""
    failed: dict[Address, str] = {}
    for address in dict.fromkeys(addresses):
        try:
            body, correlation = direct.exchange(
                address, lambda c: encode_request(c, direct.client_id), deadline
            )
            return decode_response(body, correlation), failed
        except (OSError, ProtocolError) as exc:
            failed[address] = str(exc) or type(exc).__name__
            direct.drop(address)
    return None, failed
