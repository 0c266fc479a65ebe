"""The event check: Kafka's topic naming rules, group ids, counts (sans-IO)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies as S
from takhin_ws._exceptions import RemoteProtocolError
from takhin_ws.cluster.entries import STREAM_TYPES
from takhin_ws.wire.channels import parse_channel, stream_of
from takhin_ws.wire.codec import decode
from takhin_ws.wire.events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    MAX_COUNT,
    MAX_GROUP_ID_LENGTH,
    MAX_REASON_LENGTH,
    MAX_TOPIC_NAME_LENGTH,
    Event,
    EventError,
    check_event,
    check_group_id,
    check_topic_name,
)
from takhin_ws.wire.messages import (
    GroupCreated,
    GroupDeleted,
    GroupStatus,
    GroupUpdated,
    MonitoringMetrics,
    Ping,
    TopicCreated,
    TopicDeleted,
    channel_of,
)

FAST = settings(max_examples=200, deadline=None)


def test_limits_are_pinned() -> None:
    assert MAX_TOPIC_NAME_LENGTH == 249  # Kafka's
    assert MAX_GROUP_ID_LENGTH == 255
    assert MAX_COUNT == 2**31 - 1  # Kafka's int32
    assert MAX_REASON_LENGTH == 1000


@FAST
@given(S.topic_names)
def test_every_valid_topic_name_passes(name: str) -> None:
    check_topic_name(name)
    created = TopicCreated(name=name, partitions=1)
    assert check_event(created) is created
    check_event(TopicDeleted(name=name))


@pytest.mark.parametrize(
    "name",
    ["a", "A-Z_0.9", "__consumer_offsets", "...", ".a", "a..b", "-", "x" * 249],
)
def test_valid_topic_names(name: str) -> None:
    check_topic_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "a topic name must not be empty"),
        (".", "a topic name cannot be '.'"),
        ("..", "a topic name cannot be '..'"),
        ("x" * 250, "a topic name has at most 249 characters, got 250"),
        (
            "a b",
            "a topic name may only contain ASCII letters, digits, '.', '_' and '-', got 'a b'",
        ),
        ("a\tb", "got 'a\\tb'"),
        ("a:b", "got 'a:b'"),
        ("a/b", "got 'a/b'"),
        ("orders\n", "got 'orders\\n'"),
        ("é", "got 'é'"),
        ("topic:x", "got 'topic:x'"),
        ("y" * 60 + " ", "got '" + "y" * 40 + "'..."),  # long values are cut
    ],
)
def test_invalid_topic_names(name: str, message: str) -> None:
    with pytest.raises(EventError) as info:
        check_topic_name(name)
    assert info.value.field == "name"
    assert info.value.path == "$.data.name"
    assert message in info.value.message
    with pytest.raises(EventError):
        check_event(TopicDeleted(name=name))


@FAST
@given(S.group_ids)
def test_every_group_id_up_to_the_limit_passes(group_id: str) -> None:
    check_group_id(group_id)


@pytest.mark.parametrize(
    ("group_id", "message"),
    [
        ("", "a group id must not be empty"),
        ("g" * 256, "a group id has at most 255 characters, got 256"),
        (5, "a group id must be a string, got int"),
    ],
)
def test_invalid_group_ids(group_id: Any, message: str) -> None:
    with pytest.raises(EventError) as info:
        check_event(GroupUpdated(group_id=group_id, state="Stable", members=1))
    assert (info.value.field, info.value.message) == ("groupId", message)
    assert info.value.path == "$.data.groupId"


@pytest.mark.parametrize(
    ("event", "field", "message"),
    [
        (
            TopicCreated(name="t", partitions=0),
            "partitions",
            "partitions must be at least 1, got 0",
        ),
        (
            TopicCreated(name="t", partitions=-3),
            "partitions",
            "partitions must be at least 1, got -3",
        ),
        (
            TopicCreated(name="t", partitions=2**31),
            "partitions",
            "partitions must be at most 2147483647, got 2147483648",
        ),
        (
            TopicCreated(name="t", partitions=True),
            "partitions",
            "partitions must be an integer, got bool",
        ),
        (
            GroupCreated(group_id="g", state="Empty", members=-1),
            "members",
            "members must not be negative, got -1",
        ),
        (
            GroupDeleted(group_id="g", state="Dead", members=2**31),
            "members",
            "members must be at most 2147483647, got 2147483648",
        ),
        (
            GroupUpdated(group_id="g", state="Busy", members=1),  # type: ignore[arg-type]
            "state",
            "state must be one of Empty, PreparingRebalance, CompletingRebalance, Stable, Dead",
        ),
        (TopicDeleted(name=7), "name", "a topic name must be a string, got int"),  # type: ignore[arg-type]
        (
            GroupStatus(group_id="g", status="BUSY", previous="OK"),  # type: ignore[arg-type]
            "status",
            "status must be one of OK, LAGGING, STALLED, STOPPED, REWOUND, UNKNOWN",
        ),
        (
            GroupStatus(group_id="g", status="OK", previous="ok"),  # type: ignore[arg-type]
            "previous",
            "previous must be one of OK, LAGGING, STALLED, STOPPED, REWOUND, UNKNOWN",
        ),
        (
            GroupStatus(group_id="g", status="OK", previous="OK", reason="x" * 1001),
            "reason",
            "reason must be a string of at most 1000 characters",
        ),
        (
            GroupStatus(group_id="", status="OK", previous="OK"),
            "groupId",
            "a group id must not be empty",
        ),
    ],
)
def test_invalid_fields(event: object, field: str, message: str) -> None:
    with pytest.raises(EventError) as info:
        check_event(event)
    assert (info.value.field, info.value.message) == (field, message)


@pytest.mark.parametrize(
    "event",
    [
        TopicCreated(name="t", partitions=1),
        TopicCreated(name="t", partitions=MAX_COUNT),
        GroupCreated(group_id="g", state="Empty", members=0),
        GroupUpdated(group_id="billing team", state="Stable", members=MAX_COUNT),
        GroupDeleted(group_id="g", state="Dead", members=0),
        GroupStatus(group_id="g", status="REWOUND", previous="UNKNOWN", reason="x" * 1000),
    ],
)
def test_boundaries_pass(event: object) -> None:
    assert check_event(event) is event


@FAST
@given(S.topic_events | S.group_events)
def test_generated_events_pass(event: object) -> None:
    assert check_event(event) is event


@pytest.mark.parametrize("value", [Ping(), "topic_created", None, {"name": "t"}])
def test_not_an_event(value: object) -> None:
    with pytest.raises(TypeError, match="is not a change event"):
        check_event(value)


# --- the codec applies the same check to every event it decodes ---


@pytest.mark.parametrize(
    ("data", "text", "path"),
    [
        (
            {"name": "", "partitions": 1},
            "data.name: a topic name must not be empty",
            "$.data.name",
        ),
        (
            {"name": "t", "partitions": 0},
            "data.partitions: partitions must be at least 1, got 0",
            "$.data.partitions",
        ),
    ],
)
def test_decode_checks_events(data: dict[str, object], text: str, path: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps({"type": "topic_created", "data": data}))
    assert (info.value.code, info.value.message, info.value.path) == ("invalid_field", text, path)


def test_limits_are_inclusive() -> None:
    check_group_id("g" * MAX_GROUP_ID_LENGTH)
    check_topic_name("t" * MAX_TOPIC_NAME_LENGTH)


def test_a_bad_value_of_the_quote_length_is_quoted_whole() -> None:
    # values up to 40 characters are quoted as they are; longer ones are cut
    name = "y" * 39 + " "
    with pytest.raises(EventError) as info:
        check_topic_name(name)
    assert info.value.message.endswith(f"got {name!r}")


def test_an_event_error_reads_as_its_message() -> None:
    with pytest.raises(EventError) as info:
        check_topic_name("")
    assert str(info.value) == info.value.message == "a topic name must not be empty"


def test_not_an_event_names_what_it_got() -> None:
    with pytest.raises(TypeError, match=r"^Ping is not a change event$"):
        check_event(Ping())


# --- what every event knows about itself: stream, key, channel, outcome ---

_ANY_NAMES = st.text(max_size=260)
#: Events with any names at all, valid channel names or not.
_ANY_EVENTS = st.one_of(
    st.builds(TopicCreated, name=_ANY_NAMES, partitions=st.integers()),
    st.builds(TopicDeleted, name=_ANY_NAMES),
    *(
        st.builds(cls, group_id=_ANY_NAMES, state=S.group_states, members=st.integers())
        for cls in (GroupCreated, GroupUpdated, GroupDeleted)
    ),
)


def _is_channel(name: str) -> bool:
    try:
        parse_channel(name)
    except ValueError:
        return False
    return True


@FAST
@given(_ANY_EVENTS)
def test_an_event_goes_on_its_key_or_else_its_stream(event: Event) -> None:
    assert event.key == f"{event.KIND}:{event.subject}"
    assert event.channel == (event.key if _is_channel(event.key) else event.STREAM)
    assert stream_of(event.channel) == event.STREAM
    assert channel_of(event) == event.channel


@FAST
@given(S.topic_events)
def test_a_valid_topic_event_has_a_channel_of_its_own(event: Event) -> None:
    # (a valid group id may hold whitespace or 255 characters: no channel carries it)
    assert event.channel == event.key


def test_keys_channels_and_outcomes() -> None:
    created = TopicCreated(name="orders", partitions=3)
    assert (created.STREAM, created.key, created.channel) == (
        "topics",
        "topic:orders",
        "topic:orders",
    )
    assert created.outcome == TopicCreated(name="orders", partitions=9).outcome == (True, None, 0)
    assert TopicDeleted(name="orders").outcome == (False, None, 0)
    assert TopicDeleted(name="orders").key == created.key  # one subject
    group = GroupUpdated(group_id="billing", state="Stable", members=2)
    assert (group.STREAM, group.key, group.channel) == ("groups", "group:billing", "group:billing")
    assert group.outcome == (True, "Stable", 2)
    assert GroupDeleted(group_id="billing", state="Stable", members=5).outcome == (False, None, 0)
    assert channel_of(MonitoringMetrics()) == "metrics"
    status = GroupStatus(group_id="billing", status="STALLED", previous="OK")
    assert (status.STREAM, status.key, status.channel) == (
        "groups",
        "group:billing",
        "group:billing",
    )
    assert (group.SHAPE, status.SHAPE) == (True, False)  # a status says nothing of the shape


def test_a_creation_is_an_update_for_those_who_know_the_subject() -> None:
    created = GroupCreated(group_id="g", state="Stable", members=1)
    assert created.as_update() == GroupUpdated(group_id="g", state="Stable", members=1)
    for event in (
        TopicCreated(name="t", partitions=1),
        TopicDeleted(name="t"),
        GroupUpdated(group_id="g", state="Empty", members=0),
        GroupDeleted(group_id="g", state="Dead", members=0),
    ):
        assert event.as_update() is event


def test_every_event_class_is_a_wire_type_of_its_stream() -> None:
    assert {cls.TYPE for cls in EVENT_CLASSES} == EVENT_TYPES
    assert {cls.TYPE: cls.STREAM for cls in EVENT_CLASSES} == {
        "topic_created": "topics",
        "topic_deleted": "topics",
        "group_created": "groups",
        "group_updated": "groups",
        "group_deleted": "groups",
        "group_status": "groups",
    }
    assert {
        "metrics": frozenset({"metrics"}),
        "topics": frozenset({"topic_created", "topic_deleted"}),
        "groups": frozenset({"group_created", "group_updated", "group_deleted", "group_status"}),
    } == STREAM_TYPES
