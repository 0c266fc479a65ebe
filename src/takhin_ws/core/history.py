"""One stream's offsets and its ring of recent messages, for resume (sans-IO).

The ring keeps its messages at the cost of their frames. A message of a stream's
history is its frame (the one right-sized ``bytes`` object its
:class:`~takhin_ws.wire.websocket.frames.Outbound` already holds, shared, never
copied), its offset, its channel and its route. Kept as an object each, the last three
cost more than a small event's JSON (an ``Outbound`` of 80 bytes, an ``int`` of 32, a
route string such as ``topic:<name>`` of ~70): :class:`RetainedFrames` keeps only the
frames and one 8-byte *locator* per message, and rebuilds the ``Outbound`` when asked.

- The offsets are contiguous (the history's invariant), so a message's offset is the
  first one's plus its index.
- The channel is the stream's.
- The route is found again in the frame: ``topic:<name>`` and ``group:<id>`` are a
  prefix and a run of the frame's own bytes (the event carries its name, usually
  without a JSON escape), so the locator is the prefix's number, where the name's bytes
  begin and how many they are. A route that is the stream, or none, is a number alone.
  Anything else (a name the frame only holds escaped, a channel other than the stream)
  is kept as is beside the ring, by offset: exact in every case.

Only the newest :data:`RECENT_WHOLE` messages are kept as objects too.
"""

from __future__ import annotations

import itertools
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final

from ..config.settings import DEFAULT_QUEUE_SIZE
from ..wire.websocket.frames import Outbound

__all__ = ["RECENT_WHOLE", "ArrayQueue", "RetainedFrames", "StreamHistory"]

#: The newest messages of a stream kept whole (their ``Outbound`` objects, with the
#: variants built of them) beside their frames: a backlogged client's queue may hold
#: this many anyway, and a client resuming after a short break is replayed these very
#: objects, so a storm of resuming clients shares one compressed frame per message.
RECENT_WHOLE: Final = DEFAULT_QUEUE_SIZE


#: Route prefixes a locator can name; a route with one of them is found in the frame.
_PREFIXES: Final = ("topic:", "group:")
#: Locator kinds (the low bits of a locator): no route, the stream itself, kept aside,
#: then one kind per prefix of :data:`_PREFIXES`.
_NO_ROUTE: Final = 0
_STREAM_ROUTE: Final = 1
_KEPT_ASIDE: Final = 2
_FIRST_PREFIX: Final = 3
_KIND_BITS: Final = 3
_LENGTH_BITS: Final = 16
_KIND_MASK: Final = (1 << _KIND_BITS) - 1
_LENGTH_MASK: Final = (1 << _LENGTH_BITS) - 1
#: Where a name may begin in a frame and still fit a signed 64-bit locator.
_MAX_POSITION: Final = (1 << (63 - _KIND_BITS - _LENGTH_BITS)) - 1


class ArrayQueue:
    """A FIFO of machine numbers in one ``array`` (8 bytes an item, no object each):
    appended at the end, taken from the front by moving a start index; the taken
    prefix is cut off once it is at least half the array (amortised O(1))."""

    __slots__ = ("_head", "_values")

    def __init__(self, typecode: str) -> None:
        self._values = array(typecode)
        self._head = 0

    def __len__(self) -> int:
        return len(self._values) - self._head

    def __getitem__(self, index: int) -> float:
        return self._values[self._head + index]

    def append(self, value: float) -> None:
        self._values.append(value)  # type: ignore[arg-type]  # int for 'q', float for 'd'

    def popleft(self) -> float:
        values = self._values
        if self._head >= len(values):
            raise IndexError("pop from an empty ArrayQueue")
        value = values[self._head]
        self._head += 1
        if self._head * 2 >= len(values):
            del values[: self._head]
            self._head = 0
        return value

    def clear(self) -> None:
        del self._values[:]
        self._head = 0


