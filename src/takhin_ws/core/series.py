"""The recent chart series of one server, for a page that reloads (sans-IO).

:class:`Series` is a bounded ring of :class:`~takhin_ws.protocol.HistoryPoint`: one per good
snapshot (cluster throughput, latency percentiles, total lag of the groups with the
most lag), covering at most ``window`` seconds at the tick rate. The producer feeds
it each snapshot it publishes (a node that does not collect, in cluster mode, feeds
it the snapshots the bus delivers); a client's ``{"type": "history"}`` is answered
with :meth:`Series.history`, so its charts are full at once instead of starting
empty. A stale snapshot (the source failing) adds nothing: the outage shows as a
hole in the charts, as it does live.

It also feeds :attr:`Series.groups`, each group's own lag over the same window
(:class:`~takhin_ws.core.lag.series.GroupLagSeries`), for ``history`` asked for
``group:<id>``.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson

from ..wire.messages import History, HistoryPoint, Latency, MonitoringMetrics, Throughput
from ..wire.websocket.frames import Outbound
from .lag.series import GroupLagSeries

__all__ = ["MAX_SERIES_GROUPS", "Series"]

#: Groups whose total lag one point keeps: the ones with the most lag at that tick
#: (a big cluster has hundreds; a page charts the trend of those that matter).
MAX_SERIES_GROUPS: Final = 50


class Series:
    """Up to ``window / interval`` points, none older than *window* seconds before
    the newest; oldest first. Timestamps are Unix seconds and never go backwards
    (a wall clock stepping back repeats the last one)."""

    __slots__ = ("_points", "_reply", "capacity", "groups", "interval", "max_groups", "window")

    def __init__(
        self, window: float, interval: float, *, max_groups: int = MAX_SERIES_GROUPS
    ) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if max_groups < 0:
            raise ValueError(f"max_groups must be >= 0, got {max_groups!r}")
        self.window = float(window)
        self.interval = float(interval)
        self.max_groups = max_groups
        #: Points kept at most: the window at the tick rate (one at least).
        self.capacity = max(1, math.floor(window / interval + 1e-9))
        self._points: deque[HistoryPoint] = deque(maxlen=self.capacity)
        #: Each group's lag over the same window (``history`` of ``group:<id>``).
        self.groups = GroupLagSeries(self.window, self.interval, self.capacity)
        self._reply: Outbound | None = None  # the encoded history, until the next point

    def __len__(self) -> int:
        return len(self._points)

    def add(self, metrics: MonitoringMetrics, timestamp: float) -> HistoryPoint:
        """Record the snapshot *metrics*, taken at *timestamp* (Unix seconds)."""
        lags = metrics.consumer_lags
        self.groups.add(((c.group_id, c.total_lag, c.lag_seconds) for c in lags), timestamp)
        totals = ((c.group_id, c.total_lag) for c in lags)
        return self._append(timestamp, metrics.throughput, metrics.latency, totals)

    def add_data(self, data: Mapping[str, Any], timestamp: float) -> HistoryPoint:
        """:meth:`add` for a snapshot as decoded JSON (the ``data`` of a ``metrics``
        message that came through an event bus)."""
        t, lat = data["throughput"], data["latency"]
        throughput = Throughput(
            produce_rate=float(t["produceRate"]),
            fetch_rate=float(t["fetchRate"]),
            produce_bytes=float(t["produceBytes"]),
            fetch_bytes=float(t["fetchBytes"]),
        )
        latency = Latency(
            produce_p50=float(lat["produceP50"]),
            produce_p95=float(lat["produceP95"]),
            produce_p99=float(lat["produceP99"]),
            fetch_p50=float(lat["fetchP50"]),
            fetch_p95=float(lat["fetchP95"]),
            fetch_p99=float(lat["fetchP99"]),
        )
        lags = data["consumerLags"]
        self.groups.add(
            ((c["groupId"], int(c["totalLag"]), _seconds(c.get("lagSeconds"))) for c in lags),
            timestamp,
        )
        totals = ((c["groupId"], int(c["totalLag"])) for c in lags)
        return self._append(timestamp, throughput, latency, totals)

    def add_message(self, payload: bytes) -> HistoryPoint | None:
        """:meth:`add_data` for an encoded ``metrics`` message (what a bus delivers);
        a stale one adds nothing. Raises ``ValueError`` for anything else."""
        try:
            envelope = orjson.loads(payload)
            if envelope["type"] != "metrics":
                raise ValueError(f"a {envelope['type']} message is not a snapshot")
            if envelope.get("stale") is True:
                return None
            return self.add_data(envelope["data"], float(envelope["timestamp"]))
        except (orjson.JSONDecodeError, LookupError, TypeError) as exc:
            raise ValueError(f"not a metrics message: {type(exc).__name__}: {exc}") from None

    def _append(
        self,
        timestamp: float,
        throughput: Throughput,
        latency: Latency,
        lags: Iterable[tuple[str, int]],
    ) -> HistoryPoint:
        points = self._points
        if points and timestamp < points[-1].timestamp:
            timestamp = points[-1].timestamp
        point = HistoryPoint(
            timestamp=round(timestamp, 3),
            throughput=throughput,
            latency=latency,
            group_lags=self._top(lags),
        )
        points.append(point)  # the deque drops the oldest past capacity
        self._reply = None
        horizon = point.timestamp - self.window
        while points[0].timestamp < horizon:
            points.popleft()
        return point

    def _top(self, lags: Iterable[tuple[str, int]]) -> dict[str, int]:
        """The groups with the most lag (ties: the smaller id), at most max_groups."""
        every = dict(lags)
        if len(every) <= self.max_groups:
            return every
        top = heapq.nsmallest(self.max_groups, every.items(), key=lambda gl: (-gl[1], gl[0]))
        return dict(top)

    def clear(self) -> None:
        self._points.clear()
        self._reply = None
        self.groups.clear()

    def points(self) -> tuple[HistoryPoint, ...]:
        """Every point kept, oldest first."""
        return tuple(self._points)

    def history(self) -> History:
        """The ``history`` message: the interval and every point kept."""
        return History(interval=self.interval, points=tuple(self._points))

    def reply(self, encode: Callable[[History], Outbound]) -> Outbound:
        """:meth:`history` as *encode* makes it (``Hub.reply``), once per new point:
        every client asking until the next tick shares the frame (a few hundred KiB
        for a big cluster's 15 minutes), and its compressed variants."""
        if self._reply is None:
            self._reply = encode(self.history())
        return self._reply


def _seconds(value: object) -> float | None:
    """A snapshot's ``lagSeconds`` as delivered (a number, or null from a node that
    does not know it); anything else counts as not known."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
