"""ApiVersions, FindCoordinator and OffsetFetch as bytes: the requests that read the
committed offsets of many consumer groups at once (no I/O).

- ApiVersions v0 (every broker reads it; Kafka 4.x too): which versions of the two
  others a broker offers.
- FindCoordinator v4-v6 (KIP-699, Kafka 3.0+): the coordinator of many groups in one
  request.
- OffsetFetch v8-v9 (KIP-709, Kafka 3.0+): the committed offsets of every partition
  (``topics`` null: all of them) of many groups in one request. (v10 names topics by
  id, not by name: not spoken here.)

FindCoordinator and OffsetFetch are flexible versions: request header v2, response
header v1, compact strings and arrays (an unsigned varint: length + 1, 0 for null)
and tagged fields (skipped). An OffsetFetch answer's partitions are read a topic at a
time with one :mod:`struct` call when every one of them has an empty (or null)
metadata string and no tagged field, as clients commit them; else field by field.

:mod:`takhin_ws.sources.kafka.admin.groupoffsets` sends them.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from typing import Final, ParamSpec, TypeVar

from .framing import HEADER, I16, I32, ProtocolError

__all__ = [
    "API_VERSIONS",
    "FIND_COORDINATOR",
    "FIND_COORDINATOR_VERSIONS",
    "OFFSET_FETCH",
    "OFFSET_FETCH_VERSIONS",
    "Committed",
    "Coordinator",
    "ProtocolError",
    "choose",
    "decode_api_versions",
    "decode_find_coordinator",
    "decode_offset_fetch",
    "encode_api_versions",
    "encode_find_coordinator",
    "encode_offset_fetch",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: API keys.
OFFSET_FETCH: Final = 9
FIND_COORDINATOR: Final = 10
API_VERSIONS: Final = 18
#: The versions spoken here, each the same layout as the lowest.
FIND_COORDINATOR_VERSIONS: Final = (4, 5, 6)
OFFSET_FETCH_VERSIONS: Final = (8, 9)
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


def choose(spoken: Iterable[int], offered: tuple[int, int] | None) -> int | None:
    """The highest version of *spoken* within the broker's *offered* (min, max)."""
    if offered is None:
        return None
    low, high = offered
    found = [version for version in spoken if low <= version <= high]
    return max(found) if found else None


# --- writing ---


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _compact(text: str) -> bytes:
    raw = text.encode()
    return _uvarint(len(raw) + 1) + raw


def _request(api: int, version: int, correlation: int, client_id: bytes, body: bytes) -> bytes:
    """A whole request, size prefix included: header v1 for ApiVersions, else v2 (the
    same, then tagged fields: none)."""
    head = HEADER.pack(api, version, correlation, len(client_id)) + client_id
    if api != API_VERSIONS:
        head += b"\x00"
    return I32.pack(len(head) + len(body)) + head + body


def encode_api_versions(correlation: int, client_id: bytes) -> bytes:
    """An ApiVersions v0 request (no body)."""
    return _request(API_VERSIONS, 0, correlation, client_id, b"")


def encode_find_coordinator(
    version: int, correlation: int, client_id: bytes, groups: Iterable[str]
) -> bytes:
    """A FindCoordinator request (v4+) for the coordinator of every group of *groups*."""
    keys = [_compact(group) for group in groups]
    body = b"".join([bytes((_GROUP_KEY,)), _uvarint(len(keys) + 1), *keys, b"\x00"])
    return _request(FIND_COORDINATOR, version, correlation, client_id, body)


def encode_offset_fetch(
    version: int, correlation: int, client_id: bytes, groups: Iterable[str]
) -> bytes:
    """An OffsetFetch request (v8+) for every committed offset of every group."""
    # v9: member id null, member epoch -1; then topics null and no tagged field
    tail = (b"\x00" + I32.pack(_NO_EPOCH) if version >= 9 else b"") + b"\x00\x00"
    parts = [_compact(group) + tail for group in groups]
    # require_stable false, no tagged field
    body = b"".join([_uvarint(len(parts) + 1), *parts, b"\x00\x00"])
    return _request(OFFSET_FETCH, version, correlation, client_id, body)


# --- reading ---


