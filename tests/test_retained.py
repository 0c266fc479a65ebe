"""Retained messages cost their frames: the history ring (``core/history``)."""

from __future__ import annotations

import gc
import tracemalloc
from collections import deque

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from takhin_ws.core.history import RECENT_WHOLE, ArrayQueue, RetainedFrames, StreamHistory
from takhin_ws.core.hub import Hub
from takhin_ws.wire.messages import TopicCreated
from takhin_ws.wire.websocket.frames import Outbound

#: The ceiling of the issue: a retained event costs at most twice its JSON.
MAX_BYTES_PER_JSON_BYTE = 2.0
#: Events measured: enough that the newest kept whole (RECENT_WHOLE) weigh little.
RETAINED_COUNT = 10_000

# names a route can carry: plain, non-ASCII, and ones JSON escapes (a quote, a
# backslash: the frame then does not hold the name's bytes as they are)
names = st.text(alphabet=st.sampled_from('ab.-_9é€"\\/'), min_size=1, max_size=12).filter(
    lambda n: not n.isspace()
)
routes = st.one_of(
    st.none(),
    st.just("topics"),
    names.map(lambda n: f"topic:{n}"),
    names.map(lambda n: f"group:{n}"),
    names.map(lambda n: f"metrics:topic:{n}"),  # no prefix the locator knows
)
channels = st.sampled_from(["topics", "topics", "topics", "groups", None])


def message(offset: int, channel: str | None, route: str | None, extra: str = "") -> Outbound:
    """A message whose JSON carries its route's name (as events carry theirs)."""
    name = "" if route is None else route.partition(":")[2]
    payload = orjson.dumps({"type": "x", "data": {"name": name, "more": extra}})
    return Outbound.of(payload, channel, offset, route)


@given(
    items=st.lists(st.tuples(channels, routes, st.text(max_size=300)), max_size=30),
    first=st.integers(min_value=1, max_value=2**40),
    dropped=st.integers(min_value=0, max_value=30),
)
def test_frames_rebuild_every_message_exactly(
    items: list[tuple[str | None, str | None, str]], first: int, dropped: int
) -> None:
    retained = RetainedFrames("topics")
    kept = [message(first + n, *fields) for n, fields in enumerate(items)]
    for item in kept:
        retained.append(item)
    dropped = min(dropped, len(kept))
    for _ in range(dropped):
        retained.popleft()
    rebuilt = list(retained.items(0, len(retained)))
    assert rebuilt == kept[dropped:]
    assert [(m.channel, m.offset, m.route, m.frame) for m in rebuilt] == [
        (m.channel, m.offset, m.route, m.frame) for m in kept[dropped:]
    ]
    if rebuilt:
        assert retained.item(-1) == kept[-1]
        assert retained.first == first + dropped
    assert retained.next_offset == first + len(kept) or not rebuilt


def test_frames_refuse_a_hole_or_no_offset() -> None:
    retained = RetainedFrames("topics")
    retained.append(message(5, "topics", "topics"))
    retained.append(message(6, "topics", "topics"))
    with pytest.raises(ValueError, match=r"^offset 8 does not follow 6$"):
        retained.append(message(8, "topics", "topics"))
    with pytest.raises(ValueError, match=r"^a retained message carries an offset$"):
        retained.append(message(6, "topics", "topics").__class__(b"\x81\x00"))
    assert list(retained.items(0, 9)) == [message(n, "topics", "topics") for n in (5, 6)]


@given(
    items=st.lists(st.tuples(channels, routes), min_size=1, max_size=20),
    dropped=st.integers(min_value=0, max_value=5),
    start=st.integers(min_value=0, max_value=20),
    stop=st.integers(min_value=0, max_value=25),
)
def test_frames_rebuild_any_run_of_messages(
    items: list[tuple[str | None, str | None]], dropped: int, start: int, stop: int
) -> None:
    """``items(start, stop)`` is that slice of what is kept, each message whole."""
    retained = RetainedFrames("topics")
    kept = [message(10 + n, *fields) for n, fields in enumerate(items)]
    for item in kept:
        retained.append(item)
    dropped = min(dropped, len(kept) - 1)
    for _ in range(dropped):
        retained.popleft()
    rebuilt = list(retained.items(start, stop))
    expected = kept[dropped:][start:stop]
    assert [(m.channel, m.offset, m.route, m.frame) for m in rebuilt] == [
        (m.channel, m.offset, m.route, m.frame) for m in expected
    ]


