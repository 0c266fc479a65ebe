"""A publish's encoding in steps (sans-IO): the snapshot's dicts in pieces, the hub's
prepare and commit, and the compressed variants built ahead of the fan-out."""

from __future__ import annotations

import weakref
from collections.abc import Generator
from typing import Any, TypeVar

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import group_events, topic_events
from strategies import metrics as metrics_strategy
from takhin_ws._exceptions import HubClosedError, LocalProtocolError, RemoteProtocolError
from takhin_ws.core.access.permissions import Permissions
from takhin_ws.core.encoding import (
    METRICS_LISTS,
    PIECE_WEIGHT,
    complete,
    decode_steps,
    encode_published,
    encode_snapshot,
    metrics_data_steps,
    metrics_head,
    release_steps,
    weight,
)
from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.core.metrics.snapshot import Snapshot
from takhin_ws.core.metrics.views import metrics_data, metrics_envelope
from takhin_ws.wire.codec import decode, encode
from takhin_ws.wire.messages import (
    ConsumerLag,
    Envelope,
    MonitoringMetrics,
    PartitionLag,
    Payload,
    TopicCreated,
    TopicLag,
    TopicStats,
)
from takhin_ws.wire.websocket.deflate import inflate
from takhin_ws.wire.websocket.frames import Outbound, Variant

T = TypeVar("T")

DEFLATE = Variant(window_bits=15)
SMALL_WINDOW = Variant(window_bits=10)


def stats(name: str) -> TopicStats:
    return TopicStats(
        name=name, partitions=1, total_messages=1, total_bytes=1, produce_rate=0.0, fetch_rate=0.0
    )


def lag(group: str, topics: int, partitions: int) -> ConsumerLag:
    parts = tuple(
        PartitionLag(partition=p, current_offset=0, log_end_offset=p, lag=p)
        for p in range(partitions)
    )
    per = tuple(TopicLag(topic=f"t{t}", total_lag=0, partition_lags=parts) for t in range(topics))
    return ConsumerLag(group_id=group, total_lag=0, topic_lags=per)


def cluster(topics: int, groups: int, partitions: int) -> MonitoringMetrics:
    return MonitoringMetrics(
        topic_stats=tuple(stats(f"t{t}") for t in range(topics)),
        consumer_lags=tuple(lag(f"g{g}", 2, partitions) for g in range(groups)),
        timestamp=7,
    )


def run(steps: Generator[None, None, T]) -> tuple[T, int]:
    """Drive a generator of steps: (its result, how many times it yielded)."""
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result, yields
        yields += 1


def drain(sub: QueueSubscriber) -> list[Outbound]:
    return sub.queue.get_batch_nowait() if sub.queue else []


def twins(**kwargs: object) -> tuple[Hub, Hub]:
    """Two hubs that encode the same message into the same bytes."""
    return tuple(  # type: ignore[return-value]
        Hub(epoch="e1", wall_clock=lambda: 1_700_000_000.0, **kwargs)  # type: ignore[arg-type]
        for _ in range(2)
    )


# --- the data dict in pieces ---


@settings(max_examples=150, deadline=None)
@given(metrics_strategy, st.integers(min_value=1, max_value=40))
def test_the_data_in_pieces_is_the_data_whole(m: MonitoringMetrics, piece: int) -> None:
    built, yields = run(metrics_data_steps(m, piece))
    whole = metrics_data(m)
    assert built.data == whole
    assert orjson.dumps(built.data) == orjson.dumps(whole)  # the key order too
    assert built.lists == {key: orjson.dumps(whole[key]) for key in METRICS_LISTS}
    total = sum(weight(item) for _, (name, _) in METRICS_LISTS.items() for item in getattr(m, name))
    assert yields <= total // piece


def test_a_piece_closes_once_it_reaches_its_weight() -> None:
    m = cluster(topics=10, groups=3, partitions=4)  # a lag weighs 1 + 2 x (1 + 4) = 11
    assert run(metrics_data_steps(m, 1))[1] == 13  # one yield after every item
    assert run(metrics_data_steps(m, 5))[1] == 2 + 3  # topics: 5 and 5; each lag alone
    assert run(metrics_data_steps(m, 11))[1] == 3  # the topics' 10 do not reach 11
    assert run(metrics_data_steps(m, 1000))[1] == 0
    assert run(metrics_data_steps(m))[1] == 0  # 43 objects: far under PIECE_WEIGHT
    big = cluster(topics=PIECE_WEIGHT * 2, groups=0, partitions=0)
    assert run(metrics_data_steps(big))[1] == 2


