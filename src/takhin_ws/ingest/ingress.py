"""Event ingress: the one ordered path by which change events enter the bus.

Everything that announces a change goes through :class:`EventIngress`, and the
ingress's only output is its bus (``EventBus.publish``). It has three doors, and
each event is checked once, at the door it came in by:

- Trio console code in the same process (``publish_nowait`` / ``publish`` and their
  ``_many`` forms): :func:`~takhin_ws.wire.events.check_event`;
- the HTTP endpoint ``POST /api/events`` (``publish_body``): the codec, which
  checks every event it decodes (:func:`decode_events`);
- the change detector of the metrics producer (``detected_nowait`` / ``detected``):
  :func:`~takhin_ws.wire.events.check_event`.

Events get the next offset of their stream (``topics`` or ``groups``) in the order
the calls are made; a batch is checked whole before any of it is published.

The ingress remembers what it was told to announce, so the change detector does
not announce it a second time when the metrics source catches up (a console that
publishes ``topic_created`` and whose source then shows the topic: one event).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

import orjson
from attrs import frozen

from .._exceptions import LocalProtocolError, RemoteProtocolError
from ..core.hub import Hub
from ..wire.codec import check_depth, decode_value
from ..wire.events import EVENT_CLASSES, EVENT_TYPES, Event, EventError, Outcome, check_event
from ..wire.http import HttpError
from ..wire.messages import Payload
from .bus import BusUnavailableError, EventBus, MemoryBus, Published

__all__ = ["MAX_ANNOUNCED", "Event", "EventIngress", "IngressStatistics", "decode_events"]

#: How many announced topics and groups the ingress remembers for the change
#: detector (the oldest is forgotten first; it only ever costs a repeated event).
MAX_ANNOUNCED: Final = 10_000


@frozen
class IngressStatistics:
    #: Events published (each got an offset).
    published: int
    #: Calls refused because an event was invalid (a refused batch counts once).
    rejected: int
    #: Events of the change detector not published again: the ingress had announced them.
    suppressed: int


class EventIngress:
    """Publish change events through *bus* (by default the hub itself), in call order.

    ``await publish(...)`` works with every bus: it waits while a shared bus takes
    the event and raises :class:`~takhin_ws.BusUnavailableError` if it cannot.
    ``publish_nowait(...)`` works only with the in-memory bus (a server without
    ``redis_url``, or an ingress made from a :class:`~takhin_ws.Hub`): there the
    hub's publish never blocks, so the event has its offset and has been written to
    (or queued for) every subscribed client when it returns; a shared bus raises
    :class:`~takhin_ws.BusUnavailableError` from it and publishes nothing.

    An invalid event raises :class:`~takhin_ws.LocalProtocolError` (``code``
    ``invalid_field``, ``path`` such as ``$.data.name``, or ``$[1].data.name`` for
    the second event of a batch) and nothing of its call is published.
    """

    def __init__(self, hub_or_bus: Hub | EventBus) -> None:
        self._bus: EventBus = MemoryBus(hub_or_bus) if isinstance(hub_or_bus, Hub) else hub_or_bus
        self._published = 0
        self._rejected = 0
        self._suppressed = 0
        self._announced: OrderedDict[str, Outcome] = OrderedDict()  # by event key

    @property
    def bus(self) -> EventBus:
        """Where everything this ingress publishes goes (and the metrics producer's
        snapshots beside it): the in-memory bus of a hub, or a shared one."""
        return self._bus

    # --- publishing ---

    def publish_nowait(self, event: Event) -> Published:
        """Publish one event now; return its offset. Never blocks (in-memory bus only)."""
        (checked,) = self._check([event], batch=False)
        return self._publish_nowait(checked)

    def publish_many_nowait(self, events: Sequence[Event]) -> list[Published]:
        """Publish every event of *events* in order, or none if one is invalid."""
        return [self._publish_nowait(e) for e in self._check(events, batch=True)]

    async def publish(self, event: Event) -> Published:
        """Publish one event, waiting for the bus if it needs to."""
        (checked,) = self._check([event], batch=False)
        return await self._publish(checked)

    async def publish_many(self, events: Sequence[Event]) -> list[Published]:
        """Publish *events* in order; none if one is invalid. If the bus fails
        midway, the events before the failure stay published (their offsets
        were assigned): the ``BusUnavailableError`` lists them in ``published``."""
        return await self._publish_all(self._check(events, batch=True))

    async def publish_body(self, body: bytes, max_events: int | None = None) -> list[Published]:
        """Publish the events of a ``POST /api/events`` body, in order: one event
        object or a non-empty array of them, decoded strictly and checked by the
        codec (:func:`decode_events`), which is this door's one check. Raises
        :class:`~takhin_ws.wire.http.HttpError` (400) for a body that does not
        decode whole, or 413 for one of more than *max_events* events; then nothing
        is published. Each event's publish is a checkpoint (the bus's), so a big
        batch's fan-out shares the event loop with pings and ticks."""
        try:
            events = decode_events(body, max_events)
        except HttpError:
            self._rejected += 1
            raise
        return await self._publish_all(events)

    async def _publish_all(self, events: Sequence[Event]) -> list[Published]:
        """Publish *events* in order; a bus failure's ``published`` lists the events
        published before it."""
        published: list[Published] = []
        try:
            for event in events:
                published.append(await self._publish(event))
        except BusUnavailableError as exc:
            exc.published = tuple(published)
            raise
        return published

    # --- the change detector's door ---

    def detected_nowait(self, payload: Payload) -> Published | None:
        """Publish an event found by diffing snapshots, unless this ingress already
        announced it (then return ``None``); see :meth:`detected`."""
        (checked,) = self._check([payload], batch=False)
        event = self._reconcile(checked)
        return None if event is None else self._publish_nowait(event, remember=False)

    async def detected(self, payload: Payload) -> Published | None:
        """Publish an event found by diffing snapshots, unless this ingress already
        announced it: ``topic_created`` of a topic it announced (and did not delete
        since), a group update to the state and members it announced... A group
        it announced that the snapshots first see with another state is announced
        as ``group_updated``. Returns ``None`` for an event not published."""
        (checked,) = self._check([payload], batch=False)
        event = self._reconcile(checked)
        return None if event is None else await self._publish(event, remember=False)

    def statistics(self) -> IngressStatistics:
        return IngressStatistics(
            published=self._published, rejected=self._rejected, suppressed=self._suppressed
        )

    # --- internals ---

    def _check(self, events: Sequence[object], *, batch: bool) -> list[Event]:
        checked: list[Event] = []
        for index, event in enumerate(events):
            where, root = (f"item {index}: ", f"$[{index}]") if batch else ("", "$")
            try:
                checked.append(check_event(event))
            except EventError as exc:
                self._rejected += 1
                raise LocalProtocolError(
                    "invalid_field",
                    f"{where}data.{exc.field}: {exc.message}",
                    f"{root}.data.{exc.field}",
                ) from exc  # the rule broken, for those who report it without the path
            except TypeError:
                self._rejected += 1
                kinds = ", ".join(sorted(EVENT_TYPES))
                raise LocalProtocolError(
                    "invalid_field",
                    f"{where}{type(event).__name__} is not an event (one of {kinds})",
                    root,
                ) from None
        return checked

    def _publish_nowait(self, event: Event, *, remember: bool = True) -> Published:
        published = self._bus.publish_nowait(event.channel, event)
        self._published += 1
        if remember:
            self._remember(event)
        return published

    async def _publish(self, event: Event, *, remember: bool = True) -> Published:
        published = await self._bus.publish(event.channel, event)
        self._published += 1
        if remember:
            self._remember(event)
        return published

    def _remember(self, event: Event) -> None:
        if not event.SHAPE:
            return  # nothing the change detector could find again
        self._announced.pop(event.key, None)
        self._announced[event.key] = event.outcome
        if len(self._announced) > MAX_ANNOUNCED:
            self._announced.popitem(last=False)

    def _reconcile(self, event: Event) -> Event | None:
        """*event* as it should be announced given what was announced, or ``None``.

        Whatever the answer, the record is dropped: the snapshots have caught up
        with it, and from now on their difference is the news."""
        if not event.SHAPE:
            return event
        known = self._announced.pop(event.key, None)
        if known is None:
            return event
        if known == event.outcome:
            self._suppressed += 1
            return None
        exists = known[0]
        # A subject that exists for the clients already, in another state: a group
        # created becomes a group updated.
        return event.as_update() if exists else event