def test_a_name_too_long_for_a_locator_is_kept_aside_exactly() -> None:
    """A route whose name has more bytes than a locator can count is still rebuilt."""
    retained = RetainedFrames("topics")
    kept = [message(1, "topics", "topic:" + "a" * 70_000), message(2, "topics", "topic:b")]
    for item in kept:
        retained.append(item)
    assert [m.route for m in retained.items(0, 2)] == [m.route for m in kept]


def test_an_array_queue_holds_memory_for_what_it_holds() -> None:
    """tracemalloc: values passing through a short FIFO leave nothing behind (the
    taken prefix is cut off, not kept)."""
    queue = ArrayQueue("q")
    for n in range(RECENT_WHOLE):  # a window of values held throughout
        queue.append(n)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(RETAINED_COUNT):
            queue.append(n)
            queue.popleft()
        per_value = (tracemalloc.get_traced_memory()[0] - before) / RETAINED_COUNT
    finally:
        tracemalloc.stop()
    assert len(queue) == RECENT_WHOLE
    assert per_value < LEFT_BEHIND_PER_EVENT, per_value


def test_a_history_offset_out_of_turn_starts_the_ring_again() -> None:
    """An offset that does not follow the last one (a hole) forgets what came before:
    no replay crosses the hole, and the ring goes on from the new offset."""
    history = StreamHistory("topics", 10, None, lambda: 0.0)
    for offset in (1, 2, 3, 7, 8):
        history.offset = offset
        history.append(message(offset, "topics", "topics"))
    assert history.replay(6) == [message(n, "topics", "topics") for n in (7, 8)]
    assert history.replay(2) is None


def test_the_frame_is_shared_not_copied() -> None:
    retained = RetainedFrames("topics")
    item = message(1, "topics", "topic:orders")
    retained.append(item)
    assert retained.item(0).frame is item.frame


@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()), max_size=200))
def test_array_queue_is_a_fifo(operations: list[int | None]) -> None:
    """``None`` pops, a number appends: the same as a deque."""
    ours, model = ArrayQueue("q"), deque[int]()
    for operation in operations:
        if operation is None:
            if model:
                assert ours.popleft() == model.popleft()
            else:
                with pytest.raises(IndexError, match=r"^pop from an empty ArrayQueue$"):
                    ours.popleft()
        else:
            ours.append(operation)
            model.append(operation)
        assert len(ours) == len(model)
        assert [ours[i] for i in range(len(ours))] == list(model)


class ModelHistory:
    """The history as it was, one object per message: the oracle."""

    def __init__(self, keep: int, ttl: float | None) -> None:
        self.keep, self.ttl = keep, ttl
        self.offset = 0
        self.items: deque[tuple[float, Outbound]] = deque()

    def append(self, item: Outbound, now: float) -> None:
        if self.keep == 0:
            return
        last = self.items[-1][1].offset if self.items else None
        if item.offset is None or last is None or item.offset != last + 1:
            self.items.clear()
        if item.offset is not None:  # (one without cannot be resumed from)
            self.items.append((now, item))
        while len(self.items) > self.keep:
            self.items.popleft()

    def replay(self, after: int, now: float) -> list[Outbound] | None:
        if after < 0 or after > self.offset:
            return None
        if after == self.offset:
            return []
        if self.ttl is not None:
            while self.items and self.items[0][0] < now - self.ttl:
                self.items.popleft()
        items = [item for _, item in self.items]
        if not items or items[0].offset is None or items[0].offset > after + 1:
            return None
        return items[after + 1 - items[0].offset :]


class HistoryMachine(RuleBasedStateMachine):
    """Any run of publishes, bus deliveries with holes, offset-less items, clears and
    time: the compact ring replays exactly what the object-per-message one did."""

    @initialize(
        keep=st.sampled_from([0, 1, 3, RECENT_WHOLE + 2]),
        ttl=st.sampled_from([None, 5.0]),
    )
    def start(self, keep: int, ttl: float | None) -> None:
        self.now = 0.0
        self.ours = StreamHistory("topics", keep, ttl, lambda: self.now)
        self.model = ModelHistory(keep, ttl)

    @rule(route=routes, extra=st.text(max_size=20), count=st.sampled_from([1, 2, RECENT_WHOLE + 5]))
    def publish(self, route: str | None, extra: str, count: int) -> None:
        for _ in range(count):
            self.ours.offset += 1
            self.model.offset = self.ours.offset
            item = message(self.ours.offset, "topics", route, extra)
            self.ours.append(item)
            self.model.append(item, self.now)

    @rule(skip=st.integers(0, 3), route=routes)
    def deliver(self, skip: int, route: str | None) -> None:
        item = message(self.ours.offset + 1 + skip, "topics", route)
        self.ours.advance(item)
        self.ours.append(item)
        if self.model.offset + 1 != item.offset:
            self.model.items.clear()
        self.model.offset = self.ours.offset
        self.model.append(item, self.now)

    @rule()
    def without_offset(self) -> None:
        item = message(0, "topics", None)
        item = Outbound(item.frame, "topics", None, None)
        self.ours.append(item)
        self.model.append(item, self.now)

    @precondition(lambda self: self.ours.offset > 0)
    @rule()
    def clear(self) -> None:
        self.ours.clear()
        self.model.offset = 0
        self.model.items.clear()

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule(back=st.one_of(st.integers(-1, 4), st.integers(-1, RECENT_WHOLE + 10)))
    def replay(self, back: int) -> None:
        after = self.ours.offset - back
        assert self.ours.replay(after) == self.model.replay(after, self.now)

    @invariant()
    def latest(self) -> None:
        # (both expire with a TTL when asked to replay, not before)
        expected = self.model.items[-1][1] if self.model.items else None
        assert self.ours.latest() == expected


