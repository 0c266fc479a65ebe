"""The codec: strict decoding, error codes and paths, size limit, fuzzing."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import strategies as S
from takhin_ws._codec import decode, encode
from takhin_ws._exceptions import LocalProtocolError, ProtocolError, RemoteProtocolError
from takhin_ws._messages import (
    ALL_TYPES,
    CLIENT_TYPES,
    GROUP_STATES,
    ClusterHealth,
    Envelope,
    GroupUpdated,
    MonitoringMetrics,
    Payload,
    Ping,
    Subscribe,
    TopicCreated,
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
        pytest.param({"type": "ping", "timestamp": 1.0}, "$.timestamp", id="float-timestamp"),
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


@pytest.mark.parametrize("kind", sorted(ALL_TYPES - CLIENT_TYPES))
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
    message = orjson.dumps({"type": "topic_deleted", "data": {"name": "é" * 100}}).decode()
    size = len(message.encode())
    assert len(message) < size
    assert decode(message, max_size=size).type == "topic_deleted"
    with pytest.raises(RemoteProtocolError) as info:
        decode(message, max_size=size - 1)
    assert info.value.code == "too_large"


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
