"""OutboundBuffer without a socket: write order, the gap, batching, conflation, the
closing state and partial sends, as the bytes a peer would read.

The tests play the transport: they write what :meth:`OutboundBuffer.next_chunk`
returns (all of it, or as much as a pretend kernel takes) and report it with
:meth:`OutboundBuffer.sent`, and take the write-through path themselves while the
buffer is idle. What came out is parsed back into frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server_frames import frames, payloads
from takhin_ws.core.outbuffer import MAX_BATCH_BYTES, OutboundBuffer
from takhin_ws.core.queue import Drop
from takhin_ws.wire.gaps import gap_frames, gap_payloads
from takhin_ws.wire.websocket.frames import Outbound, close_frame, ping_frame, text_frame

BIG = 1024 * 1024


def item(payload: bytes, offset: int | None = None) -> Outbound:
    return Outbound.of(payload, "topics" if offset is not None else None, offset)


def snapshot(n: int) -> Outbound:
    return Outbound.of(b"s%d" % n, "metrics", n, "metrics")


def fake_gaps(drops: Sequence[Drop]) -> bytes:
    return b"".join(
        text_frame(orjson.dumps({"gap": [d.first_offset, d.last_offset, d.count]})) for d in drops
    )


def write(buf: OutboundBuffer, item: Outbound, take: int | None = None) -> bytes:
    """What the transport's ``offer`` does: write through while idle (the kernel
    taking *take* bytes, all by default), else hand the item to the buffer."""
    if not buf.idle:
        buf.offer(item)
        return b""
    frame = item.frame
    sent = len(frame) if take is None else min(take, len(frame))
    if sent < len(frame):
        buf.started(frame, sent)
    return frame[:sent]


def drain(buf: OutboundBuffer, limit: int | None = None) -> bytes:
    """Write chunks until nothing is pending (or *limit* bytes are out)."""
    out = bytearray()
    while limit is None or len(out) < limit:
        chunk = buf.next_chunk()
        if chunk is None:
            break
        n = len(chunk) if limit is None else min(len(chunk), limit - len(out))
        out += chunk[:n]
        buf.sent(n)
    return bytes(out)


# --- idle, and the write-through path ---


def test_a_fresh_buffer_is_idle_and_a_frame_written_through_leaves_it_so() -> None:
    buf = OutboundBuffer()
    assert (buf.idle, buf.pending, buf.closing) == (True, False, False)
    assert write(buf, item(b"a")) == text_frame(b"a")
    assert buf.idle  # the whole frame was taken: nothing was handed over
    assert buf.next_chunk() is None


def test_a_frame_the_kernel_took_part_of_is_finished_first() -> None:
    buf = OutboundBuffer()
    big = item(b"B" * BIG)
    head = write(buf, big, take=1000)
    assert (buf.idle, buf.pending) == (False, True)
    queued = [item(b"q%d" % i) for i in range(3)]
    for it in queued:
        write(buf, it)
    buf.add_control(ping_frame(b"hb"))
    assert frames(head + drain(buf)) == [
        (0x1, big.payload),  # completed first: a frame is never interleaved
        (0x9, b"hb"),
        *((0x1, it.payload) for it in queued),
    ]
    assert (buf.idle, buf.pending) == (True, False)


def test_sent_reports_partial_writes_and_the_end_of_a_control_chunk() -> None:
    buf = OutboundBuffer()
    first = buf.add_control(b"HTTP/1.1 101 ...")
    second = buf.add_control(ping_frame(b"p"))
    assert (first, second) == (1, 2)
    chunk = buf.next_chunk()
    assert chunk == b"HTTP/1.1 101 ..."
    assert buf.sent(4) is False  # part of it
    assert bytes(buf.next_chunk() or b"") == b"/1.1 101 ..."  # the rest, nothing else
    assert buf.control_done == 0
    assert buf.sent(len(b"/1.1 101 ...")) is True  # the whole first control chunk is out
    assert buf.control_done == first
    assert buf.next_chunk() == ping_frame(b"p")
    assert buf.sent(len(ping_frame(b"p"))) is True
    assert buf.control_done == second
    assert buf.next_chunk() is None
    assert buf.idle


def test_a_data_chunk_completing_is_not_a_control_chunk() -> None:
    buf = OutboundBuffer()
    write(buf, item(b"x" * 100), take=10)
    chunk = buf.next_chunk()
    assert chunk is not None
    assert buf.sent(len(chunk)) is False
    assert buf.control_done == 0


def test_a_queued_data_chunk_completing_is_not_a_control_chunk() -> None:
    """Neither on a fresh buffer nor after a control chunk went out whole: only a
    control chunk's end moves :attr:`control_done`."""
    fresh = OutboundBuffer()
    fresh.offer(item(b"d", 1))
    chunk = fresh.next_chunk()
    assert chunk is not None
    assert fresh.sent(len(chunk)) is False
    assert fresh.control_done == 0
    buf = OutboundBuffer()
    done = buf.add_control(b"HTTP/1.1 101 ...")
    buf.offer(item(b"d", 1))
    assert buf.sent(len(buf.next_chunk() or b"")) is True
    assert buf.control_done == done
    data = buf.next_chunk()
    assert data is not None
    assert data != b"HTTP/1.1 101 ..."
    assert buf.sent(len(data)) is False
    assert buf.control_done == done


