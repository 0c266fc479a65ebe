"""The codec: strict decoding, error codes and paths, size limit, fuzzing."""

from __future__ import annotations

import re
from typing import Any

import cattrs
import orjson
import pytest
from cattrs.errors import AttributeValidationNote, IterableValidationNote
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import strategies as S
from takhin_ws._exceptions import LocalProtocolError, ProtocolError, RemoteProtocolError
from takhin_ws.wire.codec import (
    MAX_JSON_DEPTH,
    check_depth,
    decode,
    encode,
    explain,
    payload_to_data,
)
from takhin_ws.wire.converter import describe
from takhin_ws.wire.messages import (
    ALL_TYPES,
    CLIENT_TYPES,
    EVENT_TYPES,
    GROUP_STATES,
    ClusterHealth,
    Envelope,
    GroupUpdated,
    History,
    MonitoringMetrics,
    Payload,
    Ping,
    Subscribe,
    TopicCreated,
    TopicDeleted,
    TopicLag,
    TopicStats,
    Unsubscribe,
)

CODES = {"invalid_json", "unknown_type", "invalid_field", "too_large"}
FAST = settings(max_examples=150, deadline=None)


def test_encode_refuses_what_json_cannot_carry() -> None:
    env = Envelope(payload=TopicCreated(name="t", partitions=2**70), timestamp=1)
    with pytest.raises(LocalProtocolError) as info:
        encode(env)
    assert info.value.code == "invalid_field"


# --- strictness ---

_TOPIC_STATS = {
    "name": "orders",
    "partitions": 3,
    "totalMessages": 1,
    "totalBytes": 2,
    "produceRate": 1.5,
    "fetchRate": 0.5,
}
_PARTITION_LAG = {"partition": 0, "currentOffset": 1, "logEndOffset": 2, "lag": 1}


def _metrics_message(**data: Any) -> dict[str, Any]:
    return {"type": "metrics", "data": data, "timestamp": 1}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


_LAGS = [
    {
        "groupId": "g",
        "totalLag": 1,
        "topicLags": [
            {"topic": "orders", "totalLag": 1, "partitionLags": [_with(_PARTITION_LAG, lag="1")]}
        ],
    }
]


