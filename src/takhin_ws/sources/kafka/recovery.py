"""When the ``kafka`` source closes its client and opens a new one (no I/O).

librdkafka reconnects by itself, but not always all the way: after a broker restart a
client that was connected before may answer Metadata and ListOffsets again while its
group requests never find their coordinator (seen with librdkafka 2.16 against Apache
Kafka 4.x: 15 restarts of 15). A new client has no such memory, so the source makes one:

- after :attr:`Recovery.reset_after` failed ticks in a row on the same client;
- at once when the cluster answers again (its metadata came back) after a tick where it
  did not, and the tick failed anyway: that is the stuck client;
- never sooner than the backoff after the previous new client of the same outage:
  :data:`RESET_BACKOFF` seconds, doubled each time up to :data:`RESET_BACKOFF_MAX`
  (the cluster coming back skips the wait, once per outage). A good tick ends the
  outage and the backoff starts over.
"""

from __future__ import annotations

import math
from typing import Final

from attrs import define, field

__all__ = ["RESET_BACKOFF", "RESET_BACKOFF_MAX", "Recovery"]

#: Seconds between the first and the second new client of one outage.
RESET_BACKOFF: Final = 2.0
#: The longest wait between two new clients of one outage (seconds).
RESET_BACKOFF_MAX: Final = 60.0


@define
class Recovery:
    """The decision, tick by tick. ``now`` is any monotonic clock in seconds."""

    #: Failed ticks in a row on one client before a new one is made.
    reset_after: int = field()
    backoff: float = RESET_BACKOFF
    backoff_max: float = RESET_BACKOFF_MAX
    #: Failed ticks in a row (0 after a good one).
    streak: int = 0
    #: Failed ticks in a row on the current client.
    on_client: int = 0
    #: New clients made since the last good tick.
    resets: int = 0
    _reachable: bool = True
    _not_before: float = -math.inf
    _delay: float = field(init=False)

    @reset_after.validator
    def _positive(self, _: object, value: int) -> None:
        if value < 1:
            raise ValueError(f"reset_after must be >= 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        self._delay = self.backoff

    def succeeded(self) -> None:
        """A whole tick: the outage (if any) is over."""
        self.streak = self.on_client = self.resets = 0
        self._reachable = True
        self._not_before = -math.inf
        self._delay = self.backoff

    def failed(self, now: float, *, reachable: bool) -> bool:
        """A failed tick; *reachable*: whether the cluster answered its metadata
        request. Returns whether to make a new client now (then it is counted as made)."""
        self.streak += 1
        self.on_client += 1
        came_back = reachable and not self._reachable
        self._reachable = reachable
        if not came_back and (self.on_client < self.reset_after or now < self._not_before):
            return False
        self.on_client = 0
        self.resets += 1
        self._not_before = now + self._delay
        self._delay = min(self._delay * 2, self.backoff_max)
        return True