TestHistoryMachine = HistoryMachine.TestCase
TestHistoryMachine.settings = settings(max_examples=120, stateful_step_count=30, deadline=None)


def test_a_short_resume_replays_the_published_objects() -> None:
    """The newest messages are replayed as the very objects published (the variants
    built of them, a compressed frame, are shared by every resuming client); older
    ones are rebuilt equal."""
    hub = Hub(history_size=RECENT_WHOLE * 2)
    items = [hub.publish_event(TopicCreated(name=f"t{n}", partitions=1)) for n in range(400)]
    replay = hub.replay("topics", 0, hub.epoch)
    assert replay == items
    assert all(a is b for a, b in zip(replay[-RECENT_WHOLE:], items[-RECENT_WHOLE:], strict=True))
    assert hub.latest("topics") is items[-1]


def test_a_resume_from_anywhere_in_a_long_history_replays_the_rest() -> None:
    """From any offset of a history longer than the part kept whole, the replay is
    every later message in order: rebuilt from frames, then the whole ones."""
    hub = Hub(history_size=RECENT_WHOLE * 2)
    items = [hub.publish_event(TopicCreated(name=f"t{n}", partitions=1)) for n in range(400)]
    for after in range(0, len(items) + 1):
        assert hub.replay("topics", after, hub.epoch) == items[after:]


def test_a_retained_event_costs_at_most_twice_its_json() -> None:
    """tracemalloc: 10,000 ``topic_created`` events (~100 bytes of JSON each, among the
    smallest events) kept for resume cost at most twice their JSON each: the frame
    and 8 bytes, no Outbound, offset or route object per event, nothing left in
    caches by channels nobody follows."""
    hub = Hub(history_size=RETAINED_COUNT)
    for n in range(RECENT_WHOLE):  # the ring's own blocks and caches, warmed
        hub.publish_event(TopicCreated(name=f"warm-up-{n:07d}", partitions=3))
    gc.collect()
    json_bytes = 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(RETAINED_COUNT):
            item = hub.publish_event(TopicCreated(name=f"retained-{n:07d}", partitions=3))
            json_bytes += len(item.payload)
        del item
        gc.collect()
        per_event = (tracemalloc.get_traced_memory()[0] - before) / RETAINED_COUNT
    finally:
        tracemalloc.stop()
    size = json_bytes / RETAINED_COUNT
    assert per_event <= MAX_BYTES_PER_JSON_BYTE * size, (per_event, size)
    replay = hub.replay("topics", hub.offset("topics") - RETAINED_COUNT, hub.epoch)
    assert replay is not None
    assert len(replay) == RETAINED_COUNT
    assert orjson.loads(replay[0].payload)["data"]["name"] == "retained-0000000"
    assert replay[0].route == "topic:retained-0000000"


def test_a_publish_nobody_follows_leaves_nothing_behind() -> None:
    """tracemalloc, without history: events of 10,000 topics nobody follows leave no
    per-channel trace (no cached empty fan-out group per ``topic:<name>``)."""
    hub = Hub(history_size=0)
    for n in range(RECENT_WHOLE):
        hub.publish_event(TopicCreated(name=f"warm-up-{n:07d}", partitions=3))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(RETAINED_COUNT):
            hub.publish_event(TopicCreated(name=f"passing-{n:07d}", partitions=3))
        gc.collect()
        per_event = (tracemalloc.get_traced_memory()[0] - before) / RETAINED_COUNT
    finally:
        tracemalloc.stop()
    assert per_event < LEFT_BEHIND_PER_EVENT, per_event


#: Bytes an event may leave behind on average once published and gone (the hub's
#: counters and the allocator's own rounding: well under one object per event).
LEFT_BEHIND_PER_EVENT = 1.0
