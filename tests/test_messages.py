"""The messages: the 2.9 wire shape of every type, round trips, golden messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies as S
from takhin_ws.wire.codec import decode, encode
from takhin_ws.wire.messages import (
    ALL_TYPES,
    CLIENT_TYPES,
    PROTOCOL_VERSION,
    Envelope,
    EpochChanged,
    Error,
    GroupDetail,
    GroupStatus,
    History,
    LagPoint,
    MonitoringMetrics,
    Payload,
    Ping,
    Pong,
    Subscribe,
    TopicCreated,
    TopicDeleted,
    TopicDetail,
    Unsubscribe,
)

GOLDEN = Path(__file__).parent / "golden"

# The key sets of the 2.9 MonitoringMetrics shape (facts sheet), all always present.
METRICS_KEYS = {"throughput", "latency", "topicStats", "consumerLags", "clusterHealth", "timestamp"}
THROUGHPUT_KEYS = {"produceRate", "fetchRate", "produceBytes", "fetchBytes"}
LATENCY_KEYS = {
    "produceP50",
    "produceP95",
    "produceP99",
    "fetchP50",
    "fetchP95",
    "fetchP99",
}
TOPIC_STATS_KEYS = {"name", "partitions", "totalMessages", "totalBytes", "produceRate", "fetchRate"}
# ... and the lag insight's additive keys (v1), also always present
CONSUMER_LAG_KEYS = {"groupId", "totalLag", "topicLags"} | {"lagSeconds", "status", "drainSeconds"}
TOPIC_LAG_KEYS = {"topic", "totalLag", "partitionLags"} | {"lagSeconds"}
PARTITION_LAG_KEYS = {"partition", "currentOffset", "logEndOffset", "lag"} | {
    "lagSeconds",
    "consumeRate",
}
CLUSTER_HEALTH_KEYS = {
    "activeConnections",
    "totalTopics",
    "totalPartitions",
    "totalConsumers",
    "diskUsageBytes",
    "memoryUsageBytes",
    "goroutineCount",
}
GROUP_EVENT_KEYS = {"groupId", "state", "members"}
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")

FAST = settings(max_examples=150, deadline=None)


def assert_metrics_shape(data: Any) -> None:
    assert set(data) == METRICS_KEYS
    assert set(data["throughput"]) == THROUGHPUT_KEYS
    assert set(data["latency"]) == LATENCY_KEYS
    assert set(data["clusterHealth"]) == CLUSTER_HEALTH_KEYS
    assert all(type(v) is float for v in data["throughput"].values())
    assert all(type(v) is float for v in data["latency"].values())
    assert all(type(v) is int for v in data["clusterHealth"].values())
    assert type(data["timestamp"]) is int
    assert type(data["topicStats"]) is list
    for stats in data["topicStats"]:
        assert set(stats) == TOPIC_STATS_KEYS
    assert type(data["consumerLags"]) is list
    for lag in data["consumerLags"]:
        assert set(lag) == CONSUMER_LAG_KEYS
        assert type(lag["topicLags"]) is list
        for topic_lag in lag["topicLags"]:
            assert set(topic_lag) == TOPIC_LAG_KEYS
            assert type(topic_lag["partitionLags"]) is list
            for partition_lag in topic_lag["partitionLags"]:
                assert set(partition_lag) == PARTITION_LAG_KEYS


def assert_camel_keys(value: Any, *, skip: frozenset[str] = frozenset()) -> None:
    """Every object key is camelCase (values of keys in *skip* are maps keyed by channel)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert CAMEL.match(key), key
            if key not in skip:
                assert_camel_keys(item, skip=skip)
    elif isinstance(value, list):
        for item in value:
            assert_camel_keys(item, skip=skip)


