"""SocketTransport on a real socket pair: write-through, backlog, write order, closing,
abort and the write deadline.

The transport's socket is one end of ``socket.socketpair()``; the test reads the other
end (or does not, to make the kernel buffer fill up) and parses what arrived back into
frames, so every check is about the bytes a peer would really see.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress

import orjson
import pytest
import trio
import trio.testing

from conftest import wait_until
from takhin_ws.core.queue import Drop
from takhin_ws.net.transport import (
    LINGER_TIMEOUT,
    MAX_BATCH_BYTES,
    SocketTransport,
    has_close_frame,
)
from takhin_ws.wire.websocket.frames import Outbound, close_frame, ping_frame, text_frame

BIG = 1024 * 1024  # far more than a socket pair buffers


class Pair:
    """The transport under test and the peer's end of the socket pair."""

    def __init__(self, transport: SocketTransport, peer: socket.socket, nursery: trio.Nursery):
        self.transport = transport
        self.peer = peer
        self.nursery = nursery
        self.tpeer = trio.socket.from_stdlib_socket(peer)

    async def read(self, size: int) -> bytes:
        """Exactly *size* bytes from the peer's side."""
        out = bytearray()
        with trio.fail_after(10):
            while len(out) < size:
                data = await self.tpeer.recv(min(size - len(out), 256 * 1024))
                assert data, f"EOF after {len(out)} of {size} bytes"
                out += data
        return bytes(out)

    def nothing_more(self) -> bool:
        """True when no byte is waiting on the peer's side."""
        self.peer.setblocking(False)
        try:
            return self.peer.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return True

    @property
    def tasks(self) -> int:
        return len(self.nursery.child_tasks)


@asynccontextmanager
async def open_pair(
    *,
    queue_size: int = 8,
    write_timeout: float = 30,
    gap_frames: Callable[[Sequence[Drop]], bytes] | None = None,
) -> AsyncIterator[Pair]:
    ours, peer = socket.socketpair()
    with ours, peer:
        async with trio.open_nursery() as nursery:
            transport = SocketTransport(
                ours,
                nursery,
                queue_size=queue_size,
                write_timeout=write_timeout,
                gap_frames=gap_frames,
            )
            try:
                yield Pair(transport, peer, nursery)
            finally:
                transport.abort("test over")


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with open_pair() as p:
        yield p


