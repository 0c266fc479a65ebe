"""The drop-oldest queue: a model-based state machine, then its Trio waiting behaviour.

Overflow drops the oldest *message* (an item with an offset, which ``gap`` can report
and resume can recover); items without one (per-client replies) are skipped over and
go only when the queue holds nothing else. State items (a ``state_key``) are conflated:
the newest replaces the pending one of its key in place, outside the capacity.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest
import trio
import trio.testing
from attrs import frozen
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from takhin_ws.core.queue import DEFAULT_QUEUE_SIZE, Drop, DropOldestQueue

#: bound on every wait below: a reader that is never woken fails the test, never hangs it
GUARD = 5


@frozen
class Item:
    channel: str | None
    offset: int | None
    uid: int
    state_key: str | None = None


_uids = itertools.count()


def item(channel: str | None = "topics", offset: int | None = None) -> Item:
    return Item(channel, offset, next(_uids))


def state(key: str = "metrics", offset: int = 1) -> Item:
    """A snapshot (or a view of one) of the ``metrics`` stream."""
    return Item("metrics", offset, next(_uids), key)


class QueueMachine(RuleBasedStateMachine):
    """Compare :class:`DropOldestQueue` with a deque and a dictionary of drop ranges."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: DropOldestQueue[Item] = DropOldestQueue(1)
        self.capacity = 1
        self.model: deque[Item] = deque()
        self.drops: dict[str, list[int]] = {}  # channel -> [first, last, count]
        self.closed = False
        self.next_offset: dict[str, int] = {}
        self.put: list[Item] = []
        self.delivered: list[Item] = []
        self.dropped: list[Item] = []
        self.cleared: list[Item] = []
        self.superseded: list[Item] = []
        self.peak = 0

    @initialize(capacity=st.integers(min_value=1, max_value=6))
    def create(self, capacity: int) -> None:
        self.queue = DropOldestQueue(capacity)
        self.capacity = capacity

    @rule(
        channel=st.sampled_from(["metrics", "topics", "groups", None]),
        step=st.integers(min_value=1, max_value=3),
        with_offset=st.booleans(),
    )
    def put_nowait(self, channel: str | None, step: int, with_offset: bool) -> None:
        offset: int | None = None
        if channel is not None and with_offset:
            offset = self.next_offset.get(channel, 0) + step
            self.next_offset[channel] = offset
        new = item(channel, offset)
        if self.closed:
            with pytest.raises(trio.ClosedResourceError):
                self.queue.put_nowait(new)
            return
        self.queue.put_nowait(new)
        self.put.append(new)
        events = [i for i in self.model if i.state_key is None]
        if len(events) == self.capacity:
            # the oldest message (an item with an offset); replies go only when alone
            lost = next((i for i in events if i.offset is not None), events[0])
            self.model.remove(lost)
            self.dropped.append(lost)
            if lost.channel is not None and lost.offset is not None:
                drop = self.drops.setdefault(lost.channel, [lost.offset, lost.offset, 0])
                drop[1] = lost.offset
                drop[2] += 1
        self.model.append(new)
        self.peak = max(self.peak, len(self.model))

    @rule(key=st.sampled_from(["metrics", "metrics:lean"]))
    def put_state(self, key: str) -> None:
        offset = self.next_offset.get("metrics", 0) + 1
        self.next_offset["metrics"] = offset
        new = state(key, offset)
        if self.closed:
            with pytest.raises(trio.ClosedResourceError):
                self.queue.put_nowait(new)
            return
        self.queue.put_nowait(new)
        self.put.append(new)
        pending = [n for n, i in enumerate(self.model) if i.state_key == key]
        if pending:  # latest wins, in place
            self.superseded.append(self.model[pending[0]])
            self.model[pending[0]] = new
        else:
            self.model.append(new)
        self.peak = max(self.peak, len(self.model))

    @rule()
    def get_nowait(self) -> None:
        if not self.model:
            expected = trio.EndOfChannel if self.closed else trio.WouldBlock
            with pytest.raises(expected):
                self.queue.get_nowait()
            return
        got = self.queue.get_nowait()
        assert got == self.model.popleft()
        self.delivered.append(got)

    @rule()
    def get_batch_nowait(self) -> None:
        if not self.model and self.closed:
            with pytest.raises(trio.EndOfChannel):
                self.queue.get_batch_nowait()
            return
        batch = self.queue.get_batch_nowait()
        assert batch == list(self.model)
        self.delivered.extend(batch)
        self.model.clear()

    @rule()
    def take_drops(self) -> None:
        assert self.queue.has_drops == bool(self.drops)
        taken = self.queue.take_drops()
        assert len(taken) == len({d.channel for d in taken})  # one range per channel
        assert {d.channel: d for d in taken} == {
            channel: Drop(channel, first, last, count)
            for channel, (first, last, count) in self.drops.items()
        }
        self.drops.clear()
        assert not self.queue.has_drops
        assert self.queue.take_drops() == []

    @rule()
    def clear(self) -> None:
        assert self.queue.clear() == len(self.model)
        self.cleared.extend(self.model)
        self.model.clear()

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.queue.close()
        self.closed = True

    @invariant()
    def bounded_and_in_step(self) -> None:
        assert len(self.queue) == len(self.model)
        keys = [i.state_key for i in self.model if i.state_key is not None]
        assert len(self.model) - len(keys) <= self.capacity
        assert len(keys) == len(set(keys))  # at most one pending per state channel
        assert bool(self.queue) == bool(self.model)
        assert self.queue.closed == self.closed
        stats = self.queue.statistics()
        assert stats.size == len(self.model)
        assert stats.capacity == self.capacity
        assert stats.put_total == len(self.put)
        assert stats.dropped_total == len(self.dropped)
        assert stats.peak_size == self.peak
        assert stats.closed == self.closed
        assert stats.conflated_total == len(self.superseded)

    @invariant()
    def every_item_accounted_for_once(self) -> None:
        fates = [*self.delivered, *self.dropped, *self.cleared, *self.superseded, *self.model]
        assert sorted(i.uid for i in fates) == sorted(i.uid for i in self.put)
        assert len({i.uid for i in fates}) == len(fates)
        # FIFO: the events delivered came out in the order they were put; a state
        # item takes over its predecessor's place, so only its own key is ordered
        order = {i.uid: n for n, i in enumerate(self.put)}
        for key in (None, "metrics", "metrics:lean"):
            delivered = [order[i.uid] for i in self.delivered if i.state_key == key]
            assert delivered == sorted(delivered)


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --- conflation: any interleaving of events and snapshots ---

