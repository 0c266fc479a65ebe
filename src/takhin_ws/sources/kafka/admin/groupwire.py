"""ApiVersions, ListGroups, FindCoordinator, DescribeGroups and OffsetFetch as bytes:
the requests that list, describe and read the committed offsets of many consumer
groups at once (no I/O).

- ApiVersions v0 (every broker reads it; Kafka 4.x too): which versions of the two
  others a broker offers.
- FindCoordinator v4-v6 (KIP-699, Kafka 3.0+): the coordinator of many groups in one
  request.
- OffsetFetch v8-v9 (KIP-709, Kafka 3.0+): the committed offsets of every partition
  (``topics`` null: all of them) of many groups in one request. (v10 names topics by
  id, not by name: not spoken here.)
- ListGroups v4-v5 (KIP-518, Kafka 2.6+; v5 adds each group's type, KIP-848): every
  group a broker coordinates, with its protocol type and state.
- DescribeGroups v5 (Kafka 2.4+): the state and members of many groups in one
  request, the version librdkafka asks (v6 answers an error for a group that does not
  exist, where v5 says ``Dead``, as librdkafka reads it).

All but ApiVersions are flexible versions: request header v2, response
header v1, compact strings and arrays (an unsigned varint: length + 1, 0 for null)
and tagged fields (skipped). An OffsetFetch answer's partitions are read a topic at a
time with one :mod:`struct` call when every one of them has an empty (or null)
metadata string and no tagged field, as clients commit them; else field by field.

:mod:`takhin_ws.sources.kafka.admin.groupoffsets` sends the offsets' requests,
:mod:`takhin_ws.sources.kafka.admin.groups` the listing and the descriptions.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from typing import Final, NamedTuple

from .framing import (
    I16,
    I32,
    ProtocolError,
    begin_answer,
    compact,
    end_answer,
    read_name,
    read_string,
    read_uvarint,
    reading,
    request,
    skip_tags,
    uvarint,
)

__all__ = [
    "API_VERSIONS",
    "DESCRIBE_GROUPS",
    "DESCRIBE_GROUPS_VERSIONS",
    "FIND_COORDINATOR",
    "FIND_COORDINATOR_VERSIONS",
    "LIST_GROUPS",
    "LIST_GROUPS_VERSIONS",
    "OFFSET_FETCH",
    "OFFSET_FETCH_VERSIONS",
    "Committed",
    "Coordinator",
    "Described",
    "Listed",
    "ProtocolError",
    "choose",
    "decode_api_versions",
    "decode_describe_groups",
    "decode_find_coordinator",
    "decode_list_groups",
    "decode_offset_fetch",
    "encode_api_versions",
    "encode_describe_groups",
    "encode_find_coordinator",
    "encode_list_groups",
    "encode_offset_fetch",
]

#: API keys.
OFFSET_FETCH: Final = 9
FIND_COORDINATOR: Final = 10
DESCRIBE_GROUPS: Final = 15
LIST_GROUPS: Final = 16
API_VERSIONS: Final = 18
#: The versions spoken here, each the same layout as the lowest.
FIND_COORDINATOR_VERSIONS: Final = (4, 5, 6)
OFFSET_FETCH_VERSIONS: Final = (8, 9)
LIST_GROUPS_VERSIONS: Final = (4, 5)
DESCRIBE_GROUPS_VERSIONS: Final = (5,)
#: FindCoordinator's key type of a consumer group.
_GROUP_KEY: Final = 0
#: OffsetFetch v9's member epoch of a caller that is not a member.
_NO_EPOCH: Final = -1

#: ApiVersions v0 answer: error code, then (api key, min, max) per API.
_API_RANGE: Final = struct.Struct(">hhh")
#: FindCoordinator v4 coordinator, after its key: node id, (host), port, error code.
_NODE: Final = struct.Struct(">i")
_PORT_ERROR: Final = struct.Struct(">ih")
#: OffsetFetch v8 partition, when its metadata is one byte (empty: 1, null: 0) and it
#: has no tagged field (0): partition, offset, (leader epoch), metadata, error, tags.
_RECORD: Final = struct.Struct(">iq4xBhB")
#: The same, field by field: partition, offset, leader epoch; then error code.
_HEAD: Final = struct.Struct(">iqi")

#: Committed offsets of one group's partitions, by topic.
Committed = dict[str, dict[int, int]]
#: A coordinator: node id, host, port.
Coordinator = tuple[int, str, int]


class Listed(NamedTuple):
    """One group of a ListGroups answer."""

    group: str
    #: ``consumer``, or empty for a group that only commits offsets ("simple").
    protocol_type: str
    state: str
    #: ``classic`` or ``consumer`` (KIP-848); empty in a v4 answer.
    type: str


class Described(NamedTuple):
    """One group of a DescribeGroups answer."""

    error: int
    state: str
    protocol_type: str
    members: int


def choose(spoken: Iterable[int], offered: tuple[int, int] | None) -> int | None:
    """The highest version of *spoken* within the broker's *offered* (min, max)."""
    if offered is None:
        return None
    low, high = offered
    found = [version for version in spoken if low <= version <= high]
    return max(found) if found else None