def test_weight_counts_every_object_an_item_holds() -> None:
    assert weight(stats("a")) == 1
    assert weight(lag("g", 3, 5)) == 1 + 3 * (1 + 5)
    assert weight(lag("g", 0, 5)) == 1
    assert weight("a plain value") == 1


def test_the_head_has_every_list_empty_in_its_place() -> None:
    m = cluster(topics=2, groups=1, partitions=1)
    head = metrics_head(m)
    assert list(head) == list(metrics_data(m))
    assert all(head[key] == [] for key in METRICS_LISTS)
    assert set(METRICS_LISTS) == {"topicStats", "consumerLags"}


# --- prepare and commit ---


def test_prepare_changes_nothing_and_commit_publishes_the_same_bytes() -> None:
    hub, twin = twins()
    sub, other = QueueSubscriber(), QueueSubscriber()
    hub.add_client(sub, ["metrics"])
    twin.add_client(other, ["metrics"])
    m = cluster(topics=3, groups=2, partitions=2)
    prepared = hub.prepare("metrics", m, stale=False)
    assert (hub.offset("metrics"), hub.statistics().published, len(sub.queue)) == (0, 0, 0)
    assert hub.latest("metrics") is None
    assert (prepared.stream, prepared.offset, prepared.epoch) == ("metrics", 1, "e1")
    item = hub.commit(prepared)
    assert item is prepared.item
    assert item.frame == twin.publish("metrics", m, stale=False).frame
    assert drain(sub) == [item]
    assert hub.offset("metrics") == 1
    assert hub.latest("metrics") is item


def test_a_prepared_snapshot_keeps_its_data_and_envelope() -> None:
    hub = Hub()
    m = cluster(topics=2, groups=1, partitions=1)
    data, _ = run(metrics_data_steps(m))
    prepared = hub.prepare("metrics", m, data=data)
    assert prepared.data is data
    assert prepared.decoded is not None
    assert prepared.decoded["data"] is data.data
    assert orjson.loads(prepared.item.payload) == prepared.decoded
    event = hub.prepare("topics", TopicCreated(name="orders", partitions=1))
    assert (event.decoded, event.data, event.channel) == (None, None, "topics")


def test_a_prepared_publish_whose_offset_was_taken_is_encoded_again() -> None:
    hub = Hub(epoch="e1")
    sub = QueueSubscriber()
    hub.add_client(sub, ["metrics"])
    first, second = cluster(1, 0, 0), cluster(2, 0, 0)
    prepared = hub.prepare("metrics", second)
    hub.publish("metrics", first)  # took offset 1 meanwhile
    got = [orjson.loads(i.payload) for i in drain(sub)]  # (a snapshot supersedes one queued)
    item = hub.commit(prepared)
    assert item is not prepared.item
    got += [orjson.loads(i.payload) for i in drain(sub)]
    assert [g["offset"] for g in got] == [1, 2]
    assert [len(g["data"]["topicStats"]) for g in got] == [1, 2]


def test_a_prepared_publish_of_an_old_epoch_is_encoded_in_the_new_one() -> None:
    hub = Hub(epoch="e1")
    prepared = hub.prepare("topics", TopicCreated(name="orders", partitions=1))
    hub.reset("e2")
    item = hub.commit(prepared)
    assert orjson.loads(item.payload)["epoch"] == "e2"
    assert (item.offset, hub.offset("topics")) == (1, 1)


def test_a_closed_hub_neither_prepares_nor_commits() -> None:
    hub = Hub()
    prepared = hub.prepare("metrics", cluster(1, 0, 0))
    hub.close()
    with pytest.raises(HubClosedError):
        hub.commit(prepared)
    with pytest.raises(HubClosedError):
        hub.prepare("metrics", cluster(1, 0, 0))
    assert hub.offset("metrics") == 0
    with pytest.raises(ValueError, match="view of metrics"):
        Hub().prepare("metrics:lean", cluster(1, 0, 0))


