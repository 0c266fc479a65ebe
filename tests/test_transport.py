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
from contextlib import asynccontextmanager

import orjson
import pytest
import trio
import trio.testing

from conftest import wait_until
from takhin_ws._frames import Outbound, close_frame, ping_frame, text_frame
from takhin_ws._queue import Drop
from takhin_ws._transport import MAX_BATCH_BYTES, SocketTransport

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