class RetainedFrames:
    """The contiguous messages of *stream* from :attr:`first` on: their frames and a
    locator each (see the module's docstring). Not bounded itself: the owner pops."""

    __slots__ = ("_aside", "_frames", "_locators", "first", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        #: The offset of the oldest message kept (meaningless while empty).
        self.first = 0
        self._frames: deque[bytes] = deque()
        self._locators = ArrayQueue("q")
        #: The (channel, route) of the messages no locator can describe, by offset.
        self._aside: dict[int, tuple[str | None, str | None]] = {}

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def next_offset(self) -> int:
        """The offset the next message must carry to follow the last one."""
        return self.first + len(self._frames)

    def append(self, item: Outbound) -> None:
        """Keep *item*, whose offset must be :attr:`next_offset` (or any, when empty)."""
        offset = item.offset
        if offset is None:
            raise ValueError("a retained message carries an offset")
        frames = self._frames
        if not frames:
            self.first = offset
        elif offset != self.first + len(frames):
            raise ValueError(f"offset {offset} does not follow {self.next_offset - 1}")
        frame = item.frame
        locator = self._locate(item.channel, item.route, frame)
        if locator == _KEPT_ASIDE:
            self._aside[offset] = (item.channel, item.route)
        frames.append(frame)
        self._locators.append(locator)

    def _locate(self, channel: str | None, route: str | None, frame: bytes) -> int:
        if channel != self.stream:
            return _KEPT_ASIDE
        if route is None:
            return _NO_ROUTE
        if route == channel:
            return _STREAM_ROUTE
        for kind, prefix in enumerate(_PREFIXES, _FIRST_PREFIX):
            if route.startswith(prefix):
                name = route[len(prefix) :].encode()
                position = frame.find(name)
                if position < 0 or len(name) > _LENGTH_MASK or position > _MAX_POSITION:
                    return _KEPT_ASIDE
                return (position << _LENGTH_BITS | len(name)) << _KIND_BITS | kind
        return _KEPT_ASIDE

    def popleft(self) -> None:
        """Forget the oldest message."""
        self._frames.popleft()
        if self._locators.popleft() == _KEPT_ASIDE:
            del self._aside[self.first]
        self.first += 1

    def clear(self) -> None:
        self._frames.clear()
        self._locators.clear()
        self._aside.clear()

    def item(self, index: int) -> Outbound:
        """The message at *index* (0 is the oldest; -1 the newest), rebuilt (equal to
        the one kept)."""
        if index < 0:
            index += len(self._frames)
        return self._rebuild(index, self._frames[index])

    def items(self, start: int, stop: int) -> Iterator[Outbound]:
        """The messages of indexes *start* to *stop* (excluded), oldest first, rebuilt."""
        for index, frame in enumerate(itertools.islice(self._frames, start, stop), start):
            yield self._rebuild(index, frame)

    def _rebuild(self, index: int, frame: bytes) -> Outbound:
        locator = int(self._locators[index])
        offset = self.first + index
        kind = locator & _KIND_MASK
        channel: str | None = self.stream
        route: str | None
        if kind == _NO_ROUTE:
            route = None
        elif kind == _STREAM_ROUTE:
            route = self.stream
        elif kind == _KEPT_ASIDE:
            channel, route = self._aside[offset]
        else:
            length = locator >> _KIND_BITS & _LENGTH_MASK
            position = locator >> (_KIND_BITS + _LENGTH_BITS)
            name = frame[position : position + length].decode()
            route = _PREFIXES[kind - _FIRST_PREFIX] + name
        return Outbound(frame, channel, offset, route)


class StreamHistory:
    """The offset of *stream*'s last message and up to *keep* recent messages.

    Messages older than *ttl* seconds (by *clock*) are not replayed. The ring stays
    contiguous: an offset that does not follow the previous one (a bus lost messages
    this hub never saw) forgets everything before it, and a message without an
    offset is not kept (nor anything before it). A retained message costs its
    frame and 8 bytes (16 with a TTL: its arrival time); only
    the newest :data:`RECENT_WHOLE` are kept as objects too.
    """

    __slots__ = ("_clock", "_frames", "_keep", "_recent", "_times", "_ttl", "offset")

    def __init__(
        self, stream: str, keep: int, ttl: float | None, clock: Callable[[], float]
    ) -> None:
        self.offset = 0
        self._keep = keep
        self._ttl = ttl
        self._clock = clock
        self._frames = RetainedFrames(stream)
        # the newest messages whole: the last len(_recent) of _frames
        self._recent: deque[Outbound] = deque(maxlen=min(keep, RECENT_WHOLE))
        # when each message came, beside it (kept only with a TTL)
        self._times: ArrayQueue | None = None if ttl is None else ArrayQueue("d")

    def append(self, item: Outbound) -> None:
        if self._keep == 0:
            return
        frames = self._frames
        offset = item.offset
        if offset is None or offset != frames.next_offset:
            self._forget()  # the ring stays contiguous (an empty one: nothing to forget)
            if offset is None:
                return  # (nothing to resume from: not kept)
        frames.append(item)
        times = self._times
        if times is not None:
            times.append(self._clock())
        while len(frames) > self._keep:
            frames.popleft()
            if times is not None:
                times.popleft()
        self._recent.append(item)

    def advance(self, item: Outbound) -> None:
        """*item*'s offset (assigned elsewhere) becomes the stream's."""
        if item.offset is None:
            return
        if item.offset != self.offset + 1:
            self._forget()  # the history must stay contiguous for replay
        self.offset = item.offset

    def clear(self) -> None:
        self.offset = 0
        self._forget()

    def _forget(self) -> None:
        self._frames.clear()
        self._recent.clear()
        if self._times is not None:
            self._times.clear()

    def latest(self) -> Outbound | None:
        return self._recent[-1] if self._recent else None

    def replay(self, after: int) -> list[Outbound] | None:
        """Every message with an offset greater than *after*, in order; ``None`` when
        that cannot be done exactly (history too short, or an offset never issued)."""
        if after < 0 or after > self.offset:
            return None
        if after == self.offset:
            return []
        self._expire()
        frames = self._frames
        if not frames or frames.first > after + 1 or frames.next_offset != self.offset + 1:
            return None
        start = after + 1 - frames.first
        whole = len(frames) - len(self._recent)  # the index of the first recent one
        if start >= whole:
            return list(itertools.islice(self._recent, start - whole, None))
        return [*frames.items(start, whole), *self._recent]

    def _expire(self) -> None:
        times = self._times
        if times is None or self._ttl is None:
            return
        horizon = self._clock() - self._ttl
        frames = self._frames
        while times and times[0] < horizon:
            times.popleft()
            frames.popleft()
        recent = self._recent
        while len(recent) > len(frames):
            recent.popleft()