def assert_data_shape(payload: Payload, data: Any) -> None:
    """The ``data`` of *payload* has the documented shape for its type."""
    match payload:
        case MonitoringMetrics():
            assert_metrics_shape(data)
        case TopicCreated():
            assert set(data) == {"name", "partitions"}
        case TopicDeleted():
            assert set(data) == {"name"}
        case Subscribe(since=None, epoch=None, channels=(channel,)):
            assert data == channel  # the 2.9 form: a bare string
        case Subscribe(since=None, epoch=None):
            assert data == list(payload.channels)
        case Subscribe():
            assert type(data) is dict
            assert data["channels"] == list(payload.channels)
            assert set(data) <= {"channels", "since", "epoch"}
        case Unsubscribe():
            assert data == list(payload.channels)
        case Ping() | Pong():
            raise AssertionError("ping and pong carry no data")
        case GroupDetail():
            assert set(data) == {"groupId", "state", "members", "totalLag", "topicLags"} | {
                "lagSeconds",
                "status",
                "drainSeconds",
            }
        case TopicDetail():
            assert set(data) == TOPIC_STATS_KEYS | {"consumers"}
            for consumer in data["consumers"]:
                assert set(consumer) == {"groupId", "totalLag", "partitionLags"} | {
                    "lagSeconds",
                    "status",
                }
        case EpochChanged():
            assert set(data) == {"epoch", "previous", "recovered"}
        case History(channel=None, lags=()):
            assert set(data) == {"interval", "points"}
            for point in data["points"]:
                assert set(point) == {"timestamp", "throughput", "latency", "groupLags"}
        case History():
            assert set(data) <= {"interval", "points", "channel", "lags"}
            for lag in data.get("lags", ()):
                assert set(lag) == {"timestamp", "totalLag", "lagSeconds"}
        case GroupStatus():
            assert set(data) == {"groupId", "status", "previous", "reason"}
        case _:
            assert type(data) is dict
            if payload.TYPE.startswith("group_"):
                assert set(data) == GROUP_EVENT_KEYS
    assert_camel_keys(data, skip=frozenset({"since", "recovered", "groupLags"}))


# --- round trips and the 2.9 shape ---


@FAST
@given(S.envelopes(extensions=False))
def test_round_trip_plain_29_messages(env: Envelope) -> None:
    raw = encode(env)
    assert decode(raw) == env
    obj = orjson.loads(raw)
    if env.type in ("ping", "pong"):
        assert list(obj) == ["type", "timestamp"]
    else:
        assert list(obj) == ["type", "data", "timestamp"]
        assert_data_shape(env.payload, obj["data"])
    assert obj["type"] == env.type
    assert obj["timestamp"] == env.timestamp


@FAST
@given(S.envelopes())
def test_round_trip_with_v1_extensions(env: Envelope) -> None:
    raw = encode(env)
    assert decode(raw) == env
    assert decode(raw.decode()) == env  # a text frame arrives as str
    obj = orjson.loads(raw)
    extensions = [k for k in ("channel", "offset", "epoch", "stale") if getattr(env, k) is not None]
    head = ["type", "timestamp"] if env.type in ("ping", "pong") else ["type", "data", "timestamp"]
    assert list(obj) == head + extensions  # additive: the 2.9 keys come first, unchanged


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param(S.metrics, id="metrics"),
        pytest.param(S.topic_events, id="topic-events"),
        pytest.param(S.group_events, id="group-events"),
        pytest.param(st.sampled_from([Ping(), Pong()]), id="ping-pong"),
        pytest.param(S.subscribe_string, id="subscribe-string"),
        pytest.param(S.subscribe_list, id="subscribe-list"),
        pytest.param(S.subscribe_object, id="subscribe-object"),
        pytest.param(S.unsubscribes, id="unsubscribe"),
        pytest.param(S.welcomes, id="welcome"),
        pytest.param(S.subscribeds, id="subscribed"),
        pytest.param(S.gaps, id="gap"),
        pytest.param(S.errors, id="error"),
        pytest.param(S.group_details, id="group-detail"),
        pytest.param(S.topic_details, id="topic-detail"),
        pytest.param(S.histories, id="history"),
        pytest.param(S.epoch_changes, id="epoch"),
    ],
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_each_payload_type(strategy: st.SearchStrategy[Payload], data: Any) -> None:
    payload = data.draw(strategy)
    env = Envelope(payload=payload, timestamp=data.draw(S.ints))
    obj = orjson.loads(encode(env))
    if "data" in obj:
        assert_data_shape(payload, obj["data"])
    assert decode(encode(env)).payload == payload


