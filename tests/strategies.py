"""Hypothesis strategies shared by the sans-IO tests (channels, messages, codec)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from takhin_ws.wire.auth import Refresh, Refreshed, TokenExpiring
from takhin_ws.wire.channels import STREAMS
from takhin_ws.wire.messages import (
    GROUP_STATES,
    LAG_STATUSES,
    ClusterHealth,
    ConsumerLag,
    Envelope,
    EpochChanged,
    Error,
    Gap,
    GroupCreated,
    GroupDeleted,
    GroupDetail,
    GroupStatus,
    GroupUpdated,
    Heartbeat,
    History,
    HistoryPoint,
    LagPoint,
    Latency,
    Limits,
    MonitoringMetrics,
    PartitionLag,
    Payload,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Throughput,
    TopicConsumer,
    TopicCreated,
    TopicDeleted,
    TopicDetail,
    TopicLag,
    TopicStats,
    Unsubscribe,
    Welcome,
)

#: What orjson can write and read back exactly: signed 64-bit integers.
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
counts = st.integers(min_value=0, max_value=2**63 - 1)
#: JSON has no NaN or infinity.
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=16)

_non_space = st.characters(codec="utf-8").filter(lambda c: not c.isspace())
_names = st.text(_non_space, min_size=1, max_size=24)

_topic_names = _names.filter(lambda n: not n.startswith(":"))

#: Every valid channel form: the three streams, ``topic:<name>``, ``group:<id>``
#: and the metrics views.
channels = st.one_of(
    st.sampled_from(STREAMS),
    _topic_names.map(lambda n: f"topic:{n}"),
    _names.map(lambda n: f"group:{n}"),
    st.just("metrics:lean"),
    _topic_names.map(lambda n: f"metrics:topic:{n}"),
    _names.map(lambda n: f"metrics:group:{n}"),
)


def tuples(elements: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(elements, max_size=max_size).map(tuple)


throughputs = st.builds(
    Throughput, produce_rate=floats, fetch_rate=floats, produce_bytes=floats, fetch_bytes=floats
)
latencies = st.builds(
    Latency,
    produce_p50=floats,
    produce_p95=floats,
    produce_p99=floats,
    fetch_p50=floats,
    fetch_p95=floats,
    fetch_p99=floats,
)
topic_stats = st.builds(
    TopicStats,
    name=texts,
    partitions=ints,
    total_messages=ints,
    total_bytes=ints,
    produce_rate=floats,
    fetch_rate=floats,
)
#: The lag insight's values: seconds and rates, or null while not known.
maybe_floats = st.none() | floats
lag_statuses = st.sampled_from(LAG_STATUSES)
partition_lags = st.builds(
    PartitionLag,
    partition=ints,
    current_offset=ints,
    log_end_offset=ints,
    lag=ints,
    lag_seconds=maybe_floats,
    consume_rate=maybe_floats,
)
topic_lags = st.builds(
    TopicLag,
    topic=texts,
    total_lag=ints,
    partition_lags=tuples(partition_lags),
    lag_seconds=maybe_floats,
)
consumer_lags = st.builds(
    ConsumerLag,
    group_id=texts,
    total_lag=ints,
    topic_lags=tuples(topic_lags),
    lag_seconds=maybe_floats,
    status=lag_statuses,
    drain_seconds=maybe_floats,
)
cluster_healths = st.builds(
    ClusterHealth,
    active_connections=ints,
    total_topics=ints,
    total_partitions=ints,
    total_consumers=ints,
    disk_usage_bytes=ints,
    memory_usage_bytes=ints,
    goroutine_count=ints,
)
metrics = st.builds(
    MonitoringMetrics,
    throughput=throughputs,
    latency=latencies,
    topic_stats=tuples(topic_stats),
    consumer_lags=tuples(consumer_lags),
    cluster_health=cluster_healths,
    timestamp=ints,
)

group_states = st.sampled_from(GROUP_STATES)

#: Valid Kafka topic names: 1-249 of ``[A-Za-z0-9._-]``, not ``.`` or ``..``.
topic_names = st.from_regex(r"[A-Za-z0-9._-]{1,249}", fullmatch=True).filter(
    lambda n: n not in (".", "..")
)
#: Valid group ids: 1-255 characters of any kind.
group_ids = st.text(min_size=1, max_size=255)
#: Kafka's 32-bit counts.
partition_counts = st.integers(min_value=1, max_value=2**31 - 1)
member_counts = st.integers(min_value=0, max_value=2**31 - 1)
group_details = st.builds(
    GroupDetail,
    group_id=texts,
    state=group_states,
    members=ints,
    total_lag=ints,
    topic_lags=tuples(topic_lags),
    lag_seconds=maybe_floats,
    status=lag_statuses,
    drain_seconds=maybe_floats,
)
topic_details = st.builds(
    TopicDetail,
    name=texts,
    partitions=ints,
    total_messages=ints,
    total_bytes=ints,
    produce_rate=floats,
    fetch_rate=floats,
    consumers=tuples(
        st.builds(
            TopicConsumer,
            group_id=texts,
            total_lag=ints,
            partition_lags=tuples(partition_lags),
            lag_seconds=maybe_floats,
            status=lag_statuses,
        )
    ),
)
histories = st.one_of(
    st.builds(
        History,
        interval=floats,
        points=tuples(
            st.builds(
                HistoryPoint,
                timestamp=floats,
                throughput=throughputs,
                latency=latencies,
                group_lags=st.dictionaries(texts, ints, max_size=3),
            )
        ),
    ),
    # one group's lag history
    st.builds(
        History,
        interval=floats,
        channel=_names.map(lambda n: f"group:{n}"),
        lags=tuples(
            st.builds(LagPoint, timestamp=floats, total_lag=ints, lag_seconds=maybe_floats)
        ),
    ),
)
epoch_changes = st.builds(
    EpochChanged, epoch=texts, previous=texts, recovered=st.dictionaries(texts, st.booleans())
)
#: Valid change events (what the ingress accepts).
topic_events = st.one_of(
    st.builds(TopicCreated, name=topic_names, partitions=partition_counts),
    st.builds(TopicDeleted, name=topic_names),
)
group_events = st.one_of(
    *(
        st.builds(cls, group_id=group_ids, state=group_states, members=member_counts)
        for cls in (GroupCreated, GroupUpdated, GroupDeleted)
    ),
    st.builds(
        GroupStatus, group_id=group_ids, status=lag_statuses, previous=lag_statuses, reason=texts
    ),
)

#: ``subscribe`` in its three wire forms: a string, a list, an object.
subscribe_string = channels.map(lambda ch: Subscribe(channels=(ch,)))
subscribe_list = st.lists(channels, max_size=4).map(lambda chs: Subscribe(channels=tuple(chs)))
subscribe_object = st.builds(
    Subscribe,
    channels=tuples(channels, max_size=4),
    since=st.none() | st.dictionaries(channels, ints, max_size=3),
    epoch=st.none() | texts,
).filter(lambda s: s.since is not None or s.epoch is not None)
subscribes = st.one_of(subscribe_string, subscribe_list, subscribe_object)
unsubscribes = st.lists(channels, max_size=4).map(lambda chs: Unsubscribe(channels=tuple(chs)))

welcomes = st.builds(
    Welcome,
    protocol=ints,
    client_id=texts,
    epoch=texts,
    channels=tuples(channels),
    heartbeat=st.builds(Heartbeat, interval=floats, timeout=floats),
    limits=st.builds(Limits, queue_size=ints, max_message_size=ints),
)
subscribeds = st.builds(
    Subscribed, channels=tuples(channels), recovered=st.dictionaries(channels, st.booleans())
)
gaps = st.builds(Gap, channel=channels, first_offset=ints, last_offset=ints, count=ints)
errors = st.builds(Error, code=texts, message=texts, path=st.none() | texts)

payloads: st.SearchStrategy[Payload] = st.one_of(
    metrics,
    group_details,
    topic_details,
    histories,
    epoch_changes,
    topic_events,
    group_events,
    st.just(Ping()),
    st.just(Pong()),
    subscribes,
    unsubscribes,
    welcomes,
    subscribeds,
    gaps,
    errors,
)


def envelopes(
    payload: st.SearchStrategy[Payload] = payloads, *, extensions: bool = True
) -> st.SearchStrategy[Envelope]:
    """Envelopes around *payload*; without *extensions* they are plain 2.9 messages."""
    if not extensions:
        return st.builds(Envelope, payload=payload, timestamp=ints)
    return st.builds(
        Envelope,
        payload=payload,
        timestamp=ints,
        channel=st.none() | st.sampled_from(STREAMS),
        offset=st.none() | counts,
        epoch=st.none() | texts,
        stale=st.none() | st.booleans(),
    )


#: One simple message of every type, by wire type.
SAMPLES: dict[str, Payload] = {
    p.TYPE: p
    for p in (
        MonitoringMetrics(),
        GroupDetail(group_id="g"),
        TopicDetail(name="t"),
        History(interval=2.0, points=(HistoryPoint(timestamp=1.5, group_lags={"g": 3}),)),
        EpochChanged(epoch="e2", previous="e1", recovered={"topics": False, "groups": False}),
        TopicCreated(name="t", partitions=1),
        TopicDeleted(name="t"),
        GroupCreated(group_id="g", state="Empty", members=0),
        GroupUpdated(group_id="g", state="Stable", members=1),
        GroupDeleted(group_id="g", state="Dead", members=0),
        GroupStatus(group_id="g", status="STALLED", previous="OK", reason="t[0]: stuck"),
        Ping(),
        Pong(),
        Subscribe(channels=("metrics",)),
        Unsubscribe(channels=("metrics",)),
        Welcome(
            protocol=1,
            client_id="c1",
            epoch="e",
            channels=("metrics",),
            heartbeat=Heartbeat(interval=54.0, timeout=60.0),
            limits=Limits(queue_size=256, max_message_size=524288),
        ),
        Subscribed(channels=("metrics",), recovered={"topics": True}),
        Gap(channel="topics", first_offset=3, last_offset=5, count=3),
        Error(code="c", message="m"),
        Refresh(token="a.b.c"),
        Refreshed(expires_at=1_800_000_000, unsubscribed=("topics",), count=2),
        TokenExpiring(expires_at=1_800_000_000),
    )
}


#: Arbitrary JSON values (what a hostile or buggy peer may send).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | ints | floats | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