_EVENT_CHANNELS = ("topics", "groups")
_STATE_KEYS = ("metrics", "metrics:lean", "metrics:group:billing")
_actions = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.sampled_from(_EVENT_CHANNELS)),
        st.tuples(st.just("state"), st.sampled_from(_STATE_KEYS)),
        st.tuples(st.just("read"), st.integers(min_value=1, max_value=4)),
        st.tuples(st.just("drain"), st.just("")),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(min_value=1, max_value=6), actions=_actions)
def test_any_interleaving_keeps_every_event_or_reports_it_and_the_latest_state(
    capacity: int, actions: list[tuple[str, object]]
) -> None:
    """For any interleaving of events, snapshots and reads: the queue hands over every
    event not reported as lost (by ``take_drops``), in the order put, and at most one
    snapshot per state channel at a time, the latest (a snapshot is never lost)."""
    q: DropOldestQueue[Item] = DropOldestQueue(capacity)
    put: list[Item] = []
    received: list[Item] = []
    lost: dict[str, set[int]] = {ch: set() for ch in _EVENT_CHANNELS}
    offsets = dict.fromkeys((*_EVENT_CHANNELS, "metrics"), 0)

    def note_drops() -> None:
        for drop in q.take_drops():
            span = set(range(drop.first_offset, drop.last_offset + 1))
            assert len(span) == drop.count  # the range is exactly what went
            assert not span & lost[drop.channel]
            lost[drop.channel] |= span

    def take(batch: list[Item]) -> None:
        keys = [i.state_key for i in batch if i.state_key is not None]
        assert len(keys) == len(set(keys))  # never two pending of one state channel
        received.extend(batch)

    for kind, arg in actions:
        if kind == "event":
            assert isinstance(arg, str)
            offsets[arg] += 1
            new = item(arg, offsets[arg])
        elif kind == "state":
            assert isinstance(arg, str)
            offsets["metrics"] += 1
            new = state(arg, offsets["metrics"])
        else:
            note_drops()  # before the reads, as the transport writes a gap first
            if kind == "read":
                assert isinstance(arg, int)
                take([q.get_nowait() for _ in range(min(arg, len(q)))])
            else:
                take(q.get_batch_nowait())
            continue
        q.put_nowait(new)
        put.append(new)
        events_pending = len(q) - len({i.state_key for i in put if i.state_key})
        assert events_pending <= capacity
    note_drops()
    take(q.get_batch_nowait())

    order = {i.uid: n for n, i in enumerate(put)}
    got_events = [i for i in received if i.state_key is None]
    assert [order[i.uid] for i in got_events] == sorted(order[i.uid] for i in got_events)
    for channel in _EVENT_CHANNELS:
        sent = {i.offset for i in put if i.channel == channel}
        got = [i.offset for i in got_events if i.channel == channel]
        assert len(got) == len(set(got))
        assert set(got).isdisjoint(lost[channel])
        assert set(got) | lost[channel] == sent
    for key in _STATE_KEYS:
        mine = [i for i in put if i.state_key == key]
        got_states = [i.offset or 0 for i in received if i.state_key == key]
        assert got_states == sorted(got_states)
        if mine:  # the latest is always delivered, last
            assert got_states[-1] == mine[-1].offset