@pytest.mark.parametrize(
    ("message", "path"),
    [
        pytest.param(
            _metrics_message(topicStats=[_with(_TOPIC_STATS, partitions="5")]),
            "$.data.topicStats[0].partitions",
            id="str-is-not-int",
        ),
        pytest.param(
            _metrics_message(topicStats=[_TOPIC_STATS, _with(_TOPIC_STATS, totalBytes=True)]),
            "$.data.topicStats[1].totalBytes",
            id="bool-is-not-int",
        ),
        pytest.param(
            _metrics_message(topicStats=[_with(_TOPIC_STATS, partitions=3.0)]),
            "$.data.topicStats[0].partitions",
            id="float-is-not-int",
        ),
        pytest.param(
            _metrics_message(throughput={"produceRate": "1.5"}),
            "$.data.throughput.produceRate",
            id="str-is-not-float",
        ),
        pytest.param(
            _metrics_message(latency={"fetchP99": False}),
            "$.data.latency.fetchP99",
            id="bool-is-not-float",
        ),
        pytest.param(_metrics_message(topicStats="abc"), "$.data.topicStats", id="str-not-list"),
        pytest.param(
            _metrics_message(topicStats={"name": "x"}), "$.data.topicStats", id="dict-not-list"
        ),
        pytest.param(
            _metrics_message(clusterHealth={"activeConnections": True}),
            "$.data.clusterHealth.activeConnections",
            id="bool-not-int-nested",
        ),
        pytest.param(
            _metrics_message(clusterHealth={"goroutineCount": None}),
            "$.data.clusterHealth.goroutineCount",
            id="null-not-int",
        ),
        pytest.param(
            _metrics_message(consumerLags=_LAGS),
            "$.data.consumerLags[0].topicLags[0].partitionLags[0].lag",
            id="deep-path",
        ),
        pytest.param(
            _metrics_message(topicStats=[{"name": "orders"}]),
            "$.data.topicStats[0].partitions",
            id="missing-nested-field",
        ),
        pytest.param(
            _metrics_message(topicStats=[_with(_TOPIC_STATS, extra=1)]),
            "$.data.topicStats[0]",
            id="unknown-key-nested",
        ),
        pytest.param(_metrics_message(bogus=1), "$.data", id="unknown-key-data"),
        pytest.param({"type": "ping", "timestamp": 1, "bogus": 1}, "$", id="unknown-key-envelope"),
        pytest.param({"type": "ping", "timestamp": "1"}, "$.timestamp", id="str-timestamp"),
        pytest.param({"type": "ping", "timestamp": True}, "$.timestamp", id="bool-timestamp"),
        pytest.param({"type": "ping", "timestamp": 1e300}, "$.timestamp", id="huge-timestamp"),
        pytest.param({"type": "ping", "timestamp": 1, "stale": 1}, "$.stale", id="int-not-bool"),
        pytest.param({"type": "ping", "data": {}, "timestamp": 1}, "$.data", id="ping-with-data"),
        pytest.param({"type": "topic_created", "timestamp": 1}, "$.data", id="missing-data"),
        pytest.param(
            {"type": "topic_created", "data": [], "timestamp": 1}, "$.data", id="list-not-object"
        ),
        pytest.param(
            {"type": "topic_created", "data": {"name": "t", "partitions": "3"}},
            "$.data.partitions",
            id="event-str-not-int",
        ),
        pytest.param(
            {"type": "group_updated", "data": {"groupId": "g", "state": "Busy", "members": 1}},
            "$.data.state",
            id="unknown-group-state",
        ),
        pytest.param(
            {"type": "group_created", "data": {"groupId": 5, "state": "Stable", "members": 1}},
            "$.data.groupId",
            id="int-not-str",
        ),
        pytest.param(
            {"type": "subscribe", "data": ["metrics", 5]}, "$.data[1]", id="channel-not-str"
        ),
        pytest.param({"type": "subscribe", "data": 5}, "$.data", id="subscribe-number"),
        pytest.param({"type": "subscribe", "data": None}, "$.data", id="subscribe-null"),
        pytest.param(
            {"type": "subscribe", "data": {"channels": ["metrics"], "x": 1}},
            "$.data",
            id="subscribe-unknown-key",
        ),
        pytest.param(
            {"type": "subscribe", "data": {"channels": ["topics"], "since": {"topics": "5"}}},
            "$.data.since",
            id="since-str-offset",
        ),
        pytest.param(
            {"type": "subscribe", "data": {"channels": "topics"}},
            "$.data.channels",
            id="object-channels-str",
        ),
        pytest.param(
            {"type": "unsubscribe", "data": {"channels": ["topics"]}},
            "$.data",
            id="unsubscribe-object",
        ),
        pytest.param(
            {
                "type": "welcome",
                "data": {
                    "protocol": 1,
                    "clientId": "c1",
                    "epoch": "e",
                    "channels": [],
                    "heartbeat": {"interval": 1, "timeout": 2},
                    "limits": {"queueSize": 1, "maxMessageSize": "big"},
                },
            },
            "$.data.limits.maxMessageSize",
            id="camel-path-welcome",
        ),
        pytest.param(
            {"type": "gap", "data": {"channel": "topics", "firstOffset": 1, "lastOffset": 2}},
            "$.data.count",
            id="gap-missing-count",
        ),
    ],
)
def test_strict_decoding(message: dict[str, Any], path: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps(message))
    assert info.value.code == "invalid_field"
    assert info.value.path == path
    assert isinstance(info.value, ProtocolError)
    assert info.value.message  # a human-readable explanation for the error reply


