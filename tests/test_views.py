"""Metrics views and the fast snapshot encoding (sans-IO): the bytes are the codec's."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import metrics as metrics_strategy
from takhin_ws._exceptions import LocalProtocolError
from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.core.metrics.snapshot import GroupInfo, Snapshot
from takhin_ws.core.metrics.views import (
    MetricsViews,
    dumps,
    is_view,
    metrics_data,
    metrics_envelope,
)
from takhin_ws.ingest.producer import MetricsProducer
from takhin_ws.wire.codec import decode, encode
from takhin_ws.wire.messages import (
    ConsumerLag,
    Envelope,
    GroupDeleted,
    GroupDetail,
    GroupUpdated,
    MonitoringMetrics,
    PartitionLag,
    TopicConsumer,
    TopicDeleted,
    TopicDetail,
    TopicLag,
    TopicStats,
)
from takhin_ws.wire.websocket.frames import Outbound
from test_messages import additive

GOLDEN = Path(__file__).parent / "golden"


def lag(partition: int, end: int, behind: int) -> PartitionLag:
    return PartitionLag(
        partition=partition, current_offset=end - behind, log_end_offset=end, lag=behind
    )


SNAPSHOT = MonitoringMetrics(
    topic_stats=(
        TopicStats(
            name="orders",
            partitions=2,
            total_messages=100,
            total_bytes=5000,
            produce_rate=1.5,
            fetch_rate=2.0,
        ),
        TopicStats(
            name="audit",
            partitions=1,
            total_messages=7,
            total_bytes=70,
            produce_rate=0.0,
            fetch_rate=0.5,
        ),
    ),
    consumer_lags=(
        ConsumerLag(
            group_id="billing",
            total_lag=5,
            topic_lags=(
                TopicLag(
                    topic="orders", total_lag=3, partition_lags=(lag(0, 50, 1), lag(1, 50, 2))
                ),
                TopicLag(topic="audit", total_lag=2, partition_lags=(lag(0, 7, 2),)),
            ),
        ),
        ConsumerLag(
            group_id="search",
            total_lag=4,
            topic_lags=(
                TopicLag(
                    topic="orders", total_lag=4, partition_lags=(lag(0, 50, 4), lag(1, 50, 0))
                ),
            ),
        ),
    ),
    timestamp=1700000000,
)
ENVELOPE_FIELDS = {"timestamp": 1700000001, "channel": "metrics", "offset": 9, "epoch": "e1"}


def envelope_of(payload: object, **fields: object) -> bytes:
    return encode(Envelope(payload=payload, **{**ENVELOPE_FIELDS, **fields}))  # type: ignore[arg-type]


def published(metrics: MonitoringMetrics = SNAPSHOT, *, stale: bool | None = False) -> Outbound:
    return Outbound.of(envelope_of(metrics, stale=stale), "metrics", 9, "metrics")


def views_of(item: Outbound, *, decoded: bool) -> MetricsViews:
    views = MetricsViews()
    views.source(item, orjson.loads(item.payload) if decoded else None)
    return views


# --- the fast encoding ---


@settings(max_examples=200, deadline=None)
@given(metrics_strategy, st.sampled_from([None, True, False]))
def test_fast_encoding_is_the_codecs_bytes(metrics: MonitoringMetrics, stale: bool | None) -> None:
    expected = envelope_of(metrics, stale=stale)
    fast = dumps(metrics_envelope(metrics_data(metrics), **ENVELOPE_FIELDS, stale=stale))  # type: ignore[arg-type]
    assert fast == expected


def test_fast_encoding_of_the_golden_snapshot() -> None:
    golden = (GOLDEN / "metrics.json").read_bytes()
    envelope = decode(golden)
    assert isinstance(envelope.payload, MonitoringMetrics)
    fast = dumps(
        metrics_envelope(
            metrics_data(envelope.payload),
            timestamp=envelope.timestamp,
            channel=envelope.channel,
            offset=envelope.offset,
            epoch=envelope.epoch,
            stale=envelope.stale,
        )
    )
    assert additive(orjson.loads(fast), json.loads(golden)) == json.loads(golden)
    assert fast == encode(envelope)


def test_an_int_beyond_64_bits_is_a_local_error() -> None:
    metrics = attrs.evolve(SNAPSHOT, timestamp=2**70)
    with pytest.raises(LocalProtocolError, match="cannot encode metrics"):
        dumps(metrics_envelope(metrics_data(metrics), timestamp=1))


def test_is_view() -> None:
    assert is_view("metrics:lean")
    assert is_view("metrics:group:billing")
    assert not is_view("metrics")
    assert not is_view("topic:metrics:lean")


# --- the views: each equals the codec's encoding of the message it stands for ---


@pytest.mark.parametrize("decoded", [True, False], ids=["decoded", "from-bytes"])
def test_lean_view(decoded: bool) -> None:
    views = views_of(published(), decoded=decoded)
    item = views.view("metrics:lean")
    assert item is not None
    lean = attrs.evolve(
        SNAPSHOT,
        consumer_lags=tuple(
            attrs.evolve(
                c, topic_lags=tuple(attrs.evolve(t, partition_lags=()) for t in c.topic_lags)
            )
            for c in SNAPSHOT.consumer_lags
        ),
    )
    assert item.payload == envelope_of(lean, stale=False)
    assert (item.channel, item.offset, item.route) == ("metrics", 9, "metrics:lean")
    assert decode(item.payload).payload == lean
    assert views.view("metrics:lean") is item  # built once per snapshot


@pytest.mark.parametrize("decoded", [True, False], ids=["decoded", "from-bytes"])
def test_group_detail_view(decoded: bool) -> None:
    views = views_of(published(stale=True), decoded=decoded)
    views.note_groups({"billing": GroupInfo(state="Stable", members=3)})
    item = views.view("metrics:group:billing")
    assert item is not None
    expected = GroupDetail(
        group_id="billing",
        state="Stable",
        members=3,
        total_lag=5,
        topic_lags=SNAPSHOT.consumer_lags[0].topic_lags,
    )
    assert item.payload == envelope_of(expected, stale=True)
    assert item.route == "metrics:group:billing"


def test_a_view_of_a_group_the_cluster_does_not_have_is_not_built() -> None:
    views = MetricsViews()
    assert views.exists("metrics:group:nobody") is None  # no snapshot yet: cannot tell
    views = views_of(published(), decoded=True)
    views.note_groups({"gone": GroupInfo(state="Stable", members=1)})
    assert views.exists("metrics:group:nobody") is False
    assert views.view("metrics:group:nobody") is None
    # a group its events say exists, not yet in the snapshot's lags: shown, no lag
    assert views.exists("metrics:group:gone") is True
    item = views.view("metrics:group:gone")
    assert item is not None
    assert decode(item.payload).payload == GroupDetail(
        group_id="gone", state="Stable", members=1, total_lag=0, topic_lags=()
    )
    views.note_event(GroupDeleted(group_id="gone", state="Dead", members=0))
    views.source(published())  # the next tick
    assert views.view("metrics:group:gone") is None


def test_group_state_follows_snapshots_and_events() -> None:
    views = MetricsViews()
    views.note_groups({"billing": GroupInfo(state="Stable", members=3)})

    def detail() -> GroupDetail:
        views.source(published())  # a new tick: the view is rebuilt
        item = views.view("metrics:group:billing")
        assert item is not None
        payload = decode(item.payload).payload
        assert isinstance(payload, GroupDetail)
        return payload

    assert (detail().state, detail().members) == ("Stable", 3)
    views.note_event(GroupUpdated(group_id="billing", state="PreparingRebalance", members=4))
    assert (detail().state, detail().members) == ("PreparingRebalance", 4)
    bus_event = encode(
        Envelope(payload=GroupUpdated(group_id="billing", state="Empty", members=0), timestamp=1)
    )
    views.note_event_json(bus_event)
    assert (detail().state, detail().members) == ("Empty", 0)
    views.note_event(GroupDeleted(group_id="billing", state="Dead", members=0))
    assert detail().state == "Empty"  # still in the snapshot's lags, described by nothing
    views.note_event(GroupUpdated(group_id="billing", state="Stable", members=2))
    views.note_event_json(
        encode(
            Envelope(payload=GroupDeleted(group_id="billing", state="Dead", members=0), timestamp=1)
        )
    )
    assert detail().state == "Empty"
    # other events leave the groups alone
    views.note_event_json(encode(Envelope(payload=TopicDeleted(name="billing"), timestamp=1)))
    views.note_event(TopicDeleted(name="billing"))
    views.note_event(GroupUpdated(group_id="search", state="Stable", members=1))
    assert detail().state == "Empty"


@pytest.mark.parametrize("decoded", [True, False], ids=["decoded", "from-bytes"])
def test_topic_detail_view(decoded: bool) -> None:
    views = views_of(published(), decoded=decoded)
    item = views.view("metrics:topic:orders")
    assert item is not None
    billing, search = SNAPSHOT.consumer_lags
    expected = TopicDetail(
        name="orders",
        partitions=2,
        total_messages=100,
        total_bytes=5000,
        produce_rate=1.5,
        fetch_rate=2.0,
        consumers=(
            TopicConsumer(
                group_id="billing",
                total_lag=3,
                partition_lags=billing.topic_lags[0].partition_lags,
            ),
            TopicConsumer(
                group_id="search", total_lag=4, partition_lags=search.topic_lags[0].partition_lags
            ),
        ),
    )
    assert item.payload == envelope_of(expected, stale=False)
    audit = views.view("metrics:topic:audit")
    assert audit is not None
    payload = decode(audit.payload).payload
    assert isinstance(payload, TopicDetail)
    assert [c.group_id for c in payload.consumers] == ["billing"]


def test_a_view_of_a_topic_the_cluster_does_not_have_is_not_built() -> None:
    views = views_of(published(), decoded=True)
    assert views.exists("metrics:topic:nothing") is False
    assert views.view("metrics:topic:nothing") is None
    assert views.exists("metrics:topic:orders") is True
    assert views.exists("metrics:lean") is True


def test_a_snapshot_from_a_bus_is_parsed_once_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Views of a snapshot that came as bytes parse it at most once per tick, however
    many views are built, checked or forgotten and built again (subscribe churn)."""
    parsed: list[bytes] = []
    real = orjson.loads

    def counting(data: bytes) -> object:
        parsed.append(data)
        return real(data)

    views = views_of(published(), decoded=False)
    monkeypatch.setattr("takhin_ws.core.metrics.views.orjson.loads", counting)
    for _ in range(5):
        assert views.exists("metrics:topic:nope") is False
        assert views.view("metrics:topic:orders") is not None
        views.forget("metrics:topic:orders")
        assert views.view("metrics:group:billing") is not None
        views.forget("metrics:group:billing")
    assert len(parsed) == 1
    views.source(published())
    assert views.view("metrics:lean") is not None
    assert len(parsed) == 2


