"""Change events: their classes, what each is about, and the one check (sans-IO).

Every event class knows, without anyone testing its type:

- ``STREAM``, the offset stream that carries it (``topics``, ``groups``);
- ``key``, its subject (``topic:<name>``, ``group:<id>``), the same for every event
  about one topic or group;
- ``channel``, the narrowest channel that carries it: the key when it is a valid
  channel name, else the stream (a name with whitespace still reaches the stream's
  subscribers);
- ``outcome``, what it says its subject is once it happened (exists, state,
  members): two events about one subject with the same outcome announce the same;
- ``check()``, its rules (:func:`check_event` is called once per event, at the door
  it came in by: the codec for what it decodes, the ingress for what code hands it):

  - a topic name follows Kafka's rules: 1-249 characters of ``[A-Za-z0-9._-]``, and
    neither ``.`` nor ``..``;
  - a group id is not empty and has at most :data:`MAX_GROUP_ID_LENGTH` characters
    (Kafka sets no limit; a bound keeps channel names and history entries small);
  - counts are within Kafka's 32-bit range: ``partitions`` at least 1 for
    ``topic_created``, ``members`` not negative;
  - a ``group_status`` names statuses of :data:`~takhin_ws.wire.lag.LAG_STATUSES` and
    a reason of at most :data:`MAX_REASON_LENGTH` characters.

Adding an event type is one class here (listed in :data:`EVENT_CLASSES`).
"""

from __future__ import annotations

import re
from typing import ClassVar, Final, Literal, TypeAlias, cast, get_args

from attrs import frozen

from .channels import parse_channel
from .lag import LAG_STATUSES, LagStatus

__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "GROUP_STATES",
    "MAX_COUNT",
    "MAX_GROUP_ID_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_TOPIC_NAME_LENGTH",
    "ChangeEvent",
    "Event",
    "EventError",
    "GroupCreated",
    "GroupDeleted",
    "GroupEvent",
    "GroupState",
    "GroupStatus",
    "GroupUpdated",
    "Outcome",
    "TopicCreated",
    "TopicDeleted",
    "TopicEvent",
    "check_event",
    "check_group_id",
    "check_topic_name",
]

GroupState: TypeAlias = Literal[
    "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"
]
GROUP_STATES: Final[tuple[str, ...]] = get_args(GroupState)

#: What an event says its subject is afterwards: whether it exists, and a group's
#: state and members (``None`` and 0 where the event says nothing of them).
Outcome: TypeAlias = tuple[bool, GroupState | None, int]

#: Kafka's limit on a topic name.
MAX_TOPIC_NAME_LENGTH: Final = 249
#: Our limit on a consumer group id.
MAX_GROUP_ID_LENGTH: Final = 255
#: Our limit on the words of a ``group_status`` reason.
MAX_REASON_LENGTH: Final = 1000
#: Kafka's partition and member counts are 32-bit signed integers.
MAX_COUNT: Final = 2**31 - 1
#: Longest excerpt of a bad value quoted in an error message.
_QUOTE_LENGTH: Final = 40

_TOPIC_CHARACTERS: Final = re.compile(r"[A-Za-z0-9._-]+")


# --- the classes ---


@frozen(kw_only=True)
class ChangeEvent:
    """What every change event knows about itself (see the module's text)."""

    TYPE: ClassVar[str]
    STREAM: ClassVar[str]
    #: The kind of subject (``topic``, ``group``): the prefix of its key and channel.
    KIND: ClassVar[str]
    #: Whether the subject exists once the event happened (false for a deletion).
    EXISTS: ClassVar[bool] = True
    #: Whether the event says what the subject is (exists, state, members), as the
    #: change detector finds by diffing snapshots: the ingress remembers such events so
    #: the diff does not announce them twice. (A ``group_status`` says how a group is
    #: doing, which no diff finds: it is neither remembered nor suppressed.)
    SHAPE: ClassVar[bool] = True

    @property
    def subject(self) -> str:
        """The name of what the event is about (a topic name, a group id)."""
        raise NotImplementedError

    @property
    def key(self) -> str:
        """``<kind>:<subject>``: the same for every event about one topic or group."""
        return f"{self.KIND}:{self.subject}"

    @property
    def channel(self) -> str:
        """The narrowest channel the event is published on: its key, or its stream
        when the key is no valid channel name (nobody loses the event)."""
        try:
            return parse_channel(self.key)
        except ValueError:
            return self.STREAM

    @property
    def outcome(self) -> Outcome:
        return (self.EXISTS, None, 0)

    def as_update(self) -> Event:
        """This event for clients that already know its subject exists: a creation
        becomes the update the protocol has for it, where it has one."""
        return cast("Event", self)  # every concrete class is one

    def check(self) -> None:
        """Raise :class:`EventError` if the event breaks a rule."""
        raise NotImplementedError