def _read_uvarint(view: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 28:
            raise ProtocolError("a varint longer than 5 bytes")


def _read_string(view: memoryview, at: int) -> tuple[str | None, int]:
    """A compact (nullable) string."""
    size, at = _read_uvarint(view, at)
    if size == 0:
        return None, at
    end = at + size - 1
    if end > len(view):
        raise ProtocolError("an answer cut short")
    return bytes(view[at:end]).decode(), end


def _read_name(view: memoryview, at: int) -> tuple[str, int]:
    size = view[at]
    if 0 < size < 0x80:  # (most names: shorter than 127 bytes)
        end = at + size
        if end > len(view):
            raise ProtocolError("an answer cut short")
        return str(view[at + 1 : end], "utf-8"), end
    name, at = _read_string(view, at)
    if name is None:
        raise ProtocolError("a null name")
    return name, at


def _skip_tags(view: memoryview, at: int) -> int:
    count, at = _read_uvarint(view, at)
    for _ in range(count):
        _tag, at = _read_uvarint(view, at)
        size, at = _read_uvarint(view, at)
        at += size
    return at


def _start(body: bytes | bytearray, correlation: int, flexible: bool) -> tuple[memoryview, int]:
    """The answer's view and where its body starts (after the response header)."""
    view = memoryview(body)
    (answered,) = I32.unpack_from(view, 0)
    if answered != correlation:
        raise ProtocolError(f"answer to request {answered}, not to {correlation}")
    return view, _skip_tags(view, 4) if flexible else 4


def _end(view: memoryview, at: int) -> None:
    if at != len(view):
        raise ProtocolError(f"{len(view) - at} bytes after the answer")


def _reading(decode: Callable[_P, _T]) -> Callable[_P, _T]:
    """*decode*, its cut-short or garbled answer raising :class:`ProtocolError`."""

    @functools.wraps(decode)
    def read(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return decode(*args, **kwargs)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"an answer that does not read: {exc}") from None

    return read


@_reading
def decode_api_versions(body: bytes | bytearray, correlation: int) -> dict[int, tuple[int, int]]:
    """The (min, max) version of every API an ApiVersions v0 answer lists."""
    view, at = _start(body, correlation, flexible=False)
    (error,) = I16.unpack_from(view, at)
    if error:
        raise ProtocolError(f"ApiVersions answered error {error}")
    (count,) = I32.unpack_from(view, at + 2)
    at += 6
    end = at + count * _API_RANGE.size
    if count < 0 or end > len(view):
        raise ProtocolError("an answer cut short")
    out = {key: (low, high) for key, low, high in _API_RANGE.iter_unpack(view[at:end])}
    _end(view, end)
    return out


@_reading
def decode_find_coordinator(
    body: bytes | bytearray, correlation: int
) -> tuple[dict[str, Coordinator], dict[str, int]]:
    """The coordinator of every group a FindCoordinator (v4+) answer gives one, and
    the error code of every other group in it."""
    view, at = _start(body, correlation, flexible=True)
    at += 4  # throttle time
    count, at = _read_uvarint(view, at)
    found: dict[str, Coordinator] = {}
    errors: dict[str, int] = {}
    for _ in range(count - 1):
        key, at = _read_name(view, at)
        (node,) = _NODE.unpack_from(view, at)
        host, at = _read_name(view, at + 4)
        port, error = _PORT_ERROR.unpack_from(view, at)
        _message, at = _read_string(view, at + 6)
        at = _skip_tags(view, at)
        if error:
            errors[key] = error
        else:
            found[key] = (node, host, port)
    _end(view, _skip_tags(view, at))
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
        _metadata, at = _read_string(view, at + _HEAD.size)
        (code,) = I16.unpack_from(view, at)
        at = _skip_tags(view, at + 2)
        error = error or code
        if offset >= 0:
            out[partition] = offset
    return out, error, at


@_reading
def decode_offset_fetch(
    body: bytes | bytearray, correlation: int
) -> tuple[dict[str, Committed], dict[str, int]]:
    """The committed offsets of every group an OffsetFetch (v8+) answer reads whole,
    and the error code of every other group in it (its own, or its first partition's)."""
    view, at = _start(body, correlation, flexible=True)
    at += 4  # throttle time
    groups, at = _read_uvarint(view, at)
    found: dict[str, Committed] = {}
    errors: dict[str, int] = {}
    # (a count or a tagged-field count below 0x80 is one byte: read in place)
    for _ in range(groups - 1):
        group, at = _read_name(view, at)
        topics, at = (view[at], at + 1) if view[at] < 0x80 else _read_uvarint(view, at)
        committed: Committed = {}
        failed = 0
        for _ in range(topics - 1):
            name, at = _read_name(view, at)
            count, at = (view[at], at + 1) if view[at] < 0x80 else _read_uvarint(view, at)
            if count > 1:
                offsets, error, at = _partitions(view, at, count - 1)
                failed = failed or error
                if offsets:
                    committed[name] = offsets
            at = _skip_tags(view, at) if view[at] else at + 1
        (error,) = I16.unpack_from(view, at)
        at = _skip_tags(view, at + 2) if view[at + 2] else at + 3
        if error or failed:
            errors[group] = error or failed
        else:
            found[group] = committed
    _end(view, _skip_tags(view, at))
    return found, errors