# --- writing ---


def encode_api_versions(correlation: int, client_id: bytes) -> bytes:
    """An ApiVersions v0 request (no body)."""
    return request(API_VERSIONS, 0, correlation, client_id, b"", flexible=False)


def encode_find_coordinator(
    version: int, correlation: int, client_id: bytes, groups: Iterable[str]
) -> bytes:
    """A FindCoordinator request (v4+) for the coordinator of every group of *groups*."""
    keys = [compact(group) for group in groups]
    body = b"".join([bytes((_GROUP_KEY,)), uvarint(len(keys) + 1), *keys, b"\x00"])
    return request(FIND_COORDINATOR, version, correlation, client_id, body)


def encode_offset_fetch(
    version: int, correlation: int, client_id: bytes, groups: Iterable[str]
) -> bytes:
    """An OffsetFetch request (v8+) for every committed offset of every group."""
    # v9: member id null, member epoch -1; then topics null and no tagged field
    tail = (b"\x00" + I32.pack(_NO_EPOCH) if version >= 9 else b"") + b"\x00\x00"
    parts = [compact(group) + tail for group in groups]
    # require_stable false, no tagged field
    body = b"".join([uvarint(len(parts) + 1), *parts, b"\x00\x00"])
    return request(OFFSET_FETCH, version, correlation, client_id, body)


def encode_list_groups(version: int, correlation: int, client_id: bytes) -> bytes:
    """A ListGroups request (v4+) for every group, of every state (and type)."""
    # an empty states filter (and, v5, types filter), no tagged field
    body = b"\x01\x01\x00" if version >= 5 else b"\x01\x00"
    return request(LIST_GROUPS, version, correlation, client_id, body)


def encode_describe_groups(
    version: int, correlation: int, client_id: bytes, groups: Iterable[str]
) -> bytes:
    """A DescribeGroups request (v5) for every group of *groups*."""
    names = [compact(group) for group in groups]
    # include_authorized_operations false, no tagged field
    body = b"".join([uvarint(len(names) + 1), *names, b"\x00\x00"])
    return request(DESCRIBE_GROUPS, version, correlation, client_id, body)


# --- reading ---


@reading
def decode_api_versions(body: bytes | bytearray, correlation: int) -> dict[int, tuple[int, int]]:
    """The (min, max) version of every API an ApiVersions v0 answer lists."""
    view, at = begin_answer(body, correlation, flexible=False)
    (error,) = I16.unpack_from(view, at)
    if error:
        raise ProtocolError(f"ApiVersions answered error {error}")
    (count,) = I32.unpack_from(view, at + 2)
    at += 6
    end = at + count * _API_RANGE.size
    if count < 0 or end > len(view):
        raise ProtocolError("an answer cut short")
    out = {key: (low, high) for key, low, high in _API_RANGE.iter_unpack(view[at:end])}
    end_answer(view, end)
    return out


@reading
def decode_find_coordinator(
    body: bytes | bytearray, correlation: int
) -> tuple[dict[str, Coordinator], dict[str, int]]:
    """The coordinator of every group a FindCoordinator (v4+) answer gives one, and
    the error code of every other group in it."""
    view, at = begin_answer(body, correlation, flexible=True)
    at += 4  # throttle time
    count, at = read_uvarint(view, at)
    found: dict[str, Coordinator] = {}
    errors: dict[str, int] = {}
    for _ in range(count - 1):
        key, at = read_name(view, at)
        (node,) = _NODE.unpack_from(view, at)
        host, at = read_name(view, at + 4)
        port, error = _PORT_ERROR.unpack_from(view, at)
        _message, at = read_string(view, at + 6)
        at = skip_tags(view, at)
        if error:
            errors[key] = error
        else:
            found[key] = (node, host, port)
    end_answer(view, skip_tags(view, at))
    return found, errors


@functools.lru_cache(maxsize=256)
def _pairs(count: int) -> struct.Struct:
    """The (partition, offset) of *count* partitions of :data:`_RECORD`'s size."""
    return struct.Struct(">" + "iq8x" * count)