# --- batching ---


def test_a_control_chunk_waits_only_for_data_already_taken() -> None:
    """Queued data goes out in chunks of at most MAX_BATCH_BYTES (a frame of that size
    or more alone); a control chunk goes right after the chunk being written, at a
    frame boundary, ahead of the rest of the queue."""
    buf = OutboundBuffer(queue_size=1000)
    first = item(b"F" * BIG)
    out = write(buf, first, take=0)
    queued = [item(b"%04d" % i + b"x" * 1000) for i in range(600)]
    for it in queued:
        write(buf, it)
    out += drain(buf, limit=len(first.frame) + 10)  # into the first batch
    taken = len(queued) - len(buf.queue)
    assert 0 < taken < len(queued)
    assert sum(len(it.frame) for it in queued[: taken - 1]) < MAX_BATCH_BYTES
    buf.add_control(ping_frame(b"now"))
    got = frames(out + drain(buf))
    assert got.index((0x9, b"now")) == 1 + taken
    assert [p for op, p in got if op == 0x1] == [first.payload, *(it.payload for it in queued)]


def test_a_frame_of_a_batch_or_more_goes_alone() -> None:
    buf = OutboundBuffer()
    write(buf, item(b"a"), take=0)
    big, small = item(b"b" * MAX_BATCH_BYTES), item(b"c")
    write(buf, big)
    write(buf, small)
    assert buf.next_chunk() == memoryview(text_frame(b"a"))
    buf.sent(len(text_frame(b"a")))
    assert buf.next_chunk() == big.frame
    buf.sent(len(big.frame))
    assert buf.next_chunk() == small.frame


# --- the drop-oldest queue and its gap ---


def test_overflow_drops_the_oldest_and_writes_a_gap_first() -> None:
    calls: list[list[Drop]] = []

    def gaps(drops: Sequence[Drop]) -> bytes:
        calls.append(list(drops))
        return fake_gaps(drops)

    buf = OutboundBuffer(queue_size=4, gaps=gaps)
    big = item(b"B" * BIG, offset=1)
    out = write(buf, big, take=100)
    for offset in range(2, 12):
        write(buf, item(b"m%d" % offset, offset))
    assert len(buf.queue) == 4
    buf.add_control(ping_frame(b"never dropped"))
    assert payloads(out + drain(buf)) == [
        big.payload,
        b"never dropped",
        b'{"gap":[2,7,6]}',
        b"m8",
        b"m9",
        b"m10",
        b"m11",
    ]
    assert calls == [[Drop("topics", 2, 7, 6)]]


def test_without_gaps_a_loss_goes_unsaid() -> None:
    def gaps(drops: Sequence[Drop]) -> bytes:
        raise AssertionError("no gap may be asked for")

    buf = OutboundBuffer(queue_size=2, gaps=gaps)
    buf.without_gaps()
    out = write(buf, item(b"B" * BIG, 1), take=0)
    for offset in range(2, 6):
        write(buf, item(b"m%d" % offset, offset))
    assert payloads(out + drain(buf)) == [b"B" * BIG, b"m4", b"m5"]


def test_a_backlogged_peer_gets_the_latest_snapshot_and_every_event() -> None:
    """Snapshots are state: a stalled peer's backlog holds one per channel, the
    latest, in the place of the first; events stay in order and are never conflated."""
    buf = OutboundBuffer(queue_size=4)
    big = item(b"B" * BIG, offset=1)
    out = write(buf, big, take=0)
    snapshots = [snapshot(n) for n in range(1, 50)]
    events = [item(b"e%d" % n, n) for n in range(2, 5)]
    write(buf, snapshots[0])
    write(buf, events[0])
    for s in snapshots[1:-1]:
        write(buf, s)
    write(buf, events[1])
    write(buf, snapshots[-1])
    write(buf, events[2])
    assert len(buf.queue) == 4  # one snapshot, three events
    assert payloads(out + drain(buf)) == [big.payload, b"s49", b"e2", b"e3", b"e4"]
    assert buf.queue.statistics().conflated_total == 48
    assert buf.queue.statistics().dropped_total == 0


