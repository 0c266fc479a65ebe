"""Lag an operator can act on, computed once per tick for every source (sans-IO).

:class:`LagTracker` is fed each good snapshot (by the producer, whatever the source:
synthetic, prometheus, kafka) and answers the same snapshot with the lag insight filled
in, plus the ``group_status`` events of the groups whose status changed:

- ``partitionLags[].lagSeconds``: seconds since the partition's log end offset passed
  the group's committed offset, interpolated in that partition's own (time, log end
  offset) samples (:class:`~takhin_ws.core.lag.timeline.OffsetTimeline`); 0 when the lag
  is 0; before the oldest sample, extrapolated back at the partition's mean produce
  rate over its samples; ``None`` while there is no such rate.
- ``partitionLags[].consumeRate``: committed messages per second over the window
  (a step back counts as no progress); ``None`` before two observations.
- ``topicLags[].lagSeconds``, ``consumerLags[].lagSeconds``: the largest known value
  below (``None`` when none is known).
- ``consumerLags[].status``: the worst partition's status over the window
  (:mod:`takhin_ws.core.lag.status`).
- ``consumerLags[].drainSeconds``: the group's total lag divided by the rate it
  shrinks at (the least-squares slope of the total lag over the window, which is the
  consume rate minus the produce rate); 0 at lag 0; ``None`` while it is not shrinking.

A change of a group's known status is announced as ``group_status`` (previous, new,
and the reason its worst partition gives). ``UNKNOWN`` (too few observations) is
shown in the snapshot but never announced, and a group's first known status is
announced only when it is not ``OK`` (``previous`` is then ``UNKNOWN``): a server
that starts does not announce every healthy group.

Memory is bounded by what the latest snapshots hold: per partition a timeline of at
most ``samples`` samples, per partition of a group a window of ``window`` committed
offsets, per group a window of its total lag. A group, topic or partition that no
snapshot showed for ``window`` ticks is forgotten. Times are Unix seconds from the
producer's clock; a clock that steps back counts as no time passing.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Generator
from typing import Final

import attrs

from ...wire.events import GroupStatus
from ...wire.lag import LagStatus
from ...wire.messages import ConsumerLag, PartitionLag, TopicLag
from ..encoding import complete, weight
from ..metrics.snapshot import Snapshot
from .status import MIN_WINDOW, SEVERITY, PartitionWindow
from .timeline import DEFAULT_CAPACITY, OffsetTimeline

__all__ = ["DEFAULT_LAG_WINDOW", "OBSERVE_PIECE", "LagTracker"]

#: Observations (ticks) a status is judged over: 20 s at the default 2 s interval.
DEFAULT_LAG_WINDOW: Final = 10
#: Objects (a group, its topics, their partitions) observed between two yields of
#: :meth:`LagTracker.observe_steps`: about a millisecond of CPU (~3.5 µs a partition).
OBSERVE_PIECE: Final = 256


class _Group:
    """One group's state across ticks: its partitions' windows, its total lag over
    the window (for the drain estimate), and the status last shown."""

    __slots__ = ("announced", "count", "partitions", "status", "tick", "totals")

    def __init__(self, window: int) -> None:
        self.partitions: dict[str, dict[int, PartitionWindow]] = {}
        self.totals = array("q", bytes(8 * window))  # ring by observation index
        self.count = 0
        self.tick = -1
        self.status: LagStatus = "UNKNOWN"
        #: The last known status (never UNKNOWN), ``None`` before the first.
        self.announced: LagStatus | None = None


class LagTracker:
    """The lag insight of successive snapshots (see the module docstring).

    *window* is the number of observations a status is judged over (at least 2);
    *samples* the number of (time, log end offset) samples kept per partition.
    """

    def __init__(self, window: int = DEFAULT_LAG_WINDOW, samples: int = DEFAULT_CAPACITY) -> None:
        if window < MIN_WINDOW:
            raise ValueError(f"window must be >= {MIN_WINDOW}, got {window!r}")
        OffsetTimeline(samples)  # checks the capacity
        self.window = window
        self.samples = samples
        self._timelines: dict[str, dict[int, OffsetTimeline]] = {}
        self._groups: dict[str, _Group] = {}
        self._times = array("d", bytes(8 * window))  # tick times, ring by tick
        self._tick = -1
        self._now = -math.inf

    def clear(self) -> None:
        """Forget everything (another node collected meanwhile, say)."""
        self._timelines.clear()
        self._groups.clear()
        self._tick = -1
        self._now = -math.inf

    @property
    def partitions(self) -> int:
        """Partitions whose log end offset is being sampled."""
        return sum(len(parts) for parts in self._timelines.values())

    @property
    def groups(self) -> int:
        """Groups being watched."""
        return len(self._groups)

    def status(self, group_id: str) -> LagStatus | None:
        """The status *group_id* had at the last tick (``None``: not watched)."""
        group = self._groups.get(group_id)
        return None if group is None else group.status

    # --- one tick ---

    def observe(self, snapshot: Snapshot, now: float) -> tuple[Snapshot, list[GroupStatus]]:
        """*snapshot* (taken at *now*, Unix seconds) with the lag insight filled in,
        and the ``group_status`` events of this tick."""
        return complete(self.observe_steps(snapshot, now))

    def observe_steps(
        self, snapshot: Snapshot, now: float, piece: int = OBSERVE_PIECE
    ) -> Generator[None, None, tuple[Snapshot, list[GroupStatus]]]:
        """:meth:`observe` in steps: yields after each run of groups holding about
        *piece* objects (a group, its topics, their partitions), where an async caller
        lets other tasks run. Run one to its end before the next (a tick left
        half-way leaves the groups it did not reach one observation short)."""
        self._tick += 1
        tick = self._tick
        now = self._now = max(now, self._now)
        self._times[tick % self.window] = now
        events: list[GroupStatus] = []
        lags: list[ConsumerLag] = []
        done = 0
        for lag in snapshot.metrics.consumer_lags:
            lags.append(self._group(lag, snapshot, tick, now, events))
            done += weight(lag)
            if done >= piece:
                yield
                done = 0
        if tick % self.window == 0:
            yield
            yield from self._forget(tick - self.window, piece)
        metrics = attrs.evolve(snapshot.metrics, consumer_lags=tuple(lags))
        return Snapshot(metrics=metrics, groups=snapshot.groups), events

    def _group(
        self, lag: ConsumerLag, snapshot: Snapshot, tick: int, now: float, events: list[GroupStatus]
    ) -> ConsumerLag:
        group = self._groups.get(lag.group_id)
        if group is None:
            group = self._groups[lag.group_id] = _Group(self.window)
        info = snapshot.groups.get(lag.group_id)
        members = None if info is None else info.members
        size = self.window
        times = self._times
        status: LagStatus = "UNKNOWN"
        severity = SEVERITY[status]
        decided: tuple[PartitionWindow, str, int] | None = None
        seconds: float | None = None
        topic_lags = []
        for topic_lag in lag.topic_lags:
            topic = topic_lag.topic
            windows = group.partitions.get(topic)
            if windows is None:
                windows = group.partitions[topic] = {}
            timelines = self._timelines.get(topic)
            if timelines is None:
                timelines = self._timelines[topic] = {}
            topic_seconds: float | None = None
            partition_lags = []
            for p in topic_lag.partition_lags:
                number, behind = p.partition, p.lag
                timeline = timelines.get(number)
                if timeline is None:
                    timeline = timelines[number] = OffsetTimeline(self.samples)
                if timeline.tick != tick:
                    timeline.tick = tick
                    timeline.add(now, p.log_end_offset)
                # where the consumer is, as the lag says (a source may clamp the offset)
                late = 0.0 if behind <= 0 else timeline.lag_seconds(p.log_end_offset - behind)
                if late is not None and (topic_seconds is None or late > topic_seconds):
                    topic_seconds = late
                window = windows.get(number)
                if window is None:
                    window = windows[number] = PartitionWindow(size)
                first = window.observe(p.current_offset, behind, tick)
                count = window.count
                rate = None
                if count > 1:
                    elapsed = now - times[(tick - (count if count < size else size) + 1) % size]
                    if elapsed > 0:
                        progress = p.current_offset - first
                        rate = progress / elapsed if progress > 0 else 0.0
                found = window.status(members)
                if SEVERITY[found] > severity:
                    status, severity = found, SEVERITY[found]
                    decided = (window, topic, number)
                partition_lags.append(
                    PartitionLag(
                        partition=number,
                        current_offset=p.current_offset,
                        log_end_offset=p.log_end_offset,
                        lag=behind,
                        lag_seconds=late,
                        consume_rate=rate,
                    )
                )
            if topic_seconds is not None and (seconds is None or topic_seconds > seconds):
                seconds = topic_seconds
            topic_lags.append(
                TopicLag(
                    topic=topic,
                    total_lag=topic_lag.total_lag,
                    partition_lags=tuple(partition_lags),
                    lag_seconds=topic_seconds,
                )
            )
        self._note(group, lag.group_id, status, decided, events)
        return ConsumerLag(
            group_id=lag.group_id,
            total_lag=lag.total_lag,
            topic_lags=tuple(topic_lags),
            lag_seconds=seconds,
            status=status,
            drain_seconds=self._drain(group, lag.total_lag, tick),
        )

    def _note(
        self,
        group: _Group,
        group_id: str,
        status: LagStatus,
        decided: tuple[PartitionWindow, str, int] | None,
        events: list[GroupStatus],
    ) -> None:
        group.status = status
        announced = group.announced
        if status == "UNKNOWN" or status == announced:
            return
        group.announced = status
        if announced is None and status == "OK":
            return
        reason = ""
        if decided is not None:
            window, topic, partition = decided
            reason = window.reason(status, f"{topic}[{partition}]")
        events.append(
            GroupStatus(
                group_id=group_id, status=status, previous=announced or "UNKNOWN", reason=reason
            )
        )

    def _drain(self, group: _Group, total: int, tick: int) -> float | None:
        """Seconds to lag 0 at the rate the total lag shrank over the window."""
        if tick != group.tick + 1:
            group.count = 0
        group.tick = tick
        size = self.window
        totals = group.totals
        totals[group.count % size] = total
        group.count += 1
        if total <= 0:
            return 0.0
        span = min(group.count, size)
        if span < 2:
            return None
        times = self._times
        xs = [times[(tick - k) % size] for k in range(span)]
        ys = [totals[(group.count - 1 - k) % size] for k in range(span)]
        mean_x = sum(xs) / span
        mean_y = sum(ys) / span
        sxx = sxy = 0.0
        for x, y in zip(xs, ys, strict=True):
            sxx += (x - mean_x) * (x - mean_x)
            sxy += (x - mean_x) * (y - mean_y)
        if not sxx > 0:
            return None
        slope = sxy / sxx
        return total / -slope if slope < 0 else None

    def _forget(self, before: int, piece: int) -> Generator[None, None, None]:
        """Drop what no snapshot showed since tick *before*, yielding after each run of
        about *piece* partitions looked at."""
        for group_id in [g for g, group in self._groups.items() if group.tick < before]:
            del self._groups[group_id]
        done = 0
        for group in list(self._groups.values()):
            for topic in list(group.partitions):
                windows = group.partitions[topic]
                for partition in [p for p, w in windows.items() if w.tick < before]:
                    del windows[partition]
                if not windows:
                    del group.partitions[topic]
                done += len(windows) + 1
            if done >= piece:
                yield
                done = 0
        for topic in list(self._timelines):
            timelines = self._timelines[topic]
            for partition in [p for p, t in timelines.items() if t.tick < before]:
                del timelines[partition]
            if not timelines:
                del self._timelines[topic]
            done += len(timelines) + 1
            if done >= piece:
                yield
                done = 0