def test_a_snapshot_replaces_the_pending_one_in_place() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    e1, s1, e2, s2, lean, e3 = (
        item("topics", 1),
        state("metrics", 1),
        item("topics", 2),
        state("metrics", 2),
        state("metrics:lean", 2),
        item("topics", 3),
    )
    for i in (e1, s1, e2, s2, lean, e3):
        q.put_nowait(i)
    assert q.get_batch_nowait() == [e1, s2, e2, lean, e3]
    assert q.statistics().conflated_total == 1
    assert q.statistics().dropped_total == 0
    # taken: the next snapshot queues afresh, at the end
    q.put_nowait(e1)
    q.put_nowait(s1)
    assert q.get_nowait() == e1
    assert q.get_nowait() == s1


def test_state_is_outside_the_capacity_and_never_dropped() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(2)
    snapshot = state("metrics", 1)
    q.put_nowait(snapshot)
    events = [item("topics", n) for n in range(1, 5)]
    for e in events:
        q.put_nowait(e)
    assert len(q) == 3  # two events and the snapshot
    assert q.get_batch_nowait() == [snapshot, *events[2:]]
    assert q.take_drops() == [Drop("topics", 1, 2, 2)]


def test_discard_state_takes_every_pending_snapshot_and_keeps_the_rest_in_order() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    e1, snapshot, e2, lean, reply = (
        item("topics", 1),
        state("metrics", 1),
        item("topics", 2),
        state("metrics:lean", 1),
        item(None, None),
    )
    for i in (e1, state("metrics", 0), snapshot, e2, lean, reply):
        q.put_nowait(i)
    assert q.statistics().conflated_total == 1  # the first snapshot, replaced
    assert q.discard_state() == 2
    assert len(q) == 3
    stats = q.statistics()
    assert (stats.conflated_total, stats.dropped_total) == (3, 0)  # added to the count
    assert q.take_drops() == []
    # a snapshot put afterwards queues afresh, behind what is pending
    newer = state("metrics", 2)
    q.put_nowait(newer)
    assert q.get_batch_nowait() == [e1, e2, reply, newer]


def test_discard_state_of_a_queue_of_state_only_leaves_it_empty() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(2)
    q.put_nowait(state("metrics", 1))
    q.put_nowait(state("metrics:lean", 1))
    assert q.discard_state() == 2
    assert len(q) == 0
    assert q.get_batch_nowait() == []
    q.put_nowait(only := state("metrics", 2))
    assert q.get_batch_nowait() == [only]
    assert q.statistics().conflated_total == 2


def test_discard_state_without_state_changes_nothing() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(2)
    assert q.discard_state() == 0
    e1 = item("topics", 1)
    q.put_nowait(e1)
    assert q.discard_state() == 0
    assert q.statistics().conflated_total == 0
    assert q.get_batch_nowait() == [e1]