def item(payload: bytes, offset: int | None = None) -> Outbound:
    return Outbound.of(payload, "topics" if offset is not None else None, offset)


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse unmasked frames: (opcode, payload) each; the bytes must end on a frame."""
    out = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert first & 0x80, "every frame is final"
        assert not second & 0x80, "server frames are not masked"
        length = second & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        out.append((first & 0x0F, data[pos : pos + length]))
        pos += length
    assert pos == len(data), "the stream ended inside a frame"
    return out


def payloads(data: bytes) -> list[bytes]:
    return [payload for _, payload in frames(data)]


def total(chunks: Sequence[bytes]) -> int:
    return sum(len(c) for c in chunks)


# --- the fast path ---


async def test_fast_path_writes_through_without_a_task(pair: Pair) -> None:
    t = pair.transport
    sent = [item(b'{"n":%d}' % i) for i in range(50)]
    for it in sent:
        t.offer(it)
    assert t.fast_writes == 50
    assert not t.backlogged
    assert pair.tasks == 0  # no flusher was started
    assert t.bytes_sent == total([it.frame for it in sent])
    data = await pair.read(t.bytes_sent)
    assert payloads(data) == [it.payload for it in sent]


# --- backlog ---


async def test_a_partial_write_becomes_a_backlog_drained_in_order(pair: Pair) -> None:
    t = pair.transport
    big = item(b"B" * BIG)
    t.offer(big)
    assert t.backlogged  # the kernel took only part of it
    assert t.fast_writes == 0
    assert pair.tasks == 1  # one flusher, started because of the backlog
    queued = [item(b"q%d" % i) for i in range(5)]
    for it in queued:
        t.offer(it)
    assert len(t.queue) == 5
    assert pair.tasks == 1  # still one

    expected = [big.frame, *(it.frame for it in queued)]
    data = await pair.read(total(expected))
    assert payloads(data) == [big.payload, *(it.payload for it in queued)]
    with trio.fail_after(10):
        await wait_until(lambda: pair.tasks == 0)  # the flusher ends with the backlog
    assert not pair.transport.backlogged  # (not `t.`: mypy would keep the narrowing above)

    writes = t.fast_writes
    t.offer(item(b"after"))  # and the fast path is back
    assert t.fast_writes == writes + 1
    assert pair.tasks == 0
    assert payloads(await pair.read(len(text_frame(b"after")))) == [b"after"]


async def test_control_goes_before_queued_data_but_never_inside_a_frame(pair: Pair) -> None:
    t = pair.transport
    big = item(b"B" * BIG)
    t.offer(big)
    queued = [item(b"q%d" % i) for i in range(3)]
    for it in queued:
        t.offer(it)
    ping = ping_frame(b"hb")
    t.send_control_nowait(ping)

    pong = ping_frame(b"via send_all")
    written_at_return: list[int] = []

    async def send_all() -> None:
        await t.send_all(pong)
        written_at_return.append(t.bytes_sent)

    pair.nursery.start_soon(send_all)
    await trio.testing.wait_all_tasks_blocked()
    assert written_at_return == []  # send_all waits until its bytes are written

    expected = [big.frame, ping, pong, *(it.frame for it in queued)]
    data = await pair.read(total(expected))
    assert frames(data) == [
        (0x1, big.payload),  # completed first: a frame is never interleaved
        (0x9, b"hb"),
        (0x9, b"via send_all"),
        *((0x1, it.payload) for it in queued),
    ]
    with trio.fail_after(10):
        await wait_until(lambda: bool(written_at_return))
    assert written_at_return[0] >= len(big.frame) + len(ping) + len(pong)


async def test_a_control_chunk_waits_only_for_data_already_in_flight() -> None:
    """The flusher takes queued data in batches (at most MAX_BATCH_BYTES each); a control
    chunk goes out right after what has been taken, at a frame boundary, ahead of the
    rest of the queue."""
    async with open_pair(queue_size=1000) as p:
        t = p.transport
        first = item(b"F" * BIG)
        t.offer(first)
        queued = [item(b"%04d" % i + b"x" * 1000) for i in range(600)]
        for it in queued:
            t.offer(it)
        assert total([it.frame for it in queued]) > 4 * MAX_BATCH_BYTES
        received = bytearray()
        # let the flusher get into the queue
        with trio.fail_after(10):
            while len(t.queue) == len(queued):
                received += await p.tpeer.recv(256 * 1024)
        taken = len(queued) - len(t.queue)
        assert taken < len(queued)
        t.send_control_nowait(ping_frame(b"now"))
        size = len(first.frame) + len(ping_frame(b"now")) + total([it.frame for it in queued])
        with trio.fail_after(10):
            while len(received) < size:
                received += await p.tpeer.recv(256 * 1024)
        got = frames(bytes(received))
        assert got.index((0x9, b"now")) == 1 + taken
        data = [payload for op, payload in got if op == 0x1]
        assert data == [first.payload, *(it.payload for it in queued)]


async def test_overflow_drops_the_oldest_and_writes_a_gap_first() -> None:
    calls: list[list[Drop]] = []

    def gap_frames(drops: Sequence[Drop]) -> bytes:
        calls.append(list(drops))
        return b"".join(
            text_frame(orjson.dumps({"gap": [d.first_offset, d.last_offset, d.count]}))
            for d in drops
        )

    async with open_pair(queue_size=4, gap_frames=gap_frames) as p:
        t = p.transport
        big = item(b"B" * BIG, offset=1)
        t.offer(big)
        for offset in range(2, 12):
            t.offer(item(b"m%d" % offset, offset))
        assert len(t.queue) == 4
        control = ping_frame(b"never dropped")
        t.send_control_nowait(control)

        gap = text_frame(b'{"gap":[2,7,6]}')
        rest = [item(b"m%d" % offset, offset).frame for offset in range(8, 12)]
        data = await p.read(len(big.frame) + len(control) + len(gap) + total(rest))
        assert payloads(data) == [
            big.payload,
            b"never dropped",
            b'{"gap":[2,7,6]}',
            b"m8",
            b"m9",
            b"m10",
            b"m11",
        ]
        assert calls == [[Drop("topics", 2, 7, 6)]]


async def test_a_backlogged_peer_gets_the_latest_snapshot_and_every_event() -> None:
    """Snapshots are state: a stalled peer's backlog holds one per channel, the
    latest, in the place of the first; events stay in order and are never conflated."""
    async with open_pair(queue_size=4) as p:
        t = p.transport
        big = item(b"B" * BIG, offset=1)
        t.offer(big)  # the kernel takes part of it: a backlog
        snapshots = [Outbound.of(b"s%d" % n, "metrics", n, "metrics") for n in range(1, 50)]
        events = [item(b"e%d" % n, n) for n in range(2, 5)]
        t.offer(snapshots[0])
        t.offer(events[0])
        for snapshot in snapshots[1:-1]:
            t.offer(snapshot)
        t.offer(events[1])
        t.offer(snapshots[-1])
        t.offer(events[2])
        assert len(t.queue) == 4  # one snapshot, three events
        rest = [snapshots[-1], *events]
        data = await p.read(len(big.frame) + total([i.frame for i in rest]))
        assert payloads(data) == [big.payload, b"s49", b"e2", b"e3", b"e4"]
        assert t.queue.statistics().conflated_total == 48
        assert t.queue.statistics().dropped_total == 0


# --- closing ---


async def test_no_data_frame_follows_a_close_frame() -> None:
    """Not queued data, not a late offer, not even the ``gap`` owed for dropped data."""
    async with open_pair(queue_size=2, gap_frames=lambda drops: text_frame(b"gap")) as p:
        t = p.transport
        big = item(b"B" * BIG, offset=1)
        t.offer(big)
        for offset in range(2, 6):
            t.offer(item(b"m%d" % offset, offset))  # two of them dropped: a gap is owed
        t.begin_closing()
        assert not t.queue  # queued data discarded
        close = close_frame(1001, "bye")
        t.send_control_nowait(close)
        t.offer(item(b"too late", 6))  # ignored
        assert not t.queue

        data = await p.read(len(big.frame) + len(close))
        assert frames(data) == [(0x1, big.payload), (0x8, close[2:])]
        with trio.fail_after(10):
            await wait_until(lambda: p.tasks == 0)
        t.offer(item(b"still too late", 7))
        assert p.nothing_more()


async def test_send_all_of_a_close_frame_starts_closing(pair: Pair) -> None:
    """trio-websocket sends its Close frame through send_all; the transport recognises
    it in the bytes, so queued data is dropped before the Close frame goes out."""
    t = pair.transport
    big = item(b"B" * BIG)
    t.offer(big)
    t.offer(item(b"queued"))
    close = close_frame(1000)

    async def read_all() -> bytes:
        return await pair.read(len(big.frame) + len(close))

    async with trio.open_nursery() as nursery:
        result: list[bytes] = []

        async def reader() -> None:
            result.append(await read_all())

        nursery.start_soon(reader)
        with trio.fail_after(10):
            await t.send_all(close)
        t.offer(item(b"after close"))
    assert frames(result[0]) == [(0x1, big.payload), (0x8, close[2:])]
    assert pair.nothing_more()


# --- abort ---


async def test_abort_wakes_a_send_all_waiter_with_broken_resource(pair: Pair) -> None:
    t = pair.transport
    t.offer(item(b"B" * BIG))
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await t.send_all(b"pong")
        except trio.BrokenResourceError as exc:
            outcome.append(exc)

    pair.nursery.start_soon(waiter)
    await trio.testing.wait_all_tasks_blocked()
    assert outcome == []
    t.abort("peer is gone")
    with trio.fail_after(5):
        await wait_until(lambda: bool(outcome))
    assert "peer is gone" in str(outcome[0])
    assert t.closing
    assert t.abort_reason == "peer is gone"
    t.abort("second reason")  # idempotent: the first reason stays
    assert t.abort_reason == "peer is gone"

    t.offer(item(b"ignored"))  # never raises into the publisher
    with pytest.raises(trio.ClosedResourceError):
        await t.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        t.send_control_nowait(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await t.receive_some()
    with trio.fail_after(5):
        await wait_until(lambda: pair.tasks == 0)


async def test_a_send_error_aborts_instead_of_raising(pair: Pair) -> None:
    pair.peer.close()
    pair.transport.offer(item(b"into the void"))
    assert pair.transport.closing
    assert (pair.transport.abort_reason or "").startswith("send failed")


async def test_write_timeout_aborts_a_stalled_peer(autojump_clock: trio.abc.Clock) -> None:
    """Virtual time: no progress for write_timeout seconds drops the peer; progress
    (the peer reading a little) restarts the deadline."""
    ours, peer = socket.socketpair()
    with ours, peer:
        async with trio.open_nursery() as nursery:
            t = SocketTransport(ours, nursery, write_timeout=10)
            tpeer = trio.socket.from_stdlib_socket(peer)
            t.offer(item(b"B" * (8 * BIG)))
            assert t.backlogged
            for _ in range(6):  # 30 s, reading now and then: alive
                await trio.sleep(5)
                assert await tpeer.recv(256 * 1024)
                assert not t.closing
            start = trio.current_time()
            await trio.sleep(60)  # stops reading
            assert t.closing
            assert (t.abort_reason or "").startswith("write timeout")
            assert ours.fileno() == -1
            assert not nursery.child_tasks
        assert trio.current_time() - start >= 10


async def test_a_slow_steady_reader_is_progress_and_stays(autojump_clock: trio.abc.Clock) -> None:
    """Virtual time, a real socket pair: a peer that takes a little now and then (far
    less per deadline than the kernel needs freed to call the socket writable again: a
    quarter of the buffer for a Unix socket) makes progress within every deadline and
    stays; the same peer stopping is dropped."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    with ours, peer:
        async with trio.open_nursery() as nursery:
            t = SocketTransport(ours, nursery, write_timeout=2)
            tpeer = trio.socket.from_stdlib_socket(peer)
            for n in range(64):
                t.offer(item(b"B" * (64 * 1024), offset=n + 1))
            assert t.backlogged
            taken = 0
            for _ in range(300):  # 30 s, 4 KiB every 0.1 s: 15 deadlines over
                await trio.sleep(0.1)
                taken += len(await tpeer.recv(4096))
                assert not t.closing, t.abort_reason
            assert taken == 300 * 4096
            assert t.backlogged  # still far behind, and connected
            start = trio.current_time()
            await trio.sleep(30)  # stops reading
            assert (t.abort_reason or "").startswith("write timeout")
        assert trio.current_time() - start >= 2