def test_subscribe_wire_forms() -> None:
    as_string = orjson.loads(
        encode(Envelope(payload=Subscribe(channels=("metrics",)), timestamp=1))
    )
    assert as_string["data"] == "metrics"
    as_list = Envelope(payload=Subscribe(channels=("metrics", "topic:orders")), timestamp=1)
    assert orjson.loads(encode(as_list))["data"] == ["metrics", "topic:orders"]
    as_object = Subscribe(channels=("topics",), since={"topics": 7}, epoch="e1")
    assert orjson.loads(encode(Envelope(payload=as_object, timestamp=1)))["data"] == {
        "channels": ["topics"],
        "since": {"topics": 7},
        "epoch": "e1",
    }
    decoded = decode(b'{"type":"subscribe","data":{"channels":["topics"],"since":{"topics":7}}}')
    assert decoded.payload == Subscribe(channels=("topics",), since={"topics": 7})
    assert decoded.timestamp == 0  # a client may omit the timestamp


def test_metrics_defaults_send_every_key() -> None:
    obj = orjson.loads(encode(Envelope(payload=MonitoringMetrics(), timestamp=5)))
    assert_metrics_shape(obj["data"])
    assert obj["data"]["topicStats"] == []
    assert obj["data"]["clusterHealth"]["goroutineCount"] == 0


def test_error_without_path_sends_code_and_message_only() -> None:
    obj = orjson.loads(encode(Envelope(payload=Error(code="x", message="y"), timestamp=1)))
    assert obj["data"] == {"code": "x", "message": "y"}
    with_path = Error(code="x", message="y", path="$.data")
    obj = orjson.loads(encode(Envelope(payload=with_path, timestamp=1)))
    assert obj["data"] == {"code": "x", "message": "y", "path": "$.data"}


def test_samples_cover_every_type() -> None:
    assert set(S.SAMPLES) == ALL_TYPES


def test_protocol_version_is_one() -> None:
    # Clients check it in ``welcome``: changing it is a breaking change of the protocol.
    assert PROTOCOL_VERSION == 1


# --- the metrics views and the epoch change (server -> client only) ---


def _data(payload: Payload) -> Any:
    obj = orjson.loads(encode(Envelope(payload=payload, timestamp=7)))
    assert list(obj) == ["type", "data", "timestamp"]
    assert obj["type"] == payload.TYPE
    return obj["data"]


def test_group_detail_shape_and_absent_group() -> None:
    data = _data(GroupDetail(group_id="billing"))
    assert data == {
        "groupId": "billing",
        "state": "Dead",
        "members": 0,
        "totalLag": 0,
        "topicLags": [],
        "lagSeconds": None,
        "status": "UNKNOWN",
        "drainSeconds": None,
    }


def test_topic_detail_shape() -> None:
    data = _data(TopicDetail(name="orders"))
    assert data == {
        "name": "orders",
        "partitions": 0,
        "totalMessages": 0,
        "totalBytes": 0,
        "produceRate": 0.0,
        "fetchRate": 0.0,
        "consumers": [],
    }


def test_topic_detail_consumers_shape() -> None:
    raw = {
        "type": "topic_detail",
        "data": {
            "name": "orders",
            "partitions": 2,
            "totalMessages": 10,
            "totalBytes": 100,
            "produceRate": 1.5,
            "fetchRate": 0.5,
            "consumers": [
                {
                    "groupId": "g",
                    "totalLag": 3,
                    "partitionLags": [
                        {"partition": 0, "currentOffset": 1, "logEndOffset": 4, "lag": 3}
                    ],
                }
            ],
        },
        "timestamp": 7,
    }
    env = decode(orjson.dumps(raw))
    assert isinstance(env.payload, TopicDetail)
    assert env.payload.consumers[0].partition_lags[0].lag == 3
    # a message without the lag insight (2.9, or an older server) reads as "not known"
    (consumer,) = orjson.loads(encode(env))["data"]["consumers"]
    assert consumer["lagSeconds"] is None
    assert consumer["status"] == "UNKNOWN"
    assert consumer["partitionLags"][0]["lagSeconds"] is None
    assert consumer["partitionLags"][0]["consumeRate"] is None


def test_group_status_and_group_history_shapes() -> None:
    status = GroupStatus(group_id="g", status="STALLED", previous="OK", reason="t[0]: stuck")
    assert _data(status) == {
        "groupId": "g",
        "status": "STALLED",
        "previous": "OK",
        "reason": "t[0]: stuck",
    }
    history = History(
        interval=2.0,
        channel="group:g",
        lags=(LagPoint(timestamp=1.5, total_lag=3, lag_seconds=None),),
    )
    assert _data(history) == {
        "interval": 2.0,
        "points": [],
        "channel": "group:g",
        "lags": [{"timestamp": 1.5, "totalLag": 3, "lagSeconds": None}],
    }
    assert _data(History(interval=2.0)) == {"interval": 2.0, "points": []}  # as before
    request = decode('{"type": "history", "data": {"channel": "group:g"}}', accept=CLIENT_TYPES)
    assert request.payload == History(channel="group:g")