def decode_events(body: bytes, max_events: int | None = None) -> list[Event]:
    """The events of a ``POST /api/events`` body: one event object or a non-empty
    array of them, each decoded strictly and checked (by the codec: every event it
    decodes passes :func:`~takhin_ws.wire.events.check_event`). Raises :class:`HttpError`
    (400) naming the first bad field, e.g. ``invalid_field: data.name: ... (at
    $[1].data.name)``; nothing is published from a body that does not decode whole.
    """
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"invalid_json: {exc}") from None
    try:
        check_depth(parsed)
    except RemoteProtocolError as exc:
        raise HttpError(400, f"{exc.code}: {exc.message}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise HttpError(400, "invalid_field: the list of events is empty")
    if max_events is not None and len(items) > max_events:
        raise HttpError(
            413,
            f"a batch of {len(items)} events exceeds the limit of {max_events} "
            "(--max-batch-events): send it in smaller batches",
            details={"setting": "max_batch_events", "limit": max_events, "events": len(items)},
        )
    events: list[Event] = []
    for index, item in enumerate(items):
        try:
            payload = decode_value(item, accept=EVENT_TYPES).payload
        except RemoteProtocolError as exc:
            root = f"$[{index}]" if isinstance(parsed, list) else "$"
            path = (exc.path or "$").replace("$", root, 1)
            raise HttpError(400, f"{exc.code}: {exc.message} (at {path})") from None
        assert isinstance(payload, EVENT_CLASSES)  # accept=EVENT_TYPES: narrows, no check
        events.append(payload)
    return events