# --- receiving ---


async def test_receive_some_returns_replayed_bytes_first(pair: Pair) -> None:
    t = pair.transport
    t.replay(b"head")
    pair.peer.sendall(b"body")
    assert await t.receive_some() == b"head"
    before = t.last_receive
    assert await t.receive_some() == b"body"
    assert t.last_receive >= before
    pair.peer.shutdown(socket.SHUT_WR)
    assert await t.receive_some() == b""


# --- what mutation testing found unasserted (make mutation) ---


def ws_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One unmasked frame (*rsv*: the RSV1-3 bits, 0x40/0x20/0x10)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 1 << 16:
        return bytes([first, 126]) + struct.pack("!H", n) + payload
    return bytes([first, 127]) + struct.pack("!Q", n) + payload


CLOSE = ws_frame(0x8, b"\x03\xe8")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(CLOSE, id="close"),
        pytest.param(ws_frame(0x8), id="empty-close"),
        pytest.param(ws_frame(0x1, b"abc") + ws_frame(0x8), id="text-then-empty-close"),
        pytest.param(ws_frame(0x8, b"x" * 125), id="close-payload-at-the-limit"),
        pytest.param(ws_frame(0x2, b"\x00" * 126) + CLOSE, id="length-126"),
        pytest.param(ws_frame(0x1, b"y" * 300) + CLOSE, id="16-bit-length"),
        pytest.param(ws_frame(0x1, b"z" * 70_000) + CLOSE, id="64-bit-length"),
        pytest.param(ws_frame(0x1, b"c", rsv=0x40) + CLOSE, id="compressed-data"),
        pytest.param(ws_frame(0x1, b"a", fin=False) + ws_frame(0x0, b"b") + CLOSE, id="fragments"),
        pytest.param(ws_frame(0x9, b"p") + CLOSE + ws_frame(0xA, b"q"), id="ping-close-pong"),
    ],
)
def test_has_close_frame_finds_a_close_among_whole_frames(data: bytes) -> None:
    assert has_close_frame(data)
    assert has_close_frame(bytearray(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(ws_frame(0x1, b"abc") + ws_frame(0x9), id="no-close"),
        pytest.param(CLOSE + b"\x81", id="a-stray-byte"),
        pytest.param(CLOSE[:-1], id="cut-close"),
        pytest.param(CLOSE + b"\x81\x7e\x01", id="cut-16-bit-length"),
        pytest.param(CLOSE + b"\x81\x7f" + b"\x00" * 7, id="cut-64-bit-length"),
        pytest.param(ws_frame(0x1, b"y" * 300)[:-1] + CLOSE, id="cut-long-frame"),
        pytest.param(b"HTTP/1.1 400 Bad Request\r\n\r\n", id="http"),
        pytest.param(bytes([0x88, 0x82]) + b"\x00\x00\x00\x00\x03\xe8", id="masked"),
        pytest.param(ws_frame(0x8, rsv=0x20), id="rsv2"),
        pytest.param(ws_frame(0x8, rsv=0x10), id="rsv3"),
        pytest.param(ws_frame(0x8, rsv=0x40), id="compressed-control"),
        pytest.param(ws_frame(0x8, fin=False), id="fragmented-close"),
        pytest.param(ws_frame(0x9, fin=False) + CLOSE, id="fragmented-ping"),
        pytest.param(ws_frame(0x9, b"p", rsv=0x40) + CLOSE, id="compressed-ping"),
        pytest.param(ws_frame(0x8, b"x" * 126), id="close-payload-over-the-limit"),
        pytest.param(ws_frame(0x3) + CLOSE, id="reserved-opcode"),
    ],
)
def test_has_close_frame_refuses_anything_else(data: bytes) -> None:
    assert not has_close_frame(data)