def test_epoch_changed_shape() -> None:
    payload = EpochChanged(
        epoch="new", previous="old", recovered={"topics": False, "groups": False}
    )
    assert _data(payload) == {
        "epoch": "new",
        "previous": "old",
        "recovered": {"topics": False, "groups": False},
    }


@pytest.mark.parametrize("kind", ["group_detail", "topic_detail", "epoch"])
def test_view_and_epoch_messages_are_server_only(kind: str) -> None:
    assert kind in ALL_TYPES
    assert kind not in CLIENT_TYPES


# --- golden messages, hand-built from the 2.9 documentation ---


def _ordered(value: Any) -> Any:
    """*value* with every object turned into its ordered list of items."""
    if isinstance(value, dict):
        return [(k, _ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


GOLDEN_FILES = sorted(GOLDEN.glob("*.json"))
#: Keys a v1 server adds to 2.9 objects (the lag insight): after the 2.9 keys, always.
V1_KEYS = frozenset({"lagSeconds", "consumeRate", "status", "drainSeconds"})


def additive(again: Any, expected: Any) -> Any:
    """*again* without the keys v1 adds where *expected* (a 2.9 message) lacks them;
    asserts that those come after every 2.9 key of their object."""
    if isinstance(again, dict) and isinstance(expected, dict):
        extra = [k for k in again if k not in expected]
        assert set(extra) <= V1_KEYS, extra
        assert list(again)[: len(expected)] == list(expected), (list(again), list(expected))
        return {k: additive(v, expected[k]) for k, v in again.items() if k in expected}
    if isinstance(again, list) and isinstance(expected, list) and len(again) == len(expected):
        return [additive(a, e) for a, e in zip(again, expected, strict=True)]
    return again


def test_golden_files_present() -> None:
    names = {p.stem for p in GOLDEN_FILES}
    assert names >= {
        "metrics",
        "topic_created",
        "topic_deleted",
        "group_updated",
        "ping",
        "pong",
        "subscribe",
        "error",
    }


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_round_trip(path: Path) -> None:
    text = path.read_text()
    expected = json.loads(text)
    env = decode(text.encode())
    assert env.type == expected["type"] == path.stem.split(".")[0]
    again = additive(json.loads(encode(env)), expected)
    assert again == expected
    assert _ordered(again) == _ordered(expected)  # key order too, at every level
    assert list(again) == list(expected)


def test_golden_metrics_decodes_to_expected_objects() -> None:
    env = decode((GOLDEN / "metrics.json").read_bytes())
    metrics = env.payload
    assert isinstance(metrics, MonitoringMetrics)
    assert env.timestamp == metrics.timestamp == 1700000000
    assert metrics.throughput.produce_rate == 1520.5
    assert metrics.latency.fetch_p99 == 0.0475
    assert [t.name for t in metrics.topic_stats] == ["orders", "payments"]
    lag = metrics.consumer_lags[0].topic_lags[0].partition_lags[1]
    assert (lag.partition, lag.current_offset, lag.log_end_offset, lag.lag) == (1, 40998, 41000, 2)
    assert metrics.cluster_health.goroutine_count == 87
    assert_metrics_shape(orjson.loads(encode(env))["data"])  # every key, the v1 ones too
    assert (metrics.consumer_lags[0].status, metrics.consumer_lags[0].lag_seconds) == (
        "UNKNOWN",
        None,
    )
    v1 = decode((GOLDEN / "metrics.v1.json").read_bytes()).payload
    assert isinstance(v1, MonitoringMetrics)
    billing = v1.consumer_lags[0]
    assert (billing.status, billing.lag_seconds, billing.drain_seconds) == ("LAGGING", 12.5, None)
    assert billing.topic_lags[0].partition_lags[0].consume_rate == 20.0


def test_golden_client_messages_accepted_from_clients() -> None:
    for name in ("ping", "subscribe"):
        env = decode((GOLDEN / f"{name}.json").read_bytes(), accept=CLIENT_TYPES)
        assert env.type == name
    sub = decode((GOLDEN / "subscribe.json").read_bytes()).payload
    assert sub == Subscribe(channels=("topic:orders",))