def test_overflow_with_only_replies_and_state_drops_the_oldest_reply() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(1)
    snapshot, r1, r2 = state("metrics", 1), item(None, None), item(None, None)
    for i in (snapshot, r1, r2):
        q.put_nowait(i)
    assert q.get_batch_nowait() == [snapshot, r2]
    assert q.statistics().dropped_total == 1


# --- direct examples ---


def test_capacity_validation() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"^capacity must be at least 1$"):
            DropOldestQueue[Item](bad)
    assert DropOldestQueue[Item](1).capacity == 1
    assert DropOldestQueue[Item]().capacity == DEFAULT_QUEUE_SIZE == 256


def test_overflow_drops_oldest_and_reports_range() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(3)
    items = [item("topics", n) for n in range(1, 7)]
    for i in items:
        q.put_nowait(i)
    assert q.get_batch_nowait() == items[3:]
    assert q.take_drops() == [Drop("topics", 1, 3, 3)]
    assert q.take_drops() == []
    stats = q.statistics()
    assert (stats.put_total, stats.dropped_total, stats.peak_size, stats.size) == (6, 3, 3, 0)


def test_overflow_skips_replies_and_drops_the_oldest_message() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(3)
    m1, reply, m2, m3, m4 = (
        item("topics", 1),
        item(None, None),
        item("topics", 2),
        item("groups", 1),
        item("topics", 3),
    )
    for i in (m1, reply, m2, m3, m4):
        q.put_nowait(i)
    assert q.get_batch_nowait() == [reply, m3, m4]  # m1 and m2 went, in that order
    assert q.take_drops() == [Drop("topics", 1, 2, 2)]


def test_drops_without_offset_are_counted_but_not_ranged() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(1)
    q.put_nowait(item(None, None))  # a per-client reply
    q.put_nowait(item("topics", None))
    q.put_nowait(item("groups", 9))
    assert q.statistics().dropped_total == 2
    assert not q.has_drops
    q.put_nowait(item("groups", 10))
    assert q.take_drops() == [Drop("groups", 9, 9, 1)]


def test_clear_is_not_a_drop() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    for n in range(3):
        q.put_nowait(item("topics", n))
    assert q.clear() == 3
    assert len(q) == 0
    assert q.statistics().dropped_total == 0
    assert q.take_drops() == []


def test_closed_queue_refuses_puts_and_drains() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    a, b = item(), item()
    q.put_nowait(a)
    q.put_nowait(b)
    q.close()
    with pytest.raises(trio.ClosedResourceError, match=r"^queue is closed$"):
        q.put_nowait(item())
    assert q.get_nowait() == a
    assert q.get_batch_nowait() == [b]
    with pytest.raises(trio.EndOfChannel):
        q.get_nowait()
    with pytest.raises(trio.EndOfChannel):
        q.get_batch_nowait()


def test_empty_open_queue() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(2)
    with pytest.raises(trio.WouldBlock):
        q.get_nowait()
    assert q.get_batch_nowait() == []


# --- waiting (Trio) ---


async def test_get_waits_and_wakes_on_put() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    got: list[Item] = []

    async def reader() -> None:
        got.append(await q.get())

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # parked: nothing to read yet
            first = item()
            q.put_nowait(first)
    assert got == [first]
    assert len(q) == 0


async def test_get_returns_at_once_when_pending() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    a, b = item(), item()
    q.put_nowait(a)
    q.put_nowait(b)
    with trio.fail_after(GUARD):
        assert await q.get() == a
        assert await q.get() == b


async def test_get_batch_waits_then_takes_everything_pending() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    batches: list[list[Item]] = []

    async def reader() -> None:
        batches.append(await q.get_batch())

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert batches == []
            items = [item() for _ in range(3)]
            for i in items:  # no checkpoint in between: the reader sees all three
                q.put_nowait(i)
    assert batches == [items]


async def test_get_batch_respects_capacity_while_reader_sleeps() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(2)
    batches: list[list[Item]] = []

    async def reader() -> None:
        batches.append(await q.get_batch())

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            items = [item("topics", n) for n in range(1, 6)]
            for i in items:
                q.put_nowait(i)
    assert batches == [items[-2:]]
    assert q.take_drops() == [Drop("topics", 1, 3, 3)]