# --- views and compressed variants, ahead of the fan-out ---


def test_the_variants_are_those_of_the_unrestricted_subscribers() -> None:
    hub = Hub()
    hub.add_client(QueueSubscriber(), ["metrics"], variant=DEFLATE)
    hub.add_client(QueueSubscriber(), ["topic:orders"], variant=SMALL_WINDOW)
    hub.add_client(QueueSubscriber(), ["metrics:lean"], variant=SMALL_WINDOW)
    restricted = Permissions(["metrics", "topics"])
    hub.add_client(
        QueueSubscriber(), ["metrics"], variant=Variant(window_bits=9), permissions=restricted
    )
    snapshot = hub.prepare("metrics", cluster(1, 0, 0))
    assert snapshot.variants == {None: {DEFLATE}, "metrics:lean": {SMALL_WINDOW}}
    event = hub.prepare("topic:orders", TopicCreated(name="orders", partitions=1))
    assert event.variants == {None: {SMALL_WINDOW}}  # no subscriber of topics itself
    assert Hub().prepare("metrics", cluster(1, 0, 0)).variants == {None: frozenset()}


def test_views_and_compression_built_ahead_are_what_the_clients_receive() -> None:
    hub = Hub()
    full, lean, plain = QueueSubscriber(), QueueSubscriber(), QueueSubscriber()
    hub.add_client(full, ["metrics"], variant=DEFLATE)
    hub.add_client(lean, ["metrics:lean"], variant=DEFLATE)
    hub.add_client(plain, ["metrics:lean"])
    m = cluster(topics=30, groups=4, partitions=8)
    prepared = hub.prepare("metrics", m)
    assert prepared.views == {}
    prepared.build_views()
    view = prepared.views["metrics:lean"]
    assert (view.route, view.offset) == ("metrics:lean", 1)
    assert prepared.compress_size() == len(prepared.item.payload) + len(view.payload)
    prepared.compress()
    ahead = (prepared.item.variant(DEFLATE), view.variant(DEFLATE))
    hub.commit(prepared)
    assert drain(full) == [ahead[0]]
    assert drain(full) == []
    (got,) = drain(lean)
    assert got is ahead[1]
    assert drain(plain) == [view]
    assert inflate(got.frame[4:], 1 << 20) == view.payload
    lean_data = orjson.loads(view.payload)["data"]
    assert all(t["partitionLags"] == [] for c in lean_data["consumerLags"] for t in c["topicLags"])


def test_nothing_is_compressed_ahead_without_a_compressing_subscriber() -> None:
    hub = Hub()
    hub.add_client(QueueSubscriber(), ["metrics", "metrics:lean"])
    small = Variant(window_bits=15, min_size=1 << 30)  # the message is under its minimum
    hub.add_client(QueueSubscriber(), ["metrics"], variant=small)
    prepared = hub.prepare("metrics", cluster(3, 1, 1))
    prepared.build_views()
    assert prepared.compress_size() == 0
    prepared.compress()
    assert prepared.item._variants is None  # nothing built
    event = hub.prepare("topics", TopicCreated(name="orders", partitions=1))
    event.build_views()
    assert event.views == {}


def test_without_lean_subscribers_no_view_is_built_ahead() -> None:
    hub = Hub()
    hub.add_client(QueueSubscriber(), ["metrics"], variant=DEFLATE)
    prepared = hub.prepare("metrics", cluster(3, 1, 1))
    prepared.build_views()
    assert prepared.views == {}
    assert prepared.compress_size() == len(prepared.item.payload)


def test_a_prepared_snapshot_is_attrs_frozen_but_for_its_views() -> None:
    prepared = Hub().prepare("metrics", cluster(1, 0, 0))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        prepared.offset = 2  # type: ignore[misc]


# --- decoding in steps ---


def failure(raw: bytes, steps: bool) -> tuple[str, str, str | None]:
    """(code, message, path) of the error decoding *raw* whole or in steps."""
    with pytest.raises(RemoteProtocolError) as caught:
        run(decode_steps(raw, piece=1)) if steps else decode(raw)
    return caught.value.code, caught.value.message, caught.value.path