async def test_a_second_backlog_drains_like_the_first(pair: Pair) -> None:
    t = pair.transport
    for n in range(2):
        t.offer(item(b"B" * BIG))
        assert t.backlogged
        body = await pair.read(len(text_frame(b"B" * BIG)))
        assert payloads(body) == [b"B" * BIG]
        with trio.fail_after(5):
            await wait_until(lambda: pair.tasks == 0)  # the flusher ended
        assert not t.backlogged, f"backlog {n} drained"


async def test_wait_send_all_might_not_block_without_a_backlog(pair: Pair) -> None:
    with trio.testing.assert_checkpoints():
        await pair.transport.wait_send_all_might_not_block()  # nothing pending: at once


async def test_without_gaps_a_loss_goes_unsaid() -> None:
    def gaps(drops: Sequence[Drop]) -> bytes:
        raise AssertionError("no gap may be asked for")

    async with open_pair(queue_size=2, gap_frames=gaps) as p:
        t = p.transport
        t.without_gaps()
        t.offer(item(b"B" * BIG, 1))
        for offset in range(2, 6):
            t.offer(item(f"m{offset}".encode(), offset))
        size = len(text_frame(b"B" * BIG)) + 2 * len(text_frame(b"m4"))
        assert payloads(await p.read(size)) == [b"B" * BIG, b"m4", b"m5"]


