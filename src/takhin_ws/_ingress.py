"""Event ingress: the one ordered path by which change events enter the hub.

Everything that announces a change goes through :class:`EventIngress`: Trio
console code in the same process (``publish_nowait`` / ``publish``), the HTTP
endpoint ``POST /api/events``, and the change detector of the metrics producer.
Each event gets the next offset of its stream (``topics`` or ``groups``) in the
order the calls are made; it is validated before anything is published, and a
batch is published whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from attrs import frozen

from ._bus import EventBus, MemoryBus, Published
from ._codec import encode
from ._exceptions import LocalProtocolError
from ._hub import Hub, channel_of
from ._messages import (
    EVENT_TYPES,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    Payload,
    TopicCreated,
    TopicDeleted,
)
from ._messages import Envelope as _Envelope

__all__ = ["Event", "EventIngress", "IngressStatistics"]

Event = TopicCreated | TopicDeleted | GroupCreated | GroupUpdated | GroupDeleted
_EVENT_CLASSES: Final = (TopicCreated, TopicDeleted, GroupCreated, GroupUpdated, GroupDeleted)


@frozen
class IngressStatistics:
    published: int
    rejected: int


class EventIngress:
    """Publish change events through *bus* (by default the hub itself), in call order.

    With the in-memory bus the hub's publish never blocks, so ``publish_nowait``
    is complete when it returns: the event has its offset and has been written to
    (or queued for) every subscribed client. ``publish`` is the form for async
    callers and the one that works with every bus: it waits while a shared bus
    takes the event (backpressure) and raises ``BusUnavailableError`` if it cannot.
    """

    def __init__(self, hub_or_bus: Hub | EventBus) -> None:
        self._bus: EventBus = MemoryBus(hub_or_bus) if isinstance(hub_or_bus, Hub) else hub_or_bus
        self._published = 0
        self._rejected = 0

    def _check(self, events: Sequence[object]) -> list[Event]:
        checked: list[Event] = []
        for index, event in enumerate(events):
            if not isinstance(event, _EVENT_CLASSES):
                self._rejected += 1
                kinds = ", ".join(sorted(EVENT_TYPES))
                raise LocalProtocolError(
                    "invalid_field",
                    f"item {index}: {type(event).__name__} is not an event (one of {kinds})",
                )
            name = event.name if isinstance(event, TopicCreated | TopicDeleted) else event.group_id
            try:
                if not name:
                    raise ValueError("the name must not be empty")
                encode(_Envelope(payload=event, timestamp=0))
            except (ValueError, LocalProtocolError) as exc:
                self._rejected += 1
                raise LocalProtocolError("invalid_field", f"item {index}: {exc}") from None
            checked.append(event)
        return checked

    def publish_nowait(self, event: Event) -> Published:
        """Publish one event now; return its offset. Never blocks."""
        (checked,) = self._check([event])
        return self._publish(checked)

    def publish_many_nowait(self, events: Sequence[Event]) -> list[Published]:
        """Publish every event of *events* in order, or none if one is invalid."""
        return [self._publish(e) for e in self._check(events)]

    def accept(self, payload: Payload) -> Published:
        """Publish a payload that should be an event (the change detector's hook);
        raise :class:`LocalProtocolError` if it is not one."""
        (checked,) = self._check([payload])
        return self._publish(checked)

    async def publish(self, event: Event) -> Published:
        """Publish one event, waiting for the bus if it needs to."""
        (checked,) = self._check([event])
        published = await self._bus.publish(channel_of(checked), checked)
        self._published += 1
        return published

    async def publish_many(self, events: Sequence[Event]) -> list[Published]:
        """Publish *events* in order; none if one is invalid. If the bus fails
        midway, the events before the failure stay published (their offsets
        were assigned) and ``BusUnavailableError`` says so."""
        out = []
        for event in self._check(events):
            out.append(await self._bus.publish(channel_of(event), event))
            self._published += 1
        return out

    def _publish(self, event: Event) -> Published:
        published = self._bus.publish_nowait(channel_of(event), event)
        self._published += 1
        return published

    def statistics(self) -> IngressStatistics:
        return IngressStatistics(published=self._published, rejected=self._rejected)