@settings(max_examples=150, deadline=None)
@given(st.one_of(metrics_strategy, topic_events, group_events), st.none() | st.booleans())
def test_decoding_in_steps_gives_the_envelope_decoding_whole_gives(
    payload: Payload, stale: bool | None
) -> None:
    try:
        raw = encode(Envelope(payload=payload, timestamp=5, channel="x", offset=3, stale=stale))
    except LocalProtocolError:
        return  # an int beyond 64 bits: not a message anyone sends
    envelope, yields = run(decode_steps(raw, piece=3))
    assert envelope == decode(raw)
    assert yields >= 1  # the JSON parsed, then the rest


def test_a_big_snapshot_decodes_in_pieces() -> None:
    raw = encode(Envelope(payload=cluster(topics=40, groups=6, partitions=4), timestamp=1))
    whole, yields = run(decode_steps(raw, piece=10))
    assert whole == decode(raw)
    assert yields == 1 + 4 + 6  # parsed; 40 topics in 4 pieces; each lag weighs 11
    assert run(decode_steps(raw))[1] == 1


@pytest.mark.parametrize(
    "defect",
    [
        ("topicStats", 2, "partitions", "many"),
        ("consumerLags", 1, "totalLag", None),
        ("consumerLags", 0, "surprise", 1),
    ],
)
def test_a_defect_in_a_list_is_reported_as_decoding_whole_reports_it(
    defect: tuple[str, int, str, object],
) -> None:
    key, index, field, value = defect
    obj = orjson.loads(encode(Envelope(payload=cluster(3, 2, 1), timestamp=1)))
    obj["data"][key][index][field] = value
    raw = orjson.dumps(obj)
    code, message, path = failure(raw, steps=True)
    assert (code, message, path) == failure(raw, steps=False)
    assert code == "invalid_field"
    assert path is not None
    assert path.startswith(f"$.data.{key}[{index}]")


@pytest.mark.parametrize(
    "raw",
    [
        b"{nope",
        b"[]",
        b'{"type":"metrics","timestamp":1}',
        b'{"type":"metrics","data":{"topicStats":{}},"timestamp":1}',
        b'{"type":"metrics","data":[],"timestamp":1}',
        b'{"type":"nope","timestamp":1}',
        b'{"type":"metrics","data":{"topicStats":[],"consumerLags":[]},"timestamp":"x"}',
        b'{"type":"metrics","data":{"topicStats":[{}]},"timestamp":1,"extra":1}',
    ],
)
def test_a_bad_message_fails_in_steps_as_it_fails_whole(raw: bytes) -> None:
    assert failure(raw, steps=True) == failure(raw, steps=False)


def test_decoding_in_steps_accepts_what_it_is_told_to() -> None:
    raw = encode(Envelope(payload=cluster(2, 1, 1), timestamp=1))
    with pytest.raises(RemoteProtocolError, match="unknown message type 'metrics'"):
        run(decode_steps(raw, accept=frozenset({"topic_created"})))


# --- the edges of steps, variants and delivery ---


@pytest.mark.parametrize(("topics", "yields"), [(9, 0), (10, 1), (19, 1), (20, 2), (29, 2)])
def test_a_piece_is_exactly_its_weight(topics: int, yields: int) -> None:
    m = cluster(topics=topics, groups=0, partitions=0)
    assert run(metrics_data_steps(m, 10))[1] == yields
    raw = encode(Envelope(payload=m, timestamp=1))
    assert run(decode_steps(raw, piece=10))[1] == 1 + yields  # the parse, then the pieces


def test_decoding_an_event_in_steps_accepts_only_what_it_is_told_to() -> None:
    raw = encode(Envelope(payload=TopicCreated(name="orders", partitions=1), timestamp=1))
    with pytest.raises(RemoteProtocolError, match="unknown message type 'topic_created'"):
        run(decode_steps(raw, accept=frozenset({"metrics"})))


