"""Each consumer group's recent lag, for the chart of a group's drill-down (sans-IO).

:class:`GroupLagSeries` keeps, for every group of the recent snapshots, its
``totalLag`` and ``lagSeconds`` at each tick of the last ``window`` seconds (at most
``capacity`` ticks, the same as the cluster's :class:`~takhin_ws.core.series.Series`,
which owns one and feeds it). A client's ``{"type": "history", "data": {"channel":
"group:<id>"}}`` is answered with :meth:`GroupLagSeries.history`.

Memory is bounded per group: the tick times are kept once for all groups, and a group
holds two numbers a tick (its total lag as an 8-byte float, exact to 2^53 messages, and
its lag in seconds as a 4-byte float, ``NaN`` for ``null``): 12 bytes a point, 5.4 KB
for the 450 points of the default 15 minutes at 2 s. A tick a group was not in the
snapshot holds ``NaN`` too and is left out of its answer; a group with no point left
inside the window is forgotten.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable

from ...wire.messages import History, LagPoint
from ...wire.websocket.frames import Outbound

__all__ = ["GroupLagSeries"]

_NAN = math.nan


class _Lags:
    """One group's columns, from global tick ``start`` on (one entry a tick)."""

    __slots__ = ("seconds", "start", "totals")

    def __init__(self, start: int) -> None:
        self.start = start
        self.totals = array("d")
        self.seconds = array("f")

    @property
    def end(self) -> int:
        """The global tick after the group's last entry."""
        return self.start + len(self.totals)


class GroupLagSeries:
    """Every group's (totalLag, lagSeconds) per tick over *window* seconds (see the
    module docstring). Timestamps are Unix seconds, never going backwards."""

    __slots__ = ("_first", "_groups", "_replies", "_times", "capacity", "interval", "window")

    def __init__(self, window: float, interval: float, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.window = float(window)
        self.interval = float(interval)
        self.capacity = capacity
        self._times = array("d")  # the ticks' timestamps, oldest first
        self._first = 0  # global index of _times[0]
        self._groups: dict[str, _Lags] = {}
        self._replies: dict[str, Outbound] = {}  # encoded answers, until the next tick

    def __len__(self) -> int:
        """Groups with at least one tick inside the window."""
        return len(self._groups)

    def add(self, lags: Iterable[tuple[str, int, float | None]], timestamp: float) -> None:
        """One tick: each group's ``(groupId, totalLag, lagSeconds)`` at *timestamp*."""
        times = self._times
        if times and timestamp < times[-1]:
            timestamp = times[-1]
        tick = self._first + len(times)
        times.append(round(timestamp, 3))
        groups = self._groups
        for group_id, total, seconds in lags:
            lag = groups.get(group_id)
            if lag is None:
                lag = groups[group_id] = _Lags(tick)
            elif lag.end < tick:  # absent meanwhile
                missing = tick - lag.end
                lag.totals.extend([_NAN] * missing)
                lag.seconds.extend([_NAN] * missing)
            if lag.end == tick:  # (a group listed twice keeps its first entry)
                lag.totals.append(float(total))
                lag.seconds.append(_NAN if seconds is None else seconds)
        self._trim()
        self._replies.clear()

    def _trim(self) -> None:
        """Keep at most *capacity* ticks, none older than *window* before the newest."""
        times = self._times
        drop = max(len(times) - self.capacity, bisect_left(times, times[-1] - self.window))
        if drop <= 0:
            return
        del times[:drop]
        self._first += drop
        first = self._first
        for group_id in list(self._groups):
            lag = self._groups[group_id]
            if lag.end <= first:
                del self._groups[group_id]
            elif lag.start < first:
                cut = first - lag.start
                del lag.totals[:cut]
                del lag.seconds[:cut]
                lag.start = first

    def clear(self) -> None:
        self._times = array("d")
        self._first = 0
        self._groups.clear()
        self._replies.clear()

    def points(self, group_id: str) -> tuple[LagPoint, ...]:
        """The group's points, oldest first (none for a group not kept)."""
        lag = self._groups.get(group_id)
        if lag is None:
            return ()
        offset = lag.start - self._first
        times = self._times
        return tuple(
            LagPoint(
                timestamp=times[offset + i],
                total_lag=int(total),
                lag_seconds=None if math.isnan(seconds) else round(seconds, 3),
            )
            for i, (total, seconds) in enumerate(zip(lag.totals, lag.seconds, strict=True))
            if not math.isnan(total)
        )

    def history(self, group_id: str) -> History:
        """The ``history`` answer for channel ``group:<group_id>``."""
        return History(
            interval=self.interval, channel=f"group:{group_id}", lags=self.points(group_id)
        )

    def reply(self, group_id: str, encode: Callable[[History], Outbound]) -> Outbound:
        """:meth:`history` as *encode* makes it, once per group and tick (every client
        asking for the same group until the next tick shares the frame; the answer for
        a group not kept, which is small, is not kept either)."""
        reply = self._replies.get(group_id)
        if reply is None:
            reply = encode(self.history(group_id))
            if group_id in self._groups:
                self._replies[group_id] = reply
        return reply