# --- closing ---


def test_no_data_frame_follows_a_close_frame() -> None:
    """Not queued data, not a late offer, not even the ``gap`` owed for dropped data."""
    buf = OutboundBuffer(queue_size=2, gaps=lambda drops: text_frame(b"gap"))
    big = item(b"B" * BIG, offset=1)
    out = write(buf, big, take=10)
    for offset in range(2, 6):
        write(buf, item(b"m%d" % offset, offset))  # two of them dropped: a gap is owed
    buf.begin_closing()
    assert not buf.queue  # queued data discarded
    close = close_frame(1001, "bye")
    buf.add_control(close)
    write(buf, item(b"too late", 6))  # ignored
    assert not buf.queue
    assert frames(out + drain(buf)) == [(0x1, big.payload), (0x8, close[2:])]
    assert not buf.idle  # closing: nothing may be written through either
    write(buf, item(b"still too late", 7))
    assert buf.next_chunk() is None


def test_a_close_frame_added_as_control_starts_closing() -> None:
    """Whoever writes a Close frame (``send_all`` of a library, the session) through
    the control path: the bytes are recognised, and queued data goes."""
    buf = OutboundBuffer()
    out = write(buf, item(b"B" * BIG), take=0)
    write(buf, item(b"queued"))
    buf.add_control(ping_frame(b"not a close"))
    before = buf.closing
    close = close_frame(1000)
    buf.add_control(close)
    assert (before, buf.closing) == (False, True)
    assert not buf.queue
    assert frames(out + drain(buf)) == [(0x1, b"B" * BIG), (0x9, b"not a close"), (0x8, close[2:])]


def test_an_http_answer_does_not_start_closing() -> None:
    buf = OutboundBuffer()
    buf.add_control(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert not buf.closing


def test_close_forgets_everything() -> None:
    buf = OutboundBuffer()
    write(buf, item(b"B" * BIG), take=10)
    write(buf, item(b"queued"))
    buf.add_control(ping_frame(b"p"))
    buf.close()
    assert (buf.pending, buf.idle, buf.closing, buf.queue.closed) == (False, False, True, True)
    assert buf.next_chunk() is None
    write(buf, item(b"after"))  # ignored, never raises
    assert not buf.pending


# --- the gap encoder (wire) ---


def test_gap_frames_are_one_gap_message_per_drop() -> None:
    data = gap_frames([Drop("topics", 3, 5, 3), Drop("groups", 1, 1, 1)], clock=lambda: 1234.9)
    gaps = [orjson.loads(payload) for payload in payloads(data)]
    assert gaps == [
        {
            "type": "gap",
            "data": {"channel": "topics", "firstOffset": 3, "lastOffset": 5, "count": 3},
            "timestamp": 1234,
        },
        {
            "type": "gap",
            "data": {"channel": "groups", "firstOffset": 1, "lastOffset": 1, "count": 1},
            "timestamp": 1234,
        },
    ]
    assert gap_frames([]) == b""
    assert gap_payloads([Drop("topics", 1, 1, 1)], clock=lambda: 7) == [
        b'{"type":"gap","data":{"channel":"topics","firstOffset":1,"lastOffset":1,"count":1},'
        b'"timestamp":7}'
    ]


# --- invariants, for any interleaving ---

_TAKES = st.sampled_from([0.0, 0.01, 0.5, 0.99, 1.0])
_SIZES = st.sampled_from([0, 50, 30_000])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("event"), _TAKES, _SIZES),
        st.tuples(st.just("snapshot"), _TAKES, _SIZES),
        st.tuples(st.just("reply"), _TAKES, st.just(0)),
        st.tuples(st.just("control"), _TAKES, st.just(0)),
        st.tuples(st.just("write"), _TAKES, st.just(0)),
        st.tuples(st.just("close"), _TAKES, st.just(0)),
        st.tuples(st.just("begin_closing"), _TAKES, st.just(0)),
    ),
    max_size=60,
)


