"""A consumer group's status from a sliding window of its commits, Burrow-style (sans-IO).

One :class:`PartitionWindow` per (group, topic, partition) watches the last *window*
observations of the committed offset and the lag, one per tick, and
:meth:`~PartitionWindow.status` applies these rules in this order (the first that
holds decides):

1. ``REWOUND``: the committed offset went backwards between two observations of the
   window (someone reset the group's offsets).
2. ``STOPPED``: the group has no members and the lag is above 0.
3. ``UNKNOWN``: fewer than *window* observations yet.
4. ``OK``: the lag was 0 at some observation of the window.
5. ``STALLED``: the committed offset did not move over the window and the lag is
   above 0 (the group has members, or the source does not say).
6. ``LAGGING``: the lag never shrank between two observations of the window and grew
   at least once, while commits advanced.
7. ``OK`` otherwise (the consumer keeps up, or is catching up).

A group's status is its worst partition's (:data:`SEVERITY`); ``UNKNOWN`` counts
least, so a partition that has just appeared does not hide what the others say.

The window keeps O(1) state per partition: the last *window* committed offsets (for
the consume rate) and, for each kind of change (a step back, a move, the lag at 0,
shrinking, growing), the index of the last observation where it happened; "within
the window" is then a comparison.
"""

from __future__ import annotations

from array import array
from typing import Final

from ...wire.lag import LagStatus

__all__ = ["MIN_WINDOW", "SEVERITY", "PartitionWindow", "worst"]

#: The smallest window: two observations make one step to judge.
MIN_WINDOW: Final = 2

#: How bad each status is; a group shows its worst partition's.
SEVERITY: Final[dict[str, int]] = {
    "UNKNOWN": 0,
    "OK": 1,
    "LAGGING": 2,
    "STALLED": 3,
    "STOPPED": 4,
    "REWOUND": 5,
}

_NEVER: Final = -(2**62)


def worst(statuses: list[LagStatus]) -> LagStatus:
    """The most severe of *statuses* (``UNKNOWN`` for none)."""
    return max(statuses, key=SEVERITY.__getitem__, default="UNKNOWN")


class PartitionWindow:
    """The last *window* observations of one partition of one group."""

    __slots__ = (
        "_committed",
        "count",
        "fall_at",
        "lag",
        "move_at",
        "rewind_at",
        "rewound_from",
        "rewound_to",
        "rise_at",
        "tick",
        "window",
        "zero_at",
    )

    def __init__(self, window: int) -> None:
        if window < MIN_WINDOW:
            raise ValueError(f"window must be >= {MIN_WINDOW}, got {window!r}")
        self.window = window
        self._committed = array("q", bytes(8 * window))  # a ring, by observation index
        #: Observations so far (the newest has index ``count - 1``).
        self.count = 0
        #: The tracker's tick of the newest observation.
        self.tick = -1
        self.lag = 0
        self.rewind_at = self.move_at = self.zero_at = _NEVER
        self.fall_at = self.rise_at = _NEVER
        self.rewound_from = self.rewound_to = 0

    def restart(self) -> None:
        """Forget every observation (the partition was not seen for a while)."""
        self.count = 0
        self.rewind_at = self.move_at = self.zero_at = _NEVER
        self.fall_at = self.rise_at = _NEVER

    def observe(self, committed: int, lag: int, tick: int) -> int:
        """One observation: *committed* offset and *lag* at tracker tick *tick* (a
        tick that does not follow the previous one starts the window over). Returns
        the committed offset at the window's first observation."""
        if tick != self.tick + 1:
            self.restart()
        self.tick = tick
        index = self.count
        ring = self._committed
        window = self.window
        if index:
            before = ring[(index - 1) % window]
            if committed != before:
                self.move_at = index
                if committed < before:
                    self.rewind_at = index
                    self.rewound_from, self.rewound_to = before, committed
            if lag < self.lag:
                self.fall_at = index
            elif lag > self.lag:
                self.rise_at = index
        if lag <= 0:
            self.zero_at = index
        ring[index % window] = committed
        self.lag = lag
        self.count = index + 1
        return ring[(index + 1) % window] if index >= window else ring[0]

    @property
    def committed(self) -> int:
        """The newest committed offset."""
        return self._committed[(self.count - 1) % self.window]

    @property
    def span(self) -> int:
        """Observations in the window now (at most *window*)."""
        return min(self.count, self.window)

    def oldest_committed(self) -> int:
        """The committed offset at the window's first observation."""
        return self._committed[(self.count - self.span) % self.window]

    def status(self, members: int | None) -> LagStatus:
        """This partition's status (rules in the module docstring); *members* is the
        group's member count, ``None`` when the source does not say."""
        newest = self.count - 1
        first_step = newest - self.window + 2  # steps are numbered by their later index
        if self.rewind_at >= first_step:
            return "REWOUND"
        if members == 0 and self.lag > 0:
            return "STOPPED"
        if self.count < self.window:
            return "UNKNOWN"
        if self.zero_at > newest - self.window:
            return "OK"
        if self.move_at < first_step:
            return "STALLED"
        if self.fall_at < first_step and self.rise_at >= first_step:
            return "LAGGING"
        return "OK"

    def reason(self, status: LagStatus, where: str) -> str:
        """Why *status*, in words, for the partition called *where*."""
        if status == "REWOUND":
            return (
                f"{where}: the committed offset went back from {self.rewound_from} "
                f"to {self.rewound_to}"
            )
        if status == "STOPPED":
            return f"{where}: the group has no members and {self.lag} messages of lag"
        if status == "STALLED":
            return (
                f"{where}: the committed offset stayed at {self.committed} for "
                f"{self.window} observations with {self.lag} messages of lag"
            )
        if status == "LAGGING":
            return (
                f"{where}: commits advance but the lag grew over {self.window} "
                f"observations, to {self.lag} messages"
            )
        if status == "UNKNOWN":
            return f"{where}: fewer than {self.window} observations yet"
        return f"{where}: the lag reached 0 or is not growing"