def test_error_message_names_wire_field() -> None:
    bad = _metrics_message(topicStats=[_with(_TOPIC_STATS, totalMessages="many")])
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps(bad))
    assert "topicStats[0].totalMessages" in info.value.message
    assert "total_messages" not in info.value.message


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1700000000, 1700000000),
        (1700000000.987, 1700000000),
        (0.5, 0),
        (-1.5, -1),
        (2.0**62, 2**62),
    ],
)
def test_timestamp_is_an_int_or_a_float(timestamp: float, expected: int) -> None:
    # The 2.9 docs' heartbeat sends ``Date.now() / 1000``: a float of seconds.
    env = decode(orjson.dumps({"type": "ping", "timestamp": timestamp}), accept=CLIENT_TYPES)
    assert env.timestamp == expected
    assert type(env.timestamp) is int


# --- the error text a client sees (code, message, path), word for word ---

_WELCOME = {
    "protocol": 1,
    "clientId": "c1",
    "epoch": "e",
    "channels": [],
    "heartbeat": {"interval": 1, "timeout": 2},
    "limits": {"queueSize": 1, "maxMessageSize": 2},
}


@pytest.mark.parametrize(
    ("message", "text", "path"),
    [
        pytest.param(
            _metrics_message(topicStats=[_TOPIC_STATS, _with(_TOPIC_STATS, partitions="5")]),
            "data.topicStats[1].partitions: expected an integer, got a string",
            "$.data.topicStats[1].partitions",
            id="int-got-string",
        ),
        pytest.param(
            _metrics_message(clusterHealth={"totalTopics": 1.5}),
            "data.clusterHealth.totalTopics: expected an integer, got a number",
            "$.data.clusterHealth.totalTopics",
            id="int-got-number",
        ),
        pytest.param(
            _metrics_message(clusterHealth={"totalTopics": False}),
            "data.clusterHealth.totalTopics: expected an integer, got a boolean",
            "$.data.clusterHealth.totalTopics",
            id="int-got-boolean",
        ),
        pytest.param(
            _metrics_message(throughput={"fetchRate": None}),
            "data.throughput.fetchRate: expected a number, got null",
            "$.data.throughput.fetchRate",
            id="number-got-null",
        ),
        pytest.param(
            _metrics_message(latency={"produceP50": [1]}),
            "data.latency.produceP50: expected a number, got an array",
            "$.data.latency.produceP50",
            id="number-got-array",
        ),
        pytest.param(
            {"type": "topic_deleted", "data": {"name": {"a": 1}}},
            "data.name: expected a string, got an object",
            "$.data.name",
            id="string-got-object",
        ),
        pytest.param(
            {"type": "ping", "stale": "yes"},
            "stale: expected true or false, got a string",
            "$.stale",
            id="bool-got-string",
        ),
        pytest.param(
            {"type": "ping", "timestamp": "now"},
            "timestamp: expected a number, got a string",
            "$.timestamp",
            id="timestamp-got-string",
        ),
        pytest.param(
            {"type": "ping", "timestamp": 1e300},
            "timestamp: expected a number of seconds, got one out of range",
            "$.timestamp",
            id="timestamp-out-of-range",
        ),
        pytest.param(
            _metrics_message(consumerLags={"groupId": "g"}),
            "data.consumerLags: expected an array, got an object",
            "$.data.consumerLags",
            id="array-got-object",
        ),
        pytest.param(
            _metrics_message(topicStats=[7]),
            "data.topicStats[0]: expected an object, got a number",
            "$.data.topicStats[0]",
            id="object-got-number",
        ),
        pytest.param(
            _metrics_message(consumerLags=_LAGS),
            "data.consumerLags[0].topicLags[0].partitionLags[0].lag: "
            "expected an integer, got a string",
            "$.data.consumerLags[0].topicLags[0].partitionLags[0].lag",
            id="deep-path",
        ),
        pytest.param(
            {"type": "gap", "data": {"channel": "topics", "firstOffset": 1, "lastOffset": 2}},
            "data.count: required field missing",
            "$.data.count",
            id="missing-field",
        ),
        pytest.param(
            {"type": "welcome", "data": {**_WELCOME, "heartbeat": {"interval": 1}}},
            "data.heartbeat.timeout: required field missing",
            "$.data.heartbeat.timeout",
            id="missing-nested-field",
        ),
        pytest.param(
            {"type": "topic_created", "data": {"name": "t", "partitions": 1, "b": 1, "a": 2}},
            "$.data: unknown field(s) 'a', 'b'",
            "$.data",
            id="unknown-fields-sorted",
        ),
        pytest.param(
            _metrics_message(topicStats=[_with(_TOPIC_STATS, total_bytes=1)]),
            "$.data.topicStats[0]: unknown field(s) 'total_bytes'",
            "$.data.topicStats[0]",
            id="unknown-field-as-sent",
        ),
        pytest.param(
            {"type": "pong", "timestamp": 1, "extra": True},
            "$: unknown field(s) 'extra'",
            "$",
            id="unknown-envelope-field",
        ),
        pytest.param(
            {"type": "group_created", "data": {"groupId": "g", "state": "Busy", "members": 1}},
            "data.state: expected one of Empty, PreparingRebalance, CompletingRebalance, "
            "Stable, Dead",
            "$.data.state",
            id="group-state",
        ),
        pytest.param(
            {"type": "group_created", "data": {"groupId": "g", "state": 1, "members": 1}},
            "data.state: expected one of Empty, PreparingRebalance, CompletingRebalance, "
            "Stable, Dead",
            "$.data.state",
            id="group-state-not-a-string",
        ),
        pytest.param(
            {"type": "ping", "data": 1},
            "a ping message carries no data",
            "$.data",
            id="ping-with-data",
        ),
        pytest.param(
            {"type": "topic_deleted"},
            "required field 'data' is missing",
            "$.data",
            id="missing-data",
        ),
        pytest.param(
            {"type": "topic_deleted", "data": "orders"},
            "expected an object, got a string",
            "$.data",
            id="data-not-an-object",
        ),
        pytest.param(
            {"type": "subscribe", "data": True},
            "expected a channel, an array of channels or an object, got a boolean",
            "$.data",
            id="subscribe-boolean",
        ),
        pytest.param(
            {"type": "unsubscribe", "data": None},
            "expected a channel or an array of channels, got null",
            "$.data",
            id="unsubscribe-null",
        ),
        pytest.param(
            {"type": "subscribe", "data": ["metrics", "topics", 3]},
            "data[2]: expected a string, got a number",
            "$.data[2]",
            id="channel-index",
        ),
        pytest.param(
            {"type": "subscribe", "data": {"channels": ["topics"], "since": []}},
            "data.since: expected an object, got an array",
            "$.data.since",
            id="since-not-an-object",
        ),
        pytest.param(
            {"type": "subscribe", "data": "bogus"},
            "unknown channel 'bogus' (expected metrics, topics, groups, topic:<name>, "
            "group:<id>, metrics:lean, metrics:topic:<name> or metrics:group:<id>)",
            "$.data",
            id="unknown-channel",
        ),
    ],
)
def test_error_text(message: dict[str, Any], text: str, path: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps(message))
    assert (info.value.code, info.value.message, info.value.path) == ("invalid_field", text, path)


