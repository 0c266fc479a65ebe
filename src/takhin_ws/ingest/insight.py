"""The lag insight applied to a snapshot in steps of the event loop.

:func:`observe` runs :meth:`~takhin_ws.core.lag.tracker.LagTracker.observe_steps` (pure,
no I/O) with a checkpoint every :data:`~takhin_ws.core.lag.tracker.OBSERVE_PIECE`
objects: a big tick (12,000 partitions: ~50 ms of CPU) runs in steps of about a
millisecond instead of holding the event loop, or, in a worker thread, competing with
it for the GIL (which kept the loop waiting ~10 ms at a time). The tracker is only
ever used by one call at a time (the producer's tick).
"""

from __future__ import annotations

from ..core.lag.tracker import LagTracker
from ..core.metrics.snapshot import Snapshot
from ..wire.events import Event
from .bus import in_steps

__all__ = ["observe"]


async def observe(
    tracker: LagTracker, snapshot: Snapshot, now: float
) -> tuple[Snapshot, list[Event]]:
    """*snapshot* (taken at *now*) with the lag insight, and the tick's ``group_status``
    events."""
    observed, statuses = await in_steps(tracker.observe_steps(snapshot, now))
    return observed, list(statuses)