async def test_receive_some_waits_for_data(pair: Pair) -> None:
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await pair.transport.receive_some())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # nothing sent yet: parked on the socket
            pair.peer.sendall(b"late")
    assert got == [b"late"]


async def test_receive_some_of_a_broken_socket_is_a_broken_resource(pair: Pair) -> None:
    pair.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pair.transport.offer(item(b"x"))
    pair.peer.close()  # a reset, once the transport's data is unread
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="reset"):
        await pair.transport.receive_some()


async def test_a_closed_transport_says_so(pair: Pair) -> None:
    t = pair.transport
    await t.aclose()
    assert t.abort_reason == "connection closed"
    assert pair.transport.socket.fileno() == -1
    with pytest.raises(trio.ClosedResourceError, match=r"^transport is closed$"):
        await t.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError, match=r"^transport is closed$"):
        t.send_control_nowait(b"x")
    with pytest.raises(trio.ClosedResourceError, match=r"^transport is closed$"):
        await t.receive_some()


async def test_aclose_keeps_the_first_reason(pair: Pair) -> None:
    t = pair.transport
    t.abort("peer is gone")
    await t.aclose()
    assert t.abort_reason == "peer is gone"


async def test_a_send_error_names_the_cause(pair: Pair) -> None:
    pair.peer.close()
    pair.transport.offer(item(b"into the void"))
    assert pair.transport.abort_reason in {
        "send failed: Broken pipe",
        "send failed: Connection reset by peer",
    }