def test_stale_is_kept_and_encoded_again_with_the_next_offset() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, ["metrics", "topics"])
    event = TopicCreated(name="orders", partitions=1)
    assert hub.prepare("topics", event, stale=True).stale is True
    prepared = hub.prepare("metrics", cluster(1, 0, 0), stale=True)
    assert prepared.stale is True
    hub.publish("metrics", cluster(2, 0, 0))
    drain(sub)
    item = hub.commit(prepared)  # offset 1 was taken: encoded again, still stale
    assert orjson.loads(item.payload)["stale"] is True
    assert item.offset == 2


def test_the_message_and_its_view_are_compressed_in_their_own_variants() -> None:
    hub = Hub()
    hub.add_client(QueueSubscriber(), ["metrics"], variant=DEFLATE)
    hub.add_client(QueueSubscriber(), ["metrics:lean"], variant=SMALL_WINDOW)
    prepared = hub.prepare("metrics", cluster(5, 1, 2))
    prepared.build_views()
    prepared.compress()
    view = prepared.views["metrics:lean"]
    assert set(prepared.item._variants or ()) == {DEFLATE}
    assert set(view._variants or ()) == {SMALL_WINDOW}


def test_a_message_of_exactly_the_minimum_size_is_compressed() -> None:
    hub = Hub()
    size = len(hub.prepare("metrics", cluster(3, 0, 0)).item.payload)
    hub.add_client(QueueSubscriber(), ["metrics"], variant=Variant(window_bits=15, min_size=size))
    assert hub.prepare("metrics", cluster(3, 0, 0)).compress_size() == size
    over = Variant(window_bits=15, min_size=size + 1)
    hub.add_client(QueueSubscriber(), ["metrics"], variant=over)
    assert hub.prepare("metrics", cluster(3, 0, 0)).compress_size() == size


def test_a_message_encoded_without_variants_has_nothing_to_compress() -> None:
    prepared = encode_published(
        cluster(2, 0, 0),
        "metrics",
        stream="metrics",
        offset=1,
        timestamp=1,
        epoch="e",
        stale=None,
    )
    prepared.build_views()
    assert (prepared.compress_size(), prepared.views) == (0, {})
    prepared.compress()
    assert prepared.item._variants is None


def test_a_narrow_publish_is_prepared_for_its_channel_and_its_stream() -> None:
    hub = Hub()
    hub.add_client(QueueSubscriber(), ["topics"], variant=Variant(window_bits=9))
    hub.add_client(QueueSubscriber(), ["topic:orders"], variant=SMALL_WINDOW)
    prepared = hub.prepare("topic:orders", TopicCreated(name="orders", partitions=1))
    assert prepared.variants == {None: {Variant(window_bits=9), SMALL_WINDOW}}


def test_a_prepared_delivery_keeps_the_offset_and_timestamp_it_is_given() -> None:
    hub = Hub(wall_clock=lambda: 5.0)
    prepared = hub.prepare("metrics", cluster(1, 0, 0), offset=7, timestamp=123)
    assert prepared.offset == 7
    decoded = orjson.loads(prepared.item.payload)
    assert (decoded["offset"], decoded["timestamp"]) == (7, 123)
    default = hub.prepare("metrics", cluster(1, 0, 0))
    assert (default.offset, orjson.loads(default.item.payload)["timestamp"]) == (1, 5)


def test_a_delivered_prepared_snapshot_reaches_clients_as_built_ahead() -> None:
    node = Hub(epoch="shared")
    full, lean = QueueSubscriber(), QueueSubscriber()
    node.add_client(full, ["metrics"], variant=DEFLATE)
    node.add_client(lean, ["metrics:lean"], variant=DEFLATE)
    prepared = node.prepare("metrics", cluster(4, 2, 3), offset=9, timestamp=1)
    prepared.build_views()
    prepared.compress()
    ahead = (prepared.item.variant(DEFLATE), prepared.views["metrics:lean"].variant(DEFLATE))
    node.deliver("metrics", prepared)
    assert drain(full) == [ahead[0]]
    (got,) = drain(lean)
    assert got is ahead[1]
    assert node.offset("metrics") == 9
    assert node.latest("metrics") is prepared.item


def test_a_narrow_publish_counts_each_delivery() -> None:
    hub = Hub()
    for channels in (["topic:orders"], ["topic:orders"], ["topics"], ["topics", "topic:orders"]):
        hub.add_client(QueueSubscriber(), channels)
    hub.publish_event(TopicCreated(name="orders", partitions=1))
    assert hub.statistics().delivered == 4