@frozen(kw_only=True)
class TopicEvent(ChangeEvent):
    STREAM: ClassVar[str] = "topics"
    KIND: ClassVar[str] = "topic"
    name: str

    @property
    def subject(self) -> str:
        return self.name

    def check(self) -> None:
        check_topic_name(self.name)


@frozen(kw_only=True)
class TopicCreated(TopicEvent):
    TYPE: ClassVar[str] = "topic_created"
    partitions: int

    def check(self) -> None:
        super().check()
        _check_count("partitions", self.partitions, minimum=1)


@frozen(kw_only=True)
class TopicDeleted(TopicEvent):
    TYPE: ClassVar[str] = "topic_deleted"
    EXISTS: ClassVar[bool] = False


@frozen(kw_only=True)
class GroupEvent(ChangeEvent):
    STREAM: ClassVar[str] = "groups"
    KIND: ClassVar[str] = "group"
    group_id: str
    state: GroupState
    members: int

    @property
    def subject(self) -> str:
        return self.group_id

    @property
    def outcome(self) -> Outcome:
        return (True, self.state, self.members) if self.EXISTS else (False, None, 0)

    def check(self) -> None:
        check_group_id(self.group_id)
        if self.state not in GROUP_STATES:
            raise EventError("state", "state must be one of " + ", ".join(GROUP_STATES))
        _check_count("members", self.members, minimum=0)


@frozen(kw_only=True)
class GroupCreated(GroupEvent):
    TYPE: ClassVar[str] = "group_created"

    def as_update(self) -> Event:
        return GroupUpdated(group_id=self.group_id, state=self.state, members=self.members)


@frozen(kw_only=True)
class GroupUpdated(GroupEvent):
    TYPE: ClassVar[str] = "group_updated"


@frozen(kw_only=True)
class GroupDeleted(GroupEvent):
    TYPE: ClassVar[str] = "group_deleted"
    EXISTS: ClassVar[bool] = False


@frozen(kw_only=True)
class GroupStatus(ChangeEvent):
    """``group_status``: a consumer group's lag status changed (on ``groups`` and
    ``group:<groupId>``, with an offset like every event).

    ``previous`` is the status before (``UNKNOWN`` for a group's first known status);
    ``reason`` says in words which partition decided it and why. Published by the lag
    tracker (:mod:`takhin_ws.core.lag.tracker`).
    """

    TYPE: ClassVar[str] = "group_status"
    STREAM: ClassVar[str] = "groups"
    KIND: ClassVar[str] = "group"
    SHAPE: ClassVar[bool] = False
    group_id: str
    status: LagStatus
    previous: LagStatus
    reason: str = ""

    @property
    def subject(self) -> str:
        return self.group_id

    def check(self) -> None:
        check_group_id(self.group_id)
        for field, value in (("status", self.status), ("previous", self.previous)):
            if value not in LAG_STATUSES:
                raise EventError(field, f"{field} must be one of " + ", ".join(LAG_STATUSES))
        if type(self.reason) is not str or len(self.reason) > MAX_REASON_LENGTH:
            raise EventError(
                "reason", f"reason must be a string of at most {MAX_REASON_LENGTH} characters"
            )


Event: TypeAlias = (
    TopicCreated | TopicDeleted | GroupCreated | GroupUpdated | GroupDeleted | GroupStatus
)
EVENT_CLASSES: Final = (
    TopicCreated,
    TopicDeleted,
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
    GroupStatus,
)
#: What a publisher may send to ``POST /api/events`` or the ingress API.
EVENT_TYPES: Final = frozenset(cls.TYPE for cls in EVENT_CLASSES)


def check_event(event: object) -> Event:
    """Return *event* if it is a valid change event, else raise :class:`EventError`
    (a rule broken) or :class:`TypeError` (not an event at all)."""
    if not isinstance(event, EVENT_CLASSES):
        raise TypeError(f"{type(event).__name__} is not a change event")
    event.check()
    return event


# --- the rules ---


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
