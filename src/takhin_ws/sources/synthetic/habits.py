"""The synthetic groups' habits: what makes every lag status show up within minutes.

Each simulated group has a habit, chosen by its serial number (so the default four
groups have one each, and so does every eighth group after them):

- ``steady``: consumes at a speed that oscillates around the produce rate (lag grows
  and shrinks: ``OK`` and, while it is slower, ``LAGGING``);
- ``stalls``: for :data:`STALL_FOR` seconds of every :data:`STALL_CYCLE` it commits
  nothing while it keeps its members (``STALLED``), then catches up;
- ``rewinds``: every :data:`REWIND_CYCLE` seconds its committed offsets on one topic
  go back by :data:`REWIND_SECONDS` seconds of traffic, as an offset reset does
  (``REWOUND``), and it reads them again;
- ``stops``: for :data:`STOP_FOR` seconds of every :data:`STOP_CYCLE` its members leave
  (``Empty``, 0 members, lag growing: ``STOPPED``), then it rejoins.

The cycles are staggered per group (:data:`STAGGER` seconds by serial) and draw nothing
from the simulation's random generator, so a seed's history stays what it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .snapshot import SimGroup, SimTopic

__all__ = ["HABITS", "habit_of", "rewind", "rewinds_now", "stalled", "stopped"]

#: The habit of group serial *n* is ``HABITS[n % len(HABITS)]``.
HABITS: Final = ("steady", "stalls", "rewinds", "stops", "steady", "steady", "steady", "steady")
STALL_CYCLE: Final = 150.0
STALL_FOR: Final = 60.0
STOP_CYCLE: Final = 180.0
STOP_FOR: Final = 50.0
REWIND_CYCLE: Final = 120.0
REWIND_SECONDS: Final = 90.0
#: Seconds between two groups' cycles (so the habits do not all strike at once).
STAGGER: Final = 37.0


def habit_of(serial: int) -> tuple[str, float]:
    """The habit of the group with serial *serial*, and the phase of its cycles."""
    return HABITS[serial % len(HABITS)], serial * STAGGER


def stalled(group: SimGroup, t: float) -> bool:
    """Whether *group* commits nothing at simulated time *t*."""
    return group.habit == "stalls" and (t + group.habit_phase) % STALL_CYCLE < STALL_FOR


def stopped(group: SimGroup, t: float) -> bool:
    """Whether *group*'s members are gone at simulated time *t*."""
    return group.habit == "stops" and (t + group.habit_phase) % STOP_CYCLE < STOP_FOR


def rewinds_now(group: SimGroup, before: float, t: float) -> bool:
    """Whether *group* resets its offsets between simulated times *before* and *t*."""
    if group.habit != "rewinds":
        return False
    phase = group.habit_phase
    return (before + phase) // REWIND_CYCLE != (t + phase) // REWIND_CYCLE


def rewind(group: SimGroup, topic: SimTopic) -> None:
    """Move *group*'s committed offsets on *topic* back by :data:`REWIND_SECONDS` of
    its traffic (at least one message each, never below 0)."""
    for partition, share in enumerate(topic.shares):
        key = (topic.name, partition)
        back = max(1, int(topic.rate * share * REWIND_SECONDS))
        group.committed[key] = max(group.committed[key] - back, 0)
        group.carry[key] = 0.0