async def test_linger_close_shuts_writing_then_discards_what_the_peer_sends(pair: Pair) -> None:
    t = pair.transport
    done = trio.Event()

    async def linger() -> None:
        await t.linger_close()
        done.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(linger)
            await trio.testing.wait_all_tasks_blocked()
            assert await pair.tpeer.recv(1) == b""  # our side stopped writing
            assert not done.is_set()  # and reads on
            await pair.tpeer.send(b"an unread request body")
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()  # discarded, still reading
            pair.peer.shutdown(socket.SHUT_WR)
    assert t.abort_reason == "connection finished"
    assert t.socket.fileno() == -1


async def test_linger_close_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    async with open_pair() as p:
        start = trio.current_time()
        await p.transport.linger_close()  # the peer never closes
        assert trio.current_time() - start == pytest.approx(LINGER_TIMEOUT)
        assert p.transport.abort_reason == "connection finished"


async def test_linger_close_stops_after_enough_bytes() -> None:
    async with open_pair() as p:
        t = p.transport

        async def flood() -> None:
            with suppress(OSError):
                while True:
                    await p.tpeer.send(b"x" * 65536)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await t.linger_close()
                nursery.cancel_scope.cancel()
        assert t.abort_reason == "connection finished"


async def test_linger_close_of_a_backlogged_peer_drops_it_at_once(pair: Pair) -> None:
    t = pair.transport
    t.offer(item(b"B" * BIG))
    with trio.testing.assert_no_checkpoints():
        await t.linger_close()
    assert t.abort_reason == "connection finished"
    await t.linger_close()  # already closed: nothing to do


async def test_a_fresh_transport_is_open_and_idle_and_an_aborted_one_holds_nothing(
    pair: Pair,
) -> None:
    t = pair.transport
    assert (t.abort_reason, t.closing, t.backlogged) == (None, False, False)
    t.offer(item(b"B" * BIG))
    t.send_control_nowait(ping_frame(b"p"))
    assert t.backlogged
    t.abort("gone")
    assert (t.abort_reason, t.closing, t.backlogged) == ("gone", True, False)


async def test_a_direct_send_the_kernel_refuses_waits_whole(pair: Pair) -> None:
    t = pair.transport
    junk = 0
    with suppress(BlockingIOError):  # fill the kernel buffer behind the transport's back
        while True:
            junk += t.socket.send(b"j" * 65536)
    frame = text_frame(b"after the junk")
    t.offer(item(b"after the junk"))  # the direct send takes nothing
    assert t.backlogged
    data = await pair.read(junk + len(frame))
    assert data[junk:] == frame
    with trio.fail_after(5):
        await wait_until(lambda: not t.backlogged)
    assert t.bytes_sent == len(frame)


async def test_a_control_chunk_written_in_parts_completes_its_send_all(pair: Pair) -> None:
    t = pair.transport
    chunk = b"P" * BIG  # far more than one send takes
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(t.send_all, chunk)
            assert await pair.read(len(chunk)) == chunk


async def test_send_all_after_a_data_frame_written_in_parts(pair: Pair) -> None:
    t = pair.transport
    t.offer(item(b"B" * BIG))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(t.send_all, ping_frame(b"p"))
            data = await pair.read(len(text_frame(b"B" * BIG)) + len(ping_frame(b"p")))
    assert frames(data) == [(0x1, b"B" * BIG), (0x9, b"p")]


async def test_a_send_error_in_the_backlog_names_the_cause(pair: Pair) -> None:
    t = pair.transport
    t.offer(item(b"B" * BIG))
    await pair.read(1024)  # the flusher has something to send now
    pair.peer.close()
    with trio.fail_after(5):
        await wait_until(lambda: t.closing)
    assert t.abort_reason in {"send failed: Broken pipe", "send failed: Connection reset by peer"}
