"""When did a partition's log end offset reach a given offset? (sans-IO)

:class:`OffsetTimeline` keeps a bounded table of (time, log end offset) samples of one
partition, taken once per tick from what the source read anyway, and answers
:meth:`~OffsetTimeline.lag_seconds`: how long ago the log end offset passed a group's
committed offset, the way kafka-lag-exporter estimates "time lag".

The log end offset over time is taken as the straight line between samples, and the
moment it passed committed offset *c* is the last moment it was still at or below
*c* (``sup {t : L(t) <= c}``): inside a segment that rises through *c* the line is
solved for *c*; on a plateau at *c* (an idle producer) it is the plateau's last
sample. When the log end was already past *c* at the oldest sample (the group fell
behind before the samples begin: after a restart, say), the moment is extrapolated
back from the oldest sample at the partition's mean produce rate over the table; the
answer is ``None`` while there is no such rate (one sample, or a log that did not move).

Bounded memory, long reach: at most *capacity* samples. A sample that only extends a
plateau replaces the plateau's last one. When the table is full, every second sample
of its older half goes (the oldest is always kept), so the newest half stays at tick
resolution and older samples thin out as they age: the table reaches back to the
first sample ever taken, with a spacing that doubles with age. A log end offset that
goes backwards (the topic was recreated, the broker lost data) starts the table over.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Final

__all__ = ["DEFAULT_CAPACITY", "OffsetTimeline"]

#: Samples one partition keeps (two 8-byte numbers each).
DEFAULT_CAPACITY: Final = 32
#: The smallest table that can thin (its older half keeps the oldest and one more).
MIN_CAPACITY: Final = 4


class OffsetTimeline:
    """The (time, log end offset) samples of one partition (see the module docstring).

    Times are seconds on any clock that does not go backwards (a step back is taken
    as no time passing); offsets are the log end offsets the source read.
    """

    __slots__ = ("_capacity", "_offsets", "_times", "tick")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError(f"capacity must be >= {MIN_CAPACITY}, got {capacity!r}")
        self._capacity = capacity
        self._times = array("d")
        self._offsets = array("q")
        #: The owner's tick of the newest sample (its own bookkeeping; -1: none).
        self.tick = -1

    def __len__(self) -> int:
        return len(self._times)

    @property
    def capacity(self) -> int:
        return self._capacity

    def samples(self) -> list[tuple[float, int]]:
        """Every sample kept, oldest first."""
        return list(zip(self._times, self._offsets, strict=True))

    @property
    def newest(self) -> tuple[float, int] | None:
        """The latest sample, ``None`` before the first."""
        return (self._times[-1], self._offsets[-1]) if self._times else None

    def add(self, time: float, log_end: int) -> None:
        """Record that the log end offset was *log_end* at *time*."""
        times, offsets = self._times, self._offsets
        if times:
            last = offsets[-1]
            if log_end < last:  # the log went back: the samples describe another log
                del times[:], offsets[:]
            else:
                time = max(time, times[-1])
                if log_end == last and len(offsets) >= 2 and offsets[-2] == last:
                    times[-1] = time  # the plateau goes on: move its end
                    return
        if len(times) >= self._capacity:
            self._thin()
        times.append(time)
        offsets.append(log_end)

    def _thin(self) -> None:
        """Drop every second sample of the older half (the oldest stays)."""
        half = len(self._times) // 2
        del self._times[1:half:2]
        del self._offsets[1:half:2]

    def time_at(self, committed: int) -> float | None:
        """The last moment the log end offset was at or below *committed*: the newest
        sample's time when it still is; extrapolated before the oldest sample (see the
        module docstring), ``None`` when it cannot be."""
        offsets = self._offsets
        if not offsets:
            return None
        times = self._times
        if committed < offsets[0]:
            return self._before(committed)
        if committed >= offsets[-1]:
            return times[-1]
        after = bisect_right(offsets, committed)  # offsets[after-1] <= committed < offsets[after]
        t0, o0 = times[after - 1], offsets[after - 1]
        t1, o1 = times[after], offsets[after]
        return t0 + (t1 - t0) * (committed - o0) / (o1 - o0)

    def _before(self, committed: int) -> float | None:
        """When the log end passed *committed*, below the oldest sample: back from it at
        the mean produce rate over the samples (``None`` without one)."""
        times, offsets = self._times, self._offsets
        produced, elapsed = offsets[-1] - offsets[0], times[-1] - times[0]
        if produced <= 0 or elapsed <= 0:
            return None
        return times[0] - (offsets[0] - committed) * elapsed / produced

    def lag_seconds(self, committed: int) -> float | None:
        """Seconds between the newest sample and the moment the log end offset passed
        *committed* (0 when it has not); ``None`` when it cannot be told (see :meth:`time_at`).
        (:meth:`time_at` inlined: this runs once per partition of every group per tick.)"""
        offsets = self._offsets
        if not offsets:
            return None
        if committed >= offsets[-1]:
            return 0.0
        times = self._times
        if committed < offsets[0]:
            passed = self._before(committed)
            return None if passed is None else times[-1] - passed
        after = bisect_right(offsets, committed)
        t0, o0 = times[after - 1], offsets[after - 1]
        lag = times[-1] - t0 - (times[after] - t0) * (committed - o0) / (offsets[after] - o0)
        return lag if lag > 0 else 0.0
