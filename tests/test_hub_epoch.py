"""An epoch change under live clients (sans-IO): ``Hub.reset`` tells every client.

When a bus loses its offsets (Redis restarted empty) the node starts a new epoch with
``Hub.reset``. Every registered client, whatever it subscribes to, is then offered one
``epoch`` message, the same object for all (encoded once), before any message of the
new epoch, and it survives a full queue. The Redis end of it is in
``test_redis_bus.py`` and ``test_cluster.py``.
"""

from __future__ import annotations

import itertools

import orjson
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import (
    EpochChanged,
    GroupCreated,
    MonitoringMetrics,
    Payload,
    TopicCreated,
)
from takhin_ws.wire.websocket.frames import BARE, Variant

NOW = 1_767_225_600


def topic(name: str) -> TopicCreated:
    return TopicCreated(name=name, partitions=1)


def hub() -> Hub:
    return Hub(epoch="e1", history_size=10, wall_clock=lambda: NOW + 0.5)


def test_every_client_is_told_once_with_the_same_message() -> None:
    h = hub()
    subs = {name: QueueSubscriber() for name in ("all", "metrics", "narrow", "none")}
    h.add_client(subs["all"])
    h.add_client(subs["metrics"], ["metrics"])
    h.add_client(subs["narrow"], ["topic:orders"])
    h.add_client(subs["none"], [])
    h.publish("topic:orders", topic("orders"))
    for sub in subs.values():
        sub.queue.get_batch_nowait()
    h.reset("e2")
    notices = {name: sub.queue.get_batch_nowait() for name, sub in subs.items()}
    assert all(len(got) == 1 for got in notices.values())
    notice = notices["all"][0]
    assert all(got[0] is notice for got in notices.values())  # encoded once, for everyone
    assert (notice.channel, notice.offset, notice.route) == (None, None, None)
    assert orjson.loads(notice.payload) == {
        "type": "epoch",
        "data": {"epoch": "e2", "previous": "e1", "recovered": {"topics": False, "groups": False}},
        "timestamp": NOW,
    }
    assert decode(notice.payload).payload == EpochChanged(
        epoch="e2", previous="e1", recovered={"topics": False, "groups": False}
    )
    assert notice.frame.endswith(notice.payload)


def test_the_notice_comes_before_the_new_epochs_first_message() -> None:
    h = hub()
    sub = QueueSubscriber()
    h.add_client(sub)
    h.publish("topics", topic("old"))
    h.reset("e2")
    h.publish("topics", topic("new"))
    h.publish("metrics", MonitoringMetrics(), stale=False)
    got = [decode(item.payload) for item in sub.queue.get_batch_nowait()]
    assert [(e.type, e.offset, e.epoch) for e in got] == [
        ("topic_created", 1, "e1"),
        ("epoch", None, None),
        ("topic_created", 1, "e2"),
        ("metrics", 1, "e2"),
    ]


def test_no_notice_without_a_change_or_without_clients() -> None:
    h = hub()
    h.reset("e2")  # nobody to tell (a bus adopting Redis's epoch before serving)
    sub = QueueSubscriber()
    h.add_client(sub)
    h.publish("topics", topic("a"))
    h.reset("e2")  # same epoch: history forgotten, nothing to announce
    assert [i.offset for i in sub.queue.get_batch_nowait()] == [1]
    assert h.offset("topics") == 0
    assert h.replay("topics", 0, "e2") == []


def test_a_bare_client_is_not_told_and_a_compressing_one_in_its_variant() -> None:
    h = hub()
    plain, bare, deflating = QueueSubscriber(), QueueSubscriber(), QueueSubscriber()
    h.add_client(plain)
    h.add_client(bare, ["metrics"], variant=BARE)
    h.add_client(deflating, variant=Variant(window_bits=15, min_size=0))
    h.reset("e2")
    assert len(bare.queue) == 0  # format=bare: metrics and nothing else
    (notice,) = plain.queue.get_batch_nowait()
    (compressed,) = deflating.queue.get_batch_nowait()
    assert compressed is notice.variant(Variant(window_bits=15, min_size=0))  # built once
    assert compressed.frame != notice.frame
    assert compressed.payload == notice.payload


def test_a_client_that_left_is_not_told() -> None:
    h = hub()
    stay, leave = QueueSubscriber(), QueueSubscriber()
    h.add_client(stay)
    h.remove_client(h.add_client(leave))
    h.reset("e2")
    assert len(stay.queue) == 1
    assert len(leave.queue) == 0


def test_a_backed_up_client_keeps_the_notice_when_its_queue_overflows() -> None:
    h = hub()
    sub = QueueSubscriber(capacity=4)
    h.add_client(sub, ["topics"])
    for n in range(3):
        h.publish("topics", topic(f"old{n}"))
    h.reset("e2")
    for n in range(6):  # far more than the queue holds: the oldest events go
        h.publish("topics", topic(f"new{n}"))
    queued = sub.queue.get_batch_nowait()
    assert [decode(i.payload).type for i in queued] == ["epoch"] + ["topic_created"] * 3
    assert [i.offset for i in queued[1:]] == [4, 5, 6]
    drops = sub.queue.take_drops()
    assert sum(d.count for d in drops) == 6  # every lost event is counted (for `gap`)


# --- the invariant, for any sequence of publishes and resets ---

operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(["topics", "topic:a", "groups", "metrics"])),
        st.tuples(st.just("reset"), st.just("")),  # to a new epoch each time
    ),
    max_size=30,
)


@given(operations, st.sampled_from([None, ["topics"], ["topic:a"], ["metrics"], []]))
def test_a_client_never_sees_an_epoch_change_unannounced(
    ops: list[tuple[str, str]], channels: list[str] | None
) -> None:
    h = hub()
    sub = QueueSubscriber(capacity=1000)
    h.add_client(sub, channels)
    payloads: dict[str, Payload] = {
        "topics": topic("a"),
        "topic:a": topic("a"),
        "groups": GroupCreated(group_id="g", state="Empty", members=0),
        "metrics": MonitoringMetrics(),
    }
    epochs = (f"e{n}" for n in itertools.count(2))
    for kind, arg in ops:
        if kind == "reset":
            h.reset(next(epochs))
        else:
            h.publish(arg, payloads[arg])
    current = "e1"
    last: dict[tuple[str, str | None], int] = {}
    for item in sub.queue.get_batch_nowait():
        envelope = decode(item.payload)
        if isinstance(envelope.payload, EpochChanged):
            assert envelope.payload.previous == current != envelope.payload.epoch
            current = envelope.payload.epoch
            continue
        assert envelope.epoch == current  # never a message of an unannounced epoch
        assert envelope.offset is not None
        key = (current, envelope.channel)
        assert envelope.offset > last.get(key, 0)  # within an epoch, offsets only grow
        last[key] = envelope.offset
    assert current == h.epoch