def _partitions(view: memoryview, at: int, count: int) -> tuple[dict[int, int], int, int]:
    """*count* partitions at *at*: their committed offsets (none: -1 left out), the
    first partition error (0: none), and where they end."""
    end = at + count * _RECORD.size
    if end > len(view):  # (no partition takes fewer bytes)
        raise ProtocolError("an answer cut short")
    chunk = view[at:end].tobytes()
    # each record was _RECORD's size if every metadata byte is 0 or 1 (null or empty:
    # records before the first that is not are read right) and no tagged field follows
    step = _RECORD.size
    sized = not chunk[16::step].strip(b"\x00\x01") and not chunk[19::step].strip(b"\x00")
    if sized and not (chunk[17::step] + chunk[18::step]).strip(b"\x00"):  # no error
        fields = _pairs(count).unpack(chunk)
        offsets = fields[1::2]
        out = dict(zip(fields[::2], offsets, strict=True))
        if min(offsets) < 0:
            out = {partition: offset for partition, offset in out.items() if offset >= 0}
        return out, 0, end
    out = {}
    error = 0
    for _ in range(count):
        partition, offset, _epoch = _HEAD.unpack_from(view, at)
        _metadata, at = read_string(view, at + _HEAD.size)
        (code,) = I16.unpack_from(view, at)
        at = skip_tags(view, at + 2)
        error = error or code
        if offset >= 0:
            out[partition] = offset
    return out, error, at


@reading
def decode_offset_fetch(
    body: bytes | bytearray, correlation: int
) -> tuple[dict[str, Committed], dict[str, int]]:
    """The committed offsets of every group an OffsetFetch (v8+) answer reads whole,
    and the error code of every other group in it (its own, or its first partition's)."""
    view, at = begin_answer(body, correlation, flexible=True)
    at += 4  # throttle time
    groups, at = read_uvarint(view, at)
    found: dict[str, Committed] = {}
    errors: dict[str, int] = {}
    # (a count or a tagged-field count below 0x80 is one byte: read in place)
    for _ in range(groups - 1):
        group, at = read_name(view, at)
        topics, at = (view[at], at + 1) if view[at] < 0x80 else read_uvarint(view, at)
        committed: Committed = {}
        failed = 0
        for _ in range(topics - 1):
            name, at = read_name(view, at)
            count, at = (view[at], at + 1) if view[at] < 0x80 else read_uvarint(view, at)
            if count > 1:
                offsets, error, at = _partitions(view, at, count - 1)
                failed = failed or error
                if offsets:
                    committed[name] = offsets
            at = skip_tags(view, at) if view[at] else at + 1
        (error,) = I16.unpack_from(view, at)
        at = skip_tags(view, at + 2) if view[at + 2] else at + 3
        if error or failed:
            errors[group] = error or failed
        else:
            found[group] = committed
    end_answer(view, skip_tags(view, at))
    return found, errors


@reading
def decode_list_groups(
    body: bytes | bytearray, correlation: int, version: int
) -> tuple[int, list[Listed]]:
    """The error code of a ListGroups answer (v4+: 0, none) and every group in it."""
    view, at = begin_answer(body, correlation, flexible=True)
    (error,) = I16.unpack_from(view, at + 4)  # (after the throttle time)
    count, at = read_uvarint(view, at + 6)
    groups: list[Listed] = []
    for _ in range(count - 1):
        group, at = read_name(view, at)
        protocol_type, at = read_string(view, at)
        state, at = read_string(view, at)
        kind, at = read_string(view, at) if version >= 5 else ("", at)
        at = skip_tags(view, at)
        groups.append(Listed(group, protocol_type or "", state or "", kind or ""))
    end_answer(view, skip_tags(view, at))
    return error, groups


def _skip_strings(view: memoryview, at: int, count: int) -> int:
    """Where *count* compact (nullable) strings or byte strings at *at* end."""
    for _ in range(count):
        size, at = read_uvarint(view, at)
        at += max(size - 1, 0)
    return at


@reading
def decode_describe_groups(body: bytes | bytearray, correlation: int) -> dict[str, Described]:
    """Every group of a DescribeGroups (v5) answer: its error code, state, protocol
    type and number of members."""
    view, at = begin_answer(body, correlation, flexible=True)
    count, at = read_uvarint(view, at + 4)  # (after the throttle time)
    out: dict[str, Described] = {}
    for _ in range(count - 1):
        (error,) = I16.unpack_from(view, at)
        group, at = read_name(view, at + 2)
        state, at = read_string(view, at)
        protocol_type, at = read_string(view, at)
        at = _skip_strings(view, at, 1)  # protocol data
        members, at = read_uvarint(view, at)
        for _ in range(members - 1):
            # member id, instance id, client id, client host, metadata, assignment
            at = skip_tags(view, _skip_strings(view, at, 6))
        at = skip_tags(view, at + 4)  # (after the authorized operations)
        out[group] = Described(error, state or "", protocol_type or "", max(members - 1, 0))
    end_answer(view, skip_tags(view, at))
    return out