async def test_close_wakes_waiting_reader_with_end_of_channel() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    outcomes: list[str] = []

    async def reader() -> None:
        try:
            await q.get()
        except trio.EndOfChannel:
            outcomes.append("end")

    async def batch_reader() -> None:
        try:
            await q.get_batch()
        except trio.EndOfChannel:
            outcomes.append("batch end")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(batch_reader)
            await trio.testing.wait_all_tasks_blocked()
            assert outcomes == []
            q.close()
    assert sorted(outcomes) == ["batch end", "end"]


async def test_close_lets_reader_drain_pending_items_first() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    items = [item() for _ in range(3)]
    for i in items:
        q.put_nowait(i)
    q.close()
    with trio.fail_after(GUARD):
        got = [await q.get() for _ in items]
        assert got == items
        with pytest.raises(trio.EndOfChannel):
            await q.get()
        with pytest.raises(trio.EndOfChannel):
            await q.get_batch()


async def test_close_after_items_reader_gets_items_then_end() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    got: list[list[Item] | str] = []

    async def reader() -> None:
        try:
            while True:
                got.append(await q.get_batch())
        except trio.EndOfChannel:
            got.append("end")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            a, b = item(), item()
            q.put_nowait(a)
            q.put_nowait(b)
            q.close()
    assert got == [[a, b], "end"]


async def test_two_readers_each_get_one() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    got: list[Item] = []

    async def reader() -> None:
        got.append(await q.get())

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            a = item()
            q.put_nowait(a)
            await trio.testing.wait_all_tasks_blocked()
            assert got == [a]
            b = item()
            q.put_nowait(b)
    assert got == [a, b]


async def test_cancelled_get_loses_nothing() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    with trio.CancelScope() as scope:
        scope.cancel()
        await q.get()
    assert scope.cancelled_caught
    a = item()
    q.put_nowait(a)
    with trio.CancelScope() as scope:
        scope.cancel()
        await q.get()  # cancelled before it takes anything
    assert scope.cancelled_caught
    assert len(q) == 1

    async def parked_reader(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as inner:
            task_status.started(inner)
            await q.get_batch()
            raise AssertionError("unreachable: cancelled while parked")

    q.get_nowait()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            inner = await nursery.start(parked_reader)
            await trio.testing.wait_all_tasks_blocked()
            inner.cancel()
    b = item()
    q.put_nowait(b)
    assert q.get_nowait() == b


async def test_get_and_get_batch_are_checkpoints_when_items_are_pending() -> None:
    # A writer that always finds something pending must still let other tasks run and
    # see its cancellation: both calls are full Trio checkpoints, not only the park.
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    a, b, c = item(), item(), item()
    for i in (a, b, c):
        q.put_nowait(i)
    with trio.fail_after(GUARD):
        with trio.testing.assert_checkpoints():
            assert await q.get() == a
        with trio.testing.assert_checkpoints():
            assert await q.get_batch() == [b, c]
        q.put_nowait(a)
        q.close()
        with trio.testing.assert_checkpoints():
            assert await q.get_batch() == [a]


async def test_cancelled_get_batch_takes_nothing() -> None:
    q: DropOldestQueue[Item] = DropOldestQueue(4)
    a, b = item(), item()
    q.put_nowait(a)
    q.put_nowait(b)
    with trio.CancelScope() as scope:
        scope.cancel()
        await q.get_batch()
    assert scope.cancelled_caught
    assert q.get_batch_nowait() == [a, b]


async def test_wait_takes_nothing_and_wakes_on_put_or_close() -> None:
    """``wait`` returns once something is pending (or the queue closed) and leaves it
    there, so the reader takes the item and the drops before it in one step."""
    q: DropOldestQueue[Item] = DropOldestQueue(2)
    woke: list[int] = []

    async def waiter() -> None:
        await q.wait()
        woke.append(len(q))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []  # parked
            for offset in (1, 2, 3):  # the third drops the first
                q.put_nowait(item(offset=offset))
        assert woke == [2]  # nothing taken
        assert q.take_drops()[0].count == 1
        with trio.testing.assert_checkpoints():
            await q.wait()  # pending: returns at once, still a checkpoint
        q.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            q.close()
        assert woke == [2, 0]
