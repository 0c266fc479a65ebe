"""The lag insight's wire vocabulary: group statuses and the points of one group's lag
history (sans-IO).

The fields the insight adds to ``consumerLags`` (``lagSeconds``, ``consumeRate``,
``status``, ``drainSeconds``) live on the metrics classes in
:mod:`takhin_ws.wire.messages`, the ``group_status`` event with the other events in
:mod:`takhin_ws.wire.events`; how they are computed is :mod:`takhin_ws.core.lag.tracker`.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

from attrs import frozen

__all__ = ["LAG_STATUSES", "LagPoint", "LagStatus"]

#: A consumer group's status, Burrow-style (see docs/metrics.md for each rule):
#: ``OK`` lag reached 0 in the window or is not growing; ``LAGGING`` commits advance
#: but lag grew over the whole window; ``STALLED`` the committed offset did not move
#: over the window while lag > 0 and the group has members; ``STOPPED`` the group has
#: no members and lag > 0; ``REWOUND`` a committed offset went backwards in the
#: window; ``UNKNOWN`` too few observations yet.
LagStatus: TypeAlias = Literal["OK", "LAGGING", "STALLED", "STOPPED", "REWOUND", "UNKNOWN"]
LAG_STATUSES: Final[tuple[str, ...]] = get_args(LagStatus)


@frozen(kw_only=True)
class LagPoint:
    """One tick of a group's lag history (the answer to ``history`` for
    ``group:<groupId>``): ``timestamp`` in Unix seconds, ``totalLag`` in messages,
    ``lagSeconds`` as the snapshot had it (``null`` when it was not known)."""

    timestamp: float
    total_lag: int
    lag_seconds: float | None = None
