"""A bounded FIFO that never blocks its producer: when full, the oldest message goes.

"Message" means an item that carries an offset (a published event): a client can
learn of its loss from ``gap`` and recover it. Items without an offset (per-client
replies such as ``subscribed`` or ``pong``) are skipped over when choosing what to
drop, and only go when the queue holds nothing else.

*State* is conflated, not dropped: an item with a ``state_key`` (a metrics snapshot or
a view of one, keyed by its channel) supersedes the pending item of the same key in
place (latest wins, at the older one's position, so it is read no later than that one
would have been), and state items do not count against the capacity. A queue therefore
holds at most *capacity* events and replies plus one item per state channel, whatever
the rate of snapshots: a slow reader skips intermediate snapshots, never events.

Sans-IO apart from the reader's wait (a Trio parking lot, like ``trio.MemoryChannel``).
Every drop is counted, and drops of items that carry an offset are remembered per
channel (first and last lost offset) until the reader takes them with
:meth:`DropOldestQueue.take_drops`, so it can tell its client which range was lost.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

import attrs
import trio
from attrs import frozen

from ..config.settings import DEFAULT_QUEUE_SIZE

__all__ = ["DEFAULT_QUEUE_SIZE", "Drop", "DropOldestQueue", "QueueItem", "QueueStatistics"]


class QueueItem(Protocol):
    """What the queue needs to know of an item to report its loss."""

    @property
    def channel(self) -> str | None: ...

    @property
    def offset(self) -> int | None: ...

    @property
    def state_key(self) -> str | None:
        """The state channel this item is the latest message of (``None``: an event
        or a reply, which is never conflated)."""


T = TypeVar("T", bound=QueueItem)


@frozen
class Drop:
    """``count`` items of *channel* were lost, offsets ``first_offset..last_offset``."""

    channel: str
    first_offset: int
    last_offset: int
    count: int


@frozen
class QueueStatistics:
    size: int
    capacity: int
    put_total: int
    dropped_total: int
    peak_size: int
    closed: bool
    #: State items superseded in place by a newer one of the same channel.
    conflated_total: int = 0


@attrs.define
class _DropRange:
    first: int
    last: int
    count: int


class _Slot(Generic[T]):
    """The place of a pending state item in the queue; a newer one takes it over."""

    __slots__ = ("item", "key")

    def __init__(self, key: str, item: T) -> None:
        self.key = key
        self.item = item


class DropOldestQueue(Generic[T]):
    """FIFO of at most *capacity* events and replies, plus one pending item per state
    channel; ``put_nowait`` never blocks and never fails for lack of room: it drops
    the oldest event that carries an offset instead (or, if none does, the oldest
    non-state item), and a state item replaces the pending one of its channel."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_conflated",
        "_dropped",
        "_drops",
        "_events",
        "_items",
        "_lot",
        "_peak",
        "_puts",
        "_state",
    )

    def __init__(self, capacity: int = DEFAULT_QUEUE_SIZE) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        # allocated on first use and released when drained: most clients never queue
        self._items: deque[T | _Slot[T]] | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None
        self._drops: dict[str, _DropRange] = {}
        self._state: dict[str, _Slot[T]] = {}  # the pending state items, by key
        self._events = 0  # pending items that are not state (what capacity bounds)
        self._conflated = 0
        self._dropped = 0
        self._puts = 0
        self._peak = 0
        self._closed = False

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def __bool__(self) -> bool:
        return bool(self._items)

    def put_nowait(self, item: T) -> None:
        """Append *item*, dropping the oldest message when the queue is full; a state
        item replaces the pending one of its channel in place."""
        if self._closed:
            raise trio.ClosedResourceError("queue is closed")
        items = self._items
        if items is None:
            items = self._items = deque()
        self._puts += 1
        key = item.state_key
        if key is not None:
            slot = self._state.get(key)
            if slot is not None:
                slot.item = item  # latest wins, in place (the reader is already awake)
                self._conflated += 1
                return
            slot = self._state[key] = _Slot(key, item)
            items.append(slot)
        else:
            if self._events >= self._capacity:
                self._record_drop(self._evict(items))
            else:
                self._events += 1
            items.append(item)
        if len(items) > self._peak:
            self._peak = len(items)
        if self._lot:
            self._lot.unpark()

    def _evict(self, items: deque[T | _Slot[T]]) -> T:
        """Remove and return the oldest event with an offset (else the oldest item that
        is not state: a queue at capacity holds at least one)."""
        first = items[0]
        if not isinstance(first, _Slot) and first.offset is not None:
            items.popleft()
            return first
        fallback: int | None = None
        for index, entry in enumerate(items):
            if isinstance(entry, _Slot):
                continue
            if entry.offset is not None:
                del items[index]
                return entry
            if fallback is None:
                fallback = index
        assert fallback is not None
        lost = items[fallback]
        del items[fallback]
        assert not isinstance(lost, _Slot)
        return lost

    def _record_drop(self, item: T) -> None:
        self._dropped += 1
        channel, offset = item.channel, item.offset
        if channel is None or offset is None:
            return
        lost = self._drops.get(channel)
        if lost is None:
            self._drops[channel] = _DropRange(offset, offset, 1)
        else:
            lost.last = offset
            lost.count += 1

    def take_drops(self) -> list[Drop]:
        """The ranges lost since the previous call, one per channel, and forget them."""
        if not self._drops:
            return []
        out = [Drop(ch, r.first, r.last, r.count) for ch, r in self._drops.items()]
        self._drops.clear()
        return out

    @property
    def has_drops(self) -> bool:
        return bool(self._drops)

    def get_nowait(self) -> T:
        """The oldest item; ``trio.WouldBlock`` if empty, ``trio.EndOfChannel`` if closed."""
        items = self._items
        if items:
            entry = items.popleft()
            if not items:
                self._items = None
            return self._taken(entry)
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def _taken(self, entry: T | _Slot[T]) -> T:
        if isinstance(entry, _Slot):
            del self._state[entry.key]
            return entry.item
        self._events -= 1
        return entry

    def get_batch_nowait(self) -> list[T]:
        """Every pending item, oldest first (possibly none)."""
        items = self._items
        if not items:
            if self._closed:
                raise trio.EndOfChannel
            return []
        self._items = None
        self._events = 0
        self._state.clear()
        return [entry.item if isinstance(entry, _Slot) else entry for entry in items]

    async def get(self) -> T:
        """Wait for and return the oldest item; ``trio.EndOfChannel`` once closed and empty."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items and not self._closed:
            await self._parking_lot().park()
        item = self.get_nowait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    async def wait(self) -> None:
        """Wait until an item is pending or the queue is closed, taking nothing: a
        reader that must take an item and :meth:`take_drops` in one synchronous step
        (so a ``gap`` names exactly the items lost before that one) waits here, then
        calls :meth:`get_nowait`."""
        if self._items or self._closed:
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items and not self._closed:
            await self._parking_lot().park()

    async def get_batch(self) -> list[T]:
        """Wait until something is pending, then take all of it."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items and not self._closed:
            await self._parking_lot().park()
        batch = self.get_batch_nowait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return batch

    def discard_state(self) -> int:
        """Remove every pending state item (counted as conflated) and return how many:
        what comes next (an ``epoch`` notice) must not be overtaken by a newer snapshot
        taking an older one's place."""
        n = len(self._state)
        if n:
            assert self._items is not None
            kept: deque[T | _Slot[T]] = deque(
                entry for entry in self._items if not isinstance(entry, _Slot)
            )
            self._items = kept or None
            self._state.clear()
            self._conflated += n
        return n

    def clear(self) -> int:
        """Discard every pending item without counting it as a drop; return how many."""
        n = len(self)
        self._items = None
        self._events = 0
        self._state.clear()
        return n

    def close(self) -> None:
        """Refuse further puts and wake the reader; pending items can still be read."""
        self._closed = True
        if self._lot is not None:
            self._lot.unpark_all()

    def _parking_lot(self) -> trio.lowlevel.ParkingLot:
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        return self._lot

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(
            size=len(self),
            capacity=self._capacity,
            put_total=self._puts,
            dropped_total=self._dropped,
            peak_size=self._peak,
            closed=self._closed,
            conflated_total=self._conflated,
        )