@pytest.mark.parametrize(
    ("raw", "code", "text", "path"),
    [
        pytest.param(b"[1]", "invalid_field", "a message must be a JSON object, got an array", "$"),
        pytest.param(
            b"true", "invalid_field", "a message must be a JSON object, got a boolean", "$"
        ),
        pytest.param(b"1.5", "invalid_field", "a message must be a JSON object, got a number", "$"),
        pytest.param(
            b'{"data":1}',
            "unknown_type",
            "'type' must be a string naming the message type",
            "$.type",
        ),
        pytest.param(
            b'{"type":null}',
            "invalid_field",
            "'type' must be a string naming the message type",
            "$.type",
        ),
        pytest.param(
            b'{"type":"metrics"}',
            "unknown_type",
            "unknown message type 'metrics' "
            "(accepted: history, ping, refresh, subscribe, unsubscribe)",
            "$.type",
        ),
        pytest.param(
            b"{",
            "invalid_json",
            "not valid JSON: unexpected end of data: line 1 column 2 (char 1)",
            None,
        ),
    ],
)
def test_envelope_error_text(raw: bytes, code: str, text: str, path: str | None) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(raw, accept=CLIENT_TYPES)
    assert (info.value.code, info.value.message, info.value.path) == (code, text, path)


def test_too_large_text() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(b'{"type":"ping"}', max_size=4)
    assert info.value.message == "message of 15 bytes exceeds the limit of 4 bytes"
    assert info.value.path is None