def test_a_closed_hub_says_so() -> None:
    hub = Hub()
    prepared = hub.prepare("metrics", cluster(1, 0, 0))
    hub.close()
    with pytest.raises(HubClosedError, match=r"^hub is closed$"):
        hub.commit(prepared)


@settings(max_examples=150, deadline=None)
@given(
    metrics_strategy,
    st.integers(min_value=1, max_value=40),
    st.none() | st.booleans(),
    st.none() | st.integers(min_value=1, max_value=2**40),
)
def test_a_snapshot_encoded_from_its_lists_is_dumped_whole(
    m: MonitoringMetrics, piece: int, stale: bool | None, offset: int | None
) -> None:
    try:
        built, _ = run(metrics_data_steps(m, piece))
    except LocalProtocolError:
        return  # an int beyond 64 bits: not a message anyone sends
    envelope = metrics_envelope(
        built.data, timestamp=3, channel="metrics", offset=offset, epoch="e", stale=stale
    )
    assert encode_snapshot(envelope, built.lists) == orjson.dumps(envelope)


def test_a_value_json_cannot_carry_is_refused_in_its_piece() -> None:
    m = cluster(topics=3, groups=0, partitions=0)
    huge = attrs.evolve(m.topic_stats[1], total_messages=2**64)
    m = attrs.evolve(m, topic_stats=(m.topic_stats[0], huge, m.topic_stats[2]))
    with pytest.raises(LocalProtocolError, match="cannot encode metrics") as caught:
        run(metrics_data_steps(m, 1))
    assert caught.value.code == "invalid_field"


# --- letting go in steps ---


def test_a_snapshot_is_let_go_of_in_pieces() -> None:
    m = cluster(topics=20, groups=6, partitions=3)  # topics weigh 1, a lag 1 + 2 x (1 + 3)
    kept = m.consumer_lags[0]  # still held elsewhere: stays as it is
    gone = weakref.ref(m.consumer_lags[5])
    topic = weakref.ref(m.topic_stats[0])
    garbage: list[Any] = [Snapshot(metrics=m, groups={}), None]
    del m
    steps = release_steps(garbage, piece=10)
    assert garbage  # nothing happens before the first step
    next(steps)
    assert garbage == []
    assert gone() is None  # the lags go first (the last items first), a piece a step
    _, yields = run(steps)
    assert 1 + yields == 3 + 2  # a yield after every second lag, every tenth topic
    assert topic() is None
    assert kept.group_id == "g0"


def test_a_decoded_envelope_is_let_go_of_in_pieces() -> None:
    hub = Hub()
    first = hub.prepare("metrics", cluster(10, 4, 2))
    hub.commit(first)
    assert first.garbage == []  # nothing before it
    second = hub.prepare(
        "metrics", cluster(10, 4, 2), data=run(metrics_data_steps(cluster(10, 4, 2)))[0]
    )
    hub.commit(second)
    assert second.garbage == [first.decoded]  # what its commit replaced
    _, yields = run(release_steps(second.garbage, piece=5))
    assert second.garbage == []
    assert yields == 4 + 2  # a lag (1 + 2 x (1 + 2 dicts)) is over 5 alone; 10 topics
    assert run(release_steps(["not a snapshot", {"data": []}], piece=1))[1] == 0


def test_every_root_is_let_go_of_a_piece_at_a_time() -> None:
    garbage: list[Any] = [cluster(topics=9, groups=0, partitions=0) for _ in range(2)]
    assert run(release_steps(garbage, piece=10))[1] == 1  # 18 objects: one whole piece
    garbage = [cluster(topics=19, groups=0, partitions=0)]
    assert run(release_steps(garbage, piece=10))[1] == 1  # the 19th closes no piece


def test_complete_runs_the_steps_to_what_they_give() -> None:
    m = cluster(topics=30, groups=2, partitions=4)
    assert complete(metrics_data_steps(m, 5)) == run(metrics_data_steps(m, 5))[0]
    raw = encode(Envelope(payload=m, timestamp=1))
    assert complete(decode_steps(raw, piece=5)) == decode(raw)