class Model:
    """The buffer driven as the transport drives it, and what it was asked to carry."""

    def __init__(self, capacity: int) -> None:
        self.buf = OutboundBuffer(queue_size=capacity, gaps=gap_frames)
        self.out = bytearray()
        self.events = 0  # offsets 1..events were offered before closing
        self.snapshots = 0
        self.last_snapshot = 0  # the last snapshot offered before closing
        self.replies = 0
        self.controls: list[bytes] = []
        #: data frames taken (written through, or in a chunk begun) when each control came
        self.taken_at_control: list[int] = []
        self.taken = 0
        self.chunk_done = True  # the next chunk ``next_chunk`` returns is a new one

    def offer(self, kind: str, take: float, size: int) -> None:
        pad = b"." * size
        if kind == "event":
            self.events += not self.buf.closing
            it = item(b"e%d|" % self.events + pad, self.events)
        elif kind == "snapshot":
            self.snapshots += 1
            it = Outbound.of(b"s%d|" % self.snapshots + pad, "metrics", self.snapshots, "metrics")
            if not self.buf.closing:
                self.last_snapshot = self.snapshots
        else:
            self.replies += 1
            it = item(b"r%d|" % self.replies)
        through = self.buf.idle
        self.taken += through
        self.out += write(self.buf, it, int(len(it.frame) * take))
        if through and not self.buf.idle:
            self.chunk_done = False  # the kernel took part of it: the rest comes next

    def control(self, data: bytes) -> None:
        self.controls.append(data)
        self.taken_at_control.append(self.taken)
        self.buf.add_control(data)

    def write(self, take: float) -> None:
        chunk = self.buf.next_chunk()
        if chunk is None:
            return
        if self.chunk_done:
            self.taken += sum(op not in (0x8, 0x9) for op, _ in frames(bytes(chunk)))
        n = int(len(chunk) * take)
        self.out += chunk[:n]
        self.buf.sent(n)
        self.chunk_done = n == len(chunk)

    def check_idle(self) -> None:
        if self.buf.idle:
            assert not self.buf.pending
            assert not self.buf.closing


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(min_value=1, max_value=5), ops=_OPS)
def test_order_kept_nothing_lost_but_gaps_control_at_frame_boundaries(
    capacity: int, ops: list[tuple[str, float, int]]
) -> None:
    """Whatever the interleaving of offers, control chunks, partial sends and a Close:
    the bytes are whole frames; events arrive in order, each one either delivered or
    inside a reported ``gap`` (until closing discards the queue); control chunks all
    arrive, in order, each right after the data already taken when it was added;
    nothing follows the Close frame but control; snapshots arrive in order and (unless
    closing) the last one offered arrives."""
    m = Model(capacity)
    for kind, take, size in ops:
        if kind == "control":
            m.control(ping_frame(b"c%d" % len(m.controls)))
        elif kind == "close":
            if not m.buf.closing:
                m.control(close_frame(1000))
        elif kind == "begin_closing":
            m.buf.begin_closing()  # the session's way: the Close frame comes next
        elif kind == "write":
            m.write(take)
        else:
            m.offer(kind, take, size)
        m.check_idle()
    while m.buf.pending:
        m.write(1.0)
    assert m.buf.next_chunk() is None
    m.check_idle()

    got = frames(bytes(m.out))  # whole frames: none was ever interleaved
    assert [p for op, p in got if op in (0x8, 0x9)] == [c[2:] for c in m.controls]
    data_before = 0
    controls_seen = 0
    next_event = 1
    snapshots: list[int] = []
    closed = False
    replies: list[int] = []
    for op, payload in got:
        if op in (0x8, 0x9):
            assert data_before == m.taken_at_control[controls_seen]
            controls_seen += 1
            closed |= op == 0x8
            continue
        assert not closed, "a data frame after the Close frame"
        data_before += 1
        if payload.startswith(b"{"):
            gap = orjson.loads(payload)["data"]
            assert gap["channel"] == "topics"
            assert gap["firstOffset"] == next_event, "a gap starts where delivery stopped"
            assert gap["count"] == gap["lastOffset"] - gap["firstOffset"] + 1
            next_event = gap["lastOffset"] + 1
            continue
        tag, number = payload[:1], int(payload[1 : payload.index(b"|")])
        if tag == b"e":
            assert number == next_event, "events in order, none lost unsaid"
            next_event += 1
        elif tag == b"s":
            snapshots.append(number)
        else:
            replies.append(number)
    assert snapshots == sorted(snapshots)
    assert replies == sorted(replies)
    if m.buf.closing:
        assert next_event <= m.events + 1
    else:
        assert next_event == m.events + 1, "every event delivered or reported lost"
        if m.last_snapshot:
            assert snapshots[-1] == m.last_snapshot, "the latest snapshot arrives"


@pytest.mark.parametrize("take", [0, 1, 7])
def test_a_chunk_is_returned_until_it_is_written_whole(take: int) -> None:
    buf = OutboundBuffer()
    write(buf, item(b"z" * 20), take=take)
    chunk = buf.next_chunk()
    assert chunk is not None
    assert bytes(chunk) == text_frame(b"z" * 20)[take:]
    assert bytes(buf.next_chunk() or b"") == bytes(chunk)  # not yet reported: the same
