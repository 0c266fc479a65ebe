"""The lag insight applied to a snapshot off the event loop when it is big.

:func:`observe` runs :meth:`~takhin_ws.core.lag.tracker.LagTracker.observe` (pure, no I/O)
inline for a small snapshot and in a Trio worker thread for one with more than
:data:`LAG_INLINE_PARTITIONS` partition lags, so a big tick competes for the GIL in
short slices instead of holding the event loop for the whole computation. The tracker
is only ever used by one call at a time (the producer's tick).
"""

from __future__ import annotations

from typing import Final

import trio

from ..core.lag.tracker import LagTracker
from ..core.metrics.snapshot import Snapshot
from ..wire.events import Event

__all__ = ["LAG_INLINE_PARTITIONS", "observe"]

#: Snapshots with more partition lags than this go through the tracker in a worker
#: thread (a small one is faster inline than a thread's round trip).
LAG_INLINE_PARTITIONS: Final = 2000


async def observe(
    tracker: LagTracker, snapshot: Snapshot, now: float
) -> tuple[Snapshot, list[Event]]:
    """*snapshot* (taken at *now*) with the lag insight, and the tick's ``group_status``
    events."""
    lags = snapshot.metrics.consumer_lags
    if sum(len(t.partition_lags) for c in lags for t in c.topic_lags) > LAG_INLINE_PARTITIONS:
        observed, statuses = await trio.to_thread.run_sync(tracker.observe, snapshot, now)
    else:
        observed, statuses = tracker.observe(snapshot, now)
    return observed, list(statuses)