def test_first_defect_is_reported() -> None:
    # Several defects: the first field in declaration order wins, deterministically.
    bad = {"type": "topic_created", "data": {"name": 1, "partitions": "x", "zzz": 0}}
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps(bad))
    assert info.value.path == "$.data.name"


def _noted(exc: Exception, note: str) -> Exception:
    exc.__notes__ = [note]
    return exc


def test_explain_walks_cattrs_notes_not_text() -> None:
    # The path comes from the notes (attribute names in wire form, indices), the text
    # from the leaf; cattrs' own wording of the groups plays no part.
    leaf = _noted(
        TypeError("expected an integer, got a string"), IterableValidationNote("?", 2, int)
    )
    inner = cattrs.IterableValidationError("?", [leaf], tuple[int, ...])
    outer = cattrs.ClassValidationError(
        "?", [_noted(inner, AttributeValidationNote("?", "partition_lags", list))], TopicLag
    )
    assert explain(outer, "$.data") == (
        "data.partitionLags[2]: expected an integer, got a string",
        "$.data.partitionLags[2]",
    )


def test_explain_of_an_unexpected_leaf() -> None:
    odd = _noted(RuntimeError("boom"), AttributeValidationNote("?", "total_lag", int))
    group = cattrs.ClassValidationError("?", [odd], TopicLag)
    assert explain(group) == ("totalLag: invalid value, expected int", "$.totalLag")
    bare = cattrs.ClassValidationError("?", [RuntimeError("boom")], TopicLag)
    assert explain(bare, "$.data") == ("data: boom", "$.data")


def test_ints_are_accepted_for_float_fields() -> None:
    # Go's encoding/json writes a float64 0 as ``0``.
    env = decode(orjson.dumps(_metrics_message(throughput={"produceRate": 0})))
    assert isinstance(env.payload, MonitoringMetrics)
    assert env.payload.throughput.produce_rate == 0.0
    assert type(env.payload.throughput.produce_rate) is float


def test_partial_metrics_fill_defaults() -> None:
    env = decode(orjson.dumps(_metrics_message(clusterHealth={"totalTopics": 3})))
    assert env.payload == MonitoringMetrics(cluster_health=ClusterHealth(total_topics=3))


def test_nested_structures_decode_to_attrs_objects() -> None:
    env = decode(orjson.dumps(_metrics_message(topicStats=[_TOPIC_STATS])))
    assert isinstance(env.payload, MonitoringMetrics)
    assert env.payload.topic_stats == (
        TopicStats(
            name="orders",
            partitions=3,
            total_messages=1,
            total_bytes=2,
            produce_rate=1.5,
            fetch_rate=0.5,
        ),
    )


@pytest.mark.parametrize("state", GROUP_STATES)
def test_every_group_state_is_accepted(state: str) -> None:
    raw = orjson.dumps(
        {"type": "group_updated", "data": {"groupId": "g", "state": state, "members": 0}}
    )
    assert decode(raw).payload == GroupUpdated(group_id="g", state=state, members=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "code", "path"),
    [
        pytest.param(b"", "invalid_json", None, id="empty"),
        pytest.param(b"{", "invalid_json", None, id="truncated"),
        pytest.param(b"{'type': 'ping'}", "invalid_json", None, id="single-quotes"),
        pytest.param(b'{"type":"ping"} x', "invalid_json", None, id="trailing-garbage"),
        pytest.param(b"\xff\xfe", "invalid_json", None, id="not-utf8"),
        pytest.param(b"NaN", "invalid_json", None, id="nan"),
        pytest.param(b"[]", "invalid_field", "$", id="array"),
        pytest.param(b'"ping"', "invalid_field", "$", id="string"),
        pytest.param(b"null", "invalid_field", "$", id="null"),
        pytest.param(b"{}", "unknown_type", "$.type", id="no-type"),
        pytest.param(b'{"type":1}', "invalid_field", "$.type", id="int-type"),
        pytest.param(b'{"type":"nope"}', "unknown_type", "$.type", id="unknown-type"),
        pytest.param(b'{"type":"PING"}', "unknown_type", "$.type", id="case-matters"),
    ],
)
def test_envelope_level_errors(raw: bytes, code: str, path: str | None) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(raw)
    assert info.value.code == code
    assert info.value.path == path