def test_views_follow_the_latest_snapshot() -> None:
    views = MetricsViews()
    assert views.view("metrics:lean") is None  # no snapshot yet
    first = published()
    views.source(first)
    lean = views.view("metrics:lean")
    assert views.view("metrics:lean") is lean
    views.forget("metrics:lean")
    rebuilt = views.view("metrics:lean")
    assert rebuilt is not lean
    assert rebuilt == lean
    views.source(published(attrs.evolve(SNAPSHOT, timestamp=5)))
    newer = views.view("metrics:lean")
    assert newer is not None
    assert b'"timestamp":5' in newer.payload
    views.clear()
    assert views.view("metrics:lean") is None


def test_not_a_view() -> None:
    views = views_of(published(), decoded=True)
    with pytest.raises(ValueError, match="not a metrics view"):
        views.view("topics")


async def test_the_producer_tells_the_hub_each_groups_state() -> None:
    class Source:
        async def collect(self) -> Snapshot:
            return Snapshot(
                metrics=SNAPSHOT, groups={"billing": GroupInfo(state="Stable", members=3)}
            )

    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, ["metrics:group:billing"])
    await MetricsProducer(hub, Source()).tick()
    (item,) = sub.queue.get_batch_nowait()
    detail = decode(item.payload).payload
    assert isinstance(detail, GroupDetail)
    assert (detail.state, detail.members, detail.total_lag) == ("Stable", 3, 5)
