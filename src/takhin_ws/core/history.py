"""One stream's offsets and its ring of recent messages, for resume (sans-IO)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from ..wire.websocket.frames import Outbound

__all__ = ["StreamHistory"]


class StreamHistory:
    """The offset of a stream's last message and up to *keep* recent messages.

    Messages older than *ttl* seconds (by *clock*) are not replayed. The ring stays
    contiguous: an offset that does not follow the previous one (a bus lost messages
    this hub never saw) forgets everything before it.
    """

    __slots__ = ("_clock", "_items", "_keep", "_times", "_ttl", "offset")

    def __init__(self, keep: int, ttl: float | None, clock: Callable[[], float]) -> None:
        self.offset = 0
        self._keep = keep
        self._ttl = ttl
        self._clock = clock
        self._items: deque[Outbound] = deque()
        # when each item came, beside it (kept only with a TTL: a retained event costs
        # its frame and its Outbound, nothing more)
        self._times: deque[float] | None = None if ttl is None else deque()

    def append(self, item: Outbound) -> None:
        if self._keep == 0:
            return
        items = self._items
        items.append(item)
        times = self._times
        if times is not None:
            times.append(self._clock())
        while len(items) > self._keep:
            items.popleft()
            if times is not None:
                times.popleft()

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
        self._items.clear()
        if self._times is not None:
            self._times.clear()

    def latest(self) -> Outbound | None:
        return self._items[-1] if self._items else None

    def replay(self, after: int) -> list[Outbound] | None:
        """Every message with an offset greater than *after*, in order; ``None`` when
        that cannot be done exactly (history too short, or an offset never issued)."""
        if after < 0 or after > self.offset:
            return None
        if after == self.offset:
            return []
        self._expire()
        items = self._items
        if not items or items[0].offset is None:
            return None
        first = items[0].offset
        if first > after + 1:
            return None
        return list(itertools.islice(items, after + 1 - first, None))

    def _expire(self) -> None:
        times = self._times
        if times is None or self._ttl is None:
            return
        horizon = self._clock() - self._ttl
        items = self._items
        while times and times[0] < horizon:
            times.popleft()
            items.popleft()