#: Every type a client must never send (written out, not derived from CLIENT_TYPES).
SERVER_ONLY = (
    "metrics",
    "group_detail",
    "topic_detail",
    "epoch",
    "topic_created",
    "topic_deleted",
    "group_created",
    "group_updated",
    "group_deleted",
    "group_status",
    "pong",
    "welcome",
    "subscribed",
    "refreshed",
    "token_expiring",
    "gap",
    "error",
)


def test_type_sets_are_pinned() -> None:
    assert frozenset({"ping", "subscribe", "unsubscribe", "history", "refresh"}) == CLIENT_TYPES
    assert CLIENT_TYPES | set(SERVER_ONLY) == ALL_TYPES
    assert {
        "topic_created",
        "topic_deleted",
        "group_created",
        "group_updated",
        "group_deleted",
        "group_status",
    } == EVENT_TYPES


@pytest.mark.parametrize("kind", SERVER_ONLY)
def test_client_types_reject_server_only_types(kind: str) -> None:
    raw = encode(Envelope(payload=S.SAMPLES[kind], timestamp=1))
    assert decode(raw).type == kind
    with pytest.raises(RemoteProtocolError) as info:
        decode(raw, accept=CLIENT_TYPES)
    assert info.value.code == "unknown_type"
    assert info.value.path == "$.type"


@pytest.mark.parametrize(
    "payload",
    [Ping(), Subscribe(channels=("metrics",)), Unsubscribe(channels=("topic:orders",))],
)
def test_client_types_accept_client_messages(payload: Payload) -> None:
    env = Envelope(payload=payload, timestamp=3)
    assert decode(encode(env), accept=CLIENT_TYPES) == env


def test_max_size() -> None:
    raw = b'{"type":"ping","timestamp":1}'
    assert decode(raw, max_size=len(raw)).type == "ping"
    with pytest.raises(RemoteProtocolError) as info:
        decode(raw, max_size=len(raw) - 1)
    assert info.value.code == "too_large"
    # oversize is refused before parsing: even invalid JSON reports too_large
    with pytest.raises(RemoteProtocolError) as info:
        decode(b"x" * 100, max_size=10)
    assert info.value.code == "too_large"


def test_max_size_counts_utf8_bytes_of_text() -> None:
    data = {"groupId": "é" * 100, "state": "Dead", "members": 0}
    message = orjson.dumps({"type": "group_deleted", "data": data}).decode()
    size = len(message.encode())
    assert len(message) < size
    assert decode(message, max_size=size).type == "group_deleted"
    with pytest.raises(RemoteProtocolError) as info:
        decode(message, max_size=size - 1)
    assert info.value.code == "too_large"


def nested(depth: int) -> str:
    """A JSON array *depth* levels deep."""
    return "[" * depth + "]" * depth


def test_nesting_beyond_the_depth_limit_is_too_large() -> None:
    """orjson parses 1,024 levels but encodes 254: a message is refused at the door
    past MAX_JSON_DEPTH, whatever its type, before it is looked at."""
    at_limit = f'{{"type":"ping","data":{nested(MAX_JSON_DEPTH - 1)}}}'
    with pytest.raises(RemoteProtocolError) as info:
        decode(at_limit)
    assert info.value.code == "invalid_field"  # deep enough to be read: a ping has no data
    for depth in (MAX_JSON_DEPTH, 300, 1000):
        with pytest.raises(RemoteProtocolError) as info:
            decode(f'{{"type":"ping","data":{nested(depth)}}}')
        assert info.value.code == "too_large"
        assert info.value.message == f"JSON nests deeper than the limit of {MAX_JSON_DEPTH} levels"
        assert info.value.path == "$"  # the message as a whole


