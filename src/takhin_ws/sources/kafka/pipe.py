"""What goes over the pipes between the server and its collector process (no I/O).

Every message is one frame: a 4-byte big-endian length, then that many bytes of JSON
(orjson). The server sends the collector's settings first, then one
``{"tick": N, "timeout": S}`` per tick. The collector answers a tick with an error
frame (``{"tick": N, "error": "...", "incompatible": bool}``) or with the snapshot in
pieces, so that the server never holds its event loop for a whole big snapshot:

- ``{"tick": N, "part": "topicStats", "items": [...]}``: a run of one list field of the
  ``metrics`` message, about :data:`CHUNK_WEIGHT` objects each (a consumer lag weighs one
  per topic and per partition it holds);
- ``{"tick": N, "groups": {...}}``: a run of the consumer groups' state and members;
- ``{"tick": N, "metrics": {...}}``: the rest of the message (its lists empty), last.

Any time, ``{"log": [logger, level, message]}`` carries a log line of the collector.
Values are the wire converter's (camelCase), so fields added to the ``metrics`` message
travel without a change here. :class:`FrameReader` cuts frames out of a byte stream;
:class:`Assembler` puts one tick's snapshot back together, a frame at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import attrs
import orjson

from ...core.encoding import METRICS_LISTS, metrics_head, weight
from ...core.metrics.snapshot import GroupInfo, Snapshot
from ...wire.converter import converter
from ...wire.messages import MonitoringMetrics

__all__ = [
    "CHUNK_WEIGHT",
    "MAX_FRAME",
    "Assembler",
    "FrameError",
    "FrameReader",
    "frame",
    "snapshot_frames",
]

#: Objects (a topic's stats, a partition's lag...) per piece of a snapshot: one piece is
#: what the server structures between two checkpoints of its event loop.
CHUNK_WEIGHT: Final = 256
#: The largest frame either side accepts (bytes); a piece is far smaller.
MAX_FRAME: Final = 16 * 1024 * 1024
_HEADER: Final = struct.Struct(">I")


class FrameError(Exception):
    """The byte stream is not a stream of frames (a frame too large, bad JSON)."""


def frame(message: Mapping[str, Any]) -> bytes:
    """*message* as one frame."""
    body = orjson.dumps(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"a frame of {len(body)} bytes is over the {MAX_FRAME} limit")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Frames out of a byte stream fed in pieces of any size."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self._start:  # drop what was read, once per feed (not once per frame)
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buffer) - self._start

    def next(self) -> dict[str, Any] | None:
        """The next whole frame's message, or ``None`` until more bytes come."""
        if self.pending < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer, self._start)
        if size > MAX_FRAME:
            raise FrameError(f"a frame of {size} bytes is over the {MAX_FRAME} limit")
        end = self._start + _HEADER.size + size
        if len(self._buffer) < end:
            return None
        try:
            message = orjson.loads(memoryview(self._buffer)[self._start + _HEADER.size : end])
        except orjson.JSONDecodeError as exc:
            raise FrameError(f"a frame is not JSON: {exc}") from None
        self._start = end
        if type(message) is not dict:
            raise FrameError("a frame is not a JSON object")
        return message


def _chunks(items: list[Any], weigh: Callable[[Any], int]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    weight = 0
    for item in items:
        chunk.append(item)
        weight += weigh(item)
        if weight >= CHUNK_WEIGHT:
            yield chunk
            chunk, weight = [], 0
    if chunk:
        yield chunk


def snapshot_frames(tick: int, snapshot: Snapshot) -> Iterator[bytes]:
    """The frames that carry *snapshot* as the answer to tick *tick*."""
    metrics = snapshot.metrics
    data = metrics_head(metrics)
    for key, (name, item_type) in METRICS_LISTS.items():
        hook = converter.get_unstructure_hook(item_type)
        for chunk in _chunks(list(getattr(metrics, name)), weight):
            yield frame({"tick": tick, "part": key, "items": [hook(item) for item in chunk]})
    groups = [(g, converter.unstructure(info)) for g, info in snapshot.groups.items()]
    for chunk in _chunks(groups, lambda _: 1):
        yield frame({"tick": tick, "groups": dict(chunk)})
    yield frame({"tick": tick, "metrics": data})


class Assembler:
    """One tick's snapshot, put back together from its frames in order."""

    def __init__(self, tick: int) -> None:
        self.tick = tick
        self._parts: dict[str, list[Any]] = {}
        self._groups: dict[str, GroupInfo] = {}

    def add(self, message: Mapping[str, Any]) -> Snapshot | None:
        """Take one frame of this tick; the snapshot once its last frame came.

        Raises :class:`FrameError` for a frame that does not fit (the server and the
        collector are the same code, so that is a bug, never data).
        """
        try:
            if "part" in message:
                name, item = METRICS_LISTS[message["part"]]
                structured = converter.structure(message["items"], list[item])  # type: ignore[valid-type]
                self._parts.setdefault(name, []).extend(structured)
                return None
            if "groups" in message:
                self._groups.update(converter.structure(message["groups"], dict[str, GroupInfo]))
                return None
            head = converter.structure(message["metrics"], MonitoringMetrics)
        except Exception as exc:  # KeyError, cattrs' errors...: a bug, said briefly
            raise FrameError(f"a snapshot frame does not fit: {exc!r}"[:500]) from None
        lists: dict[str, Any] = {name: tuple(v) for name, v in self._parts.items()}
        metrics = attrs.evolve(head, **lists)
        return Snapshot(metrics=metrics, groups=self._groups)
