"""A subscriber that records every item the hub offers it, in order.

The tests of what a producer publishes tick by tick read every publish, while a
``QueueSubscriber`` conflates state (a newer snapshot replaces the pending one, as a slow
client's queue does): these tests use this recorder instead.
"""

from __future__ import annotations

from takhin_ws.core.queue import DropOldestQueue
from takhin_ws.wire.websocket.frames import Outbound


class Recorder:
    """Keeps every offered item; ``get_batch_nowait()`` hands them over and forgets them.

    ``queue`` (which the hub's ``Subscriber`` protocol has) stays empty."""

    __slots__ = ("items", "queue")

    def __init__(self) -> None:
        self.items: list[Outbound] = []
        self.queue: DropOldestQueue[Outbound] = DropOldestQueue(1)

    def offer(self, item: Outbound) -> None:
        self.items.append(item)

    def get_batch_nowait(self) -> list[Outbound]:
        items, self.items = self.items, []
        return items