def test_check_depth_counts_objects_and_arrays_level_by_level() -> None:
    check_depth(1)
    check_depth([1, {"a": [2]}], limit=3)
    with pytest.raises(RemoteProtocolError):
        check_depth([1, {"a": [2]}], limit=2)
    wide = [[i] for i in range(1000)]  # wide, not deep
    check_depth(wide, limit=2)


def _depth(value: object) -> int:
    """The nesting of *value* by recursion: the reference check_depth must agree with."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=300)
@given(value=_json_values, limit=st.integers(min_value=0, max_value=8))
@example(value=[[[[]]], []], limit=3)  # the deepest first, a shallow sibling last
@example(value={"a": [[[]]], "b": 1}, limit=3)
def test_check_depth_refuses_exactly_what_nests_past_the_limit(value: object, limit: int) -> None:
    if _depth(value) > limit:
        with pytest.raises(RemoteProtocolError, match="nests deeper"):
            check_depth(value, limit)
    else:
        check_depth(value, limit)


# --- fuzzing: nothing but RemoteProtocolError escapes ---

_PATH = re.compile(r"^\$(\.[a-z][a-zA-Z0-9]*|\[\d+\])*$")


def _decode_or_error(raw: bytes | str, accept: frozenset[str] = ALL_TYPES) -> None:
    error: RemoteProtocolError | None = None
    try:
        env = decode(raw, accept=accept, max_size=1 << 16)
    except RemoteProtocolError as exc:
        error = exc
    if error is None:
        assert isinstance(env, Envelope)
        assert env.type in accept
        return
    assert error.code in CODES
    assert error.message
    if error.path is not None:
        assert _PATH.match(error.path), error.path
        assert "_" not in error.path  # wire (camelCase) names only


@FAST
@given(st.binary(max_size=200))
@example(b"\xff")
@example(b"{" * 2000)
@example(b"[" * 5000)
@example(b'{"type":"ping","timestamp":99999999999999999999999}')
def test_fuzz_bytes(raw: bytes) -> None:
    _decode_or_error(raw)


@FAST
@given(st.text(max_size=200))
@example('{"type":"ping","timestamp":1,"x":"\ud800"}')
def test_fuzz_text(raw: str) -> None:
    _decode_or_error(raw)


@FAST
@given(S.json_values)
def test_fuzz_json_values(value: Any) -> None:
    _decode_or_error(orjson.dumps(value))
    _decode_or_error(orjson.dumps(value), CLIENT_TYPES)


@FAST
@given(
    kind=st.sampled_from(sorted(ALL_TYPES)),
    data=S.json_values,
    extra=st.dictionaries(
        st.sampled_from(["timestamp", "channel", "offset", "epoch", "stale", "x"]),
        S.json_values,
        max_size=3,
    ),
)
def test_fuzz_valid_type_random_data(kind: str, data: Any, extra: dict[str, Any]) -> None:
    _decode_or_error(orjson.dumps({"type": kind, "data": data, **extra}))
    _decode_or_error(orjson.dumps({"type": kind, "data": data, **extra}), CLIENT_TYPES)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_leaf_paths(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_leaf_paths(item, (*path, index)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], tuple(rest), new)}
    copy = list(value)
    copy[head] = _replace(value[head], tuple(rest), new)
    return copy


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=S.envelopes(), data=st.data())
def test_fuzz_mutated_valid_messages(env: Envelope, data: Any) -> None:
    """Replace one node of a valid message (close to real input) with any JSON value."""
    obj = orjson.loads(encode(env))
    path = data.draw(st.sampled_from(_leaf_paths(obj)))
    mutated = _replace(obj, path, data.draw(S.json_values))
    _decode_or_error(orjson.dumps(mutated))


# --- details pinned by mutation testing (make mutation) ---


def test_encode_error_names_the_type_and_the_cause() -> None:
    env = Envelope(payload=TopicCreated(name="t", partitions=2**70), timestamp=1)
    with pytest.raises(LocalProtocolError) as info:
        encode(env)
    assert info.value.message == "cannot encode topic_created: Integer exceeds 64-bit range"


def test_decode_applies_the_event_check() -> None:
    raw = orjson.dumps({"type": "topic_created", "data": {"name": "a b", "partitions": 1}})
    with pytest.raises(RemoteProtocolError) as info:
        decode(raw)
    assert (info.value.code, info.value.message, info.value.path) == (
        "invalid_field",
        "data.name: a topic name may only contain ASCII letters, digits, '.', '_' and '-', "
        "got 'a b'",
        "$.data.name",
    )


def test_unsubscribe_data_of_the_wrong_type_names_what_it_got() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps({"type": "unsubscribe", "data": 5}), accept=CLIENT_TYPES)
    assert (info.value.message, info.value.path) == (
        "expected a channel or an array of channels, got a number",
        "$.data",
    )


def test_a_message_without_data_decodes_to_its_payload() -> None:
    assert decode(b'{"type":"ping","timestamp":7}') == Envelope(payload=Ping(), timestamp=7)


@pytest.mark.parametrize("timestamp", [2.0**63, -(2.0**63)])
def test_timestamp_at_the_64_bit_limit_is_out_of_range(timestamp: float) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(orjson.dumps({"type": "ping", "timestamp": timestamp}), accept=CLIENT_TYPES)
    assert info.value.message == "timestamp: expected a number of seconds, got one out of range"


def test_explain_quotes_a_leaf_that_says_what_it_expected_or_what_is_unknown() -> None:
    for text in ("expected a number, got a string", "unknown channel 'x'"):
        leaf = _noted(ValueError(text), AttributeValidationNote("?", "total_lag", int))
        group = cattrs.ClassValidationError("?", [leaf], TopicLag)
        assert explain(group, "$.data") == (f"data.totalLag: {text}", "$.data.totalLag")


def test_explain_of_another_type_error_names_the_expected_type() -> None:
    # a TypeError of cattrs' own wording is replaced by the field's type
    leaf = _noted(TypeError("boom"), AttributeValidationNote("?", "total_lag", int))
    group = cattrs.ClassValidationError("?", [leaf], TopicLag)
    assert explain(group) == ("totalLag: invalid value, expected int", "$.totalLag")
    # a type without a __name__ (a union) is named by its text
    odd = _noted(RuntimeError("boom"), AttributeValidationNote("?", "offset", int | None))
    group = cattrs.ClassValidationError("?", [odd], TopicLag)
    assert explain(group) == ("offset: invalid value, expected int | None", "$.offset")


def test_describe_names_a_value_of_any_other_type_by_its_class() -> None:
    assert describe(b"x") == "bytes"
    assert describe(3 + 4j) == "complex"


def test_payload_to_data() -> None:
    assert payload_to_data(Ping()) is None
    assert payload_to_data(TopicDeleted(name="orders")) == {"name": "orders"}


@FAST
@given(S.envelopes())
def test_decode_gives_the_wire_data_as_payload_and_as_data(envelope: Envelope) -> None:
    """What embedding.md says: ``payload`` (alias ``data``) is the wire's ``data``."""
    raw = encode(envelope)
    wire = orjson.loads(raw)
    decoded = decode(raw)
    assert decoded.data is decoded.payload
    assert decoded.type == wire["type"] == type(decoded.payload).TYPE
    assert payload_to_data(decoded.payload) == wire.get("data")


def test_a_request_whose_data_may_be_left_out_decodes_as_with_empty_data() -> None:
    # a client's {"type": "history"} asks as {"type": "history", "data": {}} does
    without = decode(b'{"type":"history","timestamp":5}', accept=CLIENT_TYPES)
    assert without == decode(b'{"type":"history","data":{},"timestamp":5}', accept=CLIENT_TYPES)
    assert without.payload == History()
