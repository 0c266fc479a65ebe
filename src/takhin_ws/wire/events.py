"""The one check every change event passes before it gets an offset (sans-IO).

:func:`check_event` is called on every path an event takes: the codec when it
decodes an event (``POST /api/events``, a shared bus's entries), the ingress for
events published in process, the producer for events found by diffing snapshots.

- A topic name follows Kafka's rules: 1-249 characters of ``[A-Za-z0-9._-]``, and
  neither ``.`` nor ``..``.
- A group id is not empty and has at most :data:`MAX_GROUP_ID_LENGTH` characters
  (Kafka sets no limit; a bound keeps channel names and history entries small).
- Counts are within Kafka's 32-bit range: ``partitions`` at least 1 for
  ``topic_created``, ``members`` not negative.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

from .messages import (
    GROUP_STATES,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    TopicCreated,
    TopicDeleted,
)

__all__ = [
    "EVENT_CLASSES",
    "MAX_COUNT",
    "MAX_GROUP_ID_LENGTH",
    "MAX_TOPIC_NAME_LENGTH",
    "Event",
    "EventError",
    "check_event",
    "check_group_id",
    "check_topic_name",
]

Event: TypeAlias = TopicCreated | TopicDeleted | GroupCreated | GroupUpdated | GroupDeleted
EVENT_CLASSES: Final = (TopicCreated, TopicDeleted, GroupCreated, GroupUpdated, GroupDeleted)

#: Kafka's limit on a topic name.
MAX_TOPIC_NAME_LENGTH: Final = 249
#: Our limit on a consumer group id.
MAX_GROUP_ID_LENGTH: Final = 255
#: Kafka's partition and member counts are 32-bit signed integers.
MAX_COUNT: Final = 2**31 - 1
#: Longest excerpt of a bad value quoted in an error message.
_QUOTE_LENGTH: Final = 40

_TOPIC_CHARACTERS: Final = re.compile(r"[A-Za-z0-9._-]+")


class EventError(ValueError):
    """An event breaks a rule; *field* names the offending ``data`` key (wire name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    @property
    def path(self) -> str:
        """The field's path in the event's message: ``$.data.<field>``."""
        return f"$.data.{self.field}"


def check_topic_name(name: str) -> None:
    """Raise :class:`EventError` unless *name* is a valid Kafka topic name."""
    if type(name) is not str:
        raise EventError("name", f"a topic name must be a string, got {type(name).__name__}")
    if not name:
        raise EventError("name", "a topic name must not be empty")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise EventError(
            "name",
            f"a topic name has at most {MAX_TOPIC_NAME_LENGTH} characters, got {len(name)}",
        )
    if name in (".", ".."):
        raise EventError("name", f"a topic name cannot be {name!r}")
    if not _TOPIC_CHARACTERS.fullmatch(name):
        raise EventError(
            "name",
            "a topic name may only contain ASCII letters, digits, '.', '_' and '-', "
            f"got {_quote(name)}",
        )


def check_group_id(group_id: str) -> None:
    """Raise :class:`EventError` unless *group_id* is a usable consumer group id."""
    if type(group_id) is not str:
        raise EventError("groupId", f"a group id must be a string, got {type(group_id).__name__}")
    if not group_id:
        raise EventError("groupId", "a group id must not be empty")
    if len(group_id) > MAX_GROUP_ID_LENGTH:
        raise EventError(
            "groupId",
            f"a group id has at most {MAX_GROUP_ID_LENGTH} characters, got {len(group_id)}",
        )


def check_event(event: object) -> Event:
    """Return *event* if it is a valid change event, else raise :class:`EventError`
    (a rule broken) or :class:`TypeError` (not an event at all)."""
    match event:
        case TopicCreated():
            check_topic_name(event.name)
            _check_count("partitions", event.partitions, minimum=1)
        case TopicDeleted():
            check_topic_name(event.name)
        case GroupCreated() | GroupUpdated() | GroupDeleted():
            check_group_id(event.group_id)
            if event.state not in GROUP_STATES:
                raise EventError("state", "state must be one of " + ", ".join(GROUP_STATES))
            _check_count("members", event.members, minimum=0)
        case _:
            raise TypeError(f"{type(event).__name__} is not a change event")
    return event


def _check_count(field: str, value: int, *, minimum: int) -> None:
    if type(value) is not int:
        raise EventError(field, f"{field} must be an integer, got {type(value).__name__}")
    if value < minimum:
        bound = "not be negative" if minimum == 0 else f"be at least {minimum}"
        raise EventError(field, f"{field} must {bound}, got {value}")
    if value > MAX_COUNT:
        raise EventError(field, f"{field} must be at most {MAX_COUNT}, got {value}")


def _quote(value: str) -> str:
    if len(value) <= _QUOTE_LENGTH:
        return repr(value)
    return repr(value[:_QUOTE_LENGTH]) + "..."
