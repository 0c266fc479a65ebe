"""SocketTransport on a real socket pair: write-through, the flusher, ``send_all``,
abort, the write deadline, receiving and lingering. (The outbound policy itself, write
order, the gap, batching, conflation and the closing state, is tested without a socket
in test_outbuffer.py.)

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
from server_frames import frames, payloads
from takhin_ws.core.queue import Drop
from takhin_ws.net.transport import (
    LINGER_MAX_BYTES,
    LINGER_TIMEOUT,
    PROGRESS_CHECKS,
    SocketTransport,
)
from takhin_ws.wire.gaps import gap_frames
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


# --- closing ---


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


async def test_receive_nowait_takes_what_is_there_and_never_waits(pair: Pair) -> None:
    t = pair.transport
    t.replay(b"head")
    pair.peer.sendall(b"body")
    t.last_receive = -1.0
    assert t.receive_nowait() == b"head"  # replayed bytes first, not a receive
    assert t.last_receive == -1.0
    assert t.receive_nowait(max_bytes=2) == b"bo"
    assert t.last_receive > 0  # a byte from the peer
    assert t.receive_nowait() == b"dy"
    t.last_receive = -1.0
    assert t.receive_nowait() is None  # nothing yet
    assert t.last_receive == -1.0
    pair.peer.shutdown(socket.SHUT_WR)
    assert t.receive_nowait() == b""  # the peer closed


async def test_receive_nowait_of_a_broken_socket_is_a_broken_resource(pair: Pair) -> None:
    pair.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pair.transport.offer(item(b"x"))
    pair.peer.close()  # a reset, once the transport's data is unread
    with pytest.raises(trio.BrokenResourceError, match="reset"):
        pair.transport.receive_nowait()


async def test_wait_readable_returns_at_once_for_replayed_bytes(pair: Pair) -> None:
    t = pair.transport
    t.replay(b"head")
    with trio.fail_after(5), trio.testing.assert_checkpoints():
        await t.wait_readable()  # no byte on the socket: the replayed ones count
    assert t.receive_nowait() == b"head"


async def test_wait_readable_waits_for_the_peer(pair: Pair) -> None:
    woke: list[bytes | None] = []

    async def waiter() -> None:
        await pair.transport.wait_readable()
        woke.append(pair.transport.receive_nowait())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []  # parked on the socket
            pair.peer.sendall(b"late")
    assert woke == [b"late"]


async def test_a_closed_transport_neither_receives_nor_waits(pair: Pair) -> None:
    t = pair.transport
    await t.aclose()
    with pytest.raises(trio.ClosedResourceError, match=r"^transport is closed$"):
        t.receive_nowait()
    with pytest.raises(trio.ClosedResourceError, match=r"^transport is closed$"):
        t.wait_readable()


# --- what mutation testing found unasserted (make mutation) ---


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


# --- more that make mutation found unasserted (issue 25) ---


async def test_a_control_chunk_on_an_idle_transport_is_written_at_once(pair: Pair) -> None:
    t = pair.transport
    ping = ping_frame(b"now")
    first = t.send_control_nowait(ping)
    assert not t.backlogged
    assert pair.tasks == 0  # the kernel took it all: no flusher
    assert t.bytes_sent == len(ping)
    assert frames(await pair.read(len(ping))) == [(0x9, b"now")]
    assert t.send_control_nowait(ping) > first  # numbered in order
    assert pair.tasks == 0


async def test_the_queue_overflowing_behind_a_backlog_is_said_with_a_gap() -> None:
    """The transport hands its gap encoder to its buffer: the peer reads the dropped
    offsets in a ``gap`` message before the data that was kept."""
    size = 2
    async with open_pair(queue_size=size, gap_frames=gap_frames) as p:
        t = p.transport
        big = item(b"B" * BIG, offset=1)
        t.offer(big)
        assert t.backlogged
        queued = [item(b"m%d" % n, offset=n) for n in range(2, 8)]
        for it in queued:
            t.offer(it)
        dropped, kept = queued[:-size], queued[-size:]
        expected_gap = gap_frames(
            [Drop("topics", dropped[0].offset or 0, dropped[-1].offset or 0, len(dropped))]
        )
        data = await p.read(len(big.frame) + len(expected_gap) + total([i.frame for i in kept]))
        got = payloads(data)
        assert got[0] == big.payload
        assert orjson.loads(got[1])["data"] == {
            "channel": "topics",
            "firstOffset": dropped[0].offset,
            "lastOffset": dropped[-1].offset,
            "count": len(dropped),
        }
        assert got[2:] == [it.payload for it in kept]


async def test_a_socket_closed_under_a_waiting_flusher_is_a_lost_connection(pair: Pair) -> None:
    t = pair.transport
    t.offer(item(b"B" * BIG))
    await trio.testing.wait_all_tasks_blocked()  # the flusher waits to write
    trio.lowlevel.notify_closing(t.socket)  # as trio says another task closing it
    with trio.fail_after(5):
        await wait_until(lambda: pair.tasks == 0)
    assert t.closing
    assert (t.abort_reason or "").startswith("connection lost: ")


async def test_the_deadline_restarts_from_the_last_byte_taken(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Virtual time: a peer that reads a little (far less than makes the socket
    writable) and then stops is dropped one deadline after that read, as the flusher
    tries to write every PROGRESS_CHECKS-th of the deadline, not one deadline later."""
    timeout = 10.0
    check = timeout / PROGRESS_CHECKS
    frame_size = 16 * 1024  # a kernel buffer of such frames frees room one by one
    async with open_pair(write_timeout=timeout, queue_size=64) as p:
        t = p.transport
        frame = item(b"B" * frame_size)
        for _ in range(64):
            t.offer(frame)
        assert t.backlogged
        await trio.sleep(timeout / 2 + check / 2)  # between two checks
        assert await p.read(len(frame.frame)) == frame.frame
        read_at = trio.current_time()
        await trio.sleep(timeout - check)
        assert not t.closing  # the read was progress
        await trio.sleep(3 * check)
        assert p.transport.closing, f"still open {trio.current_time() - read_at:g} s after the read"
        assert (p.transport.abort_reason or "").startswith("write timeout")


async def test_linger_close_stops_after_enough_bytes_before_its_time_bound(
    mock_clock: trio.testing.MockClock,
) -> None:
    """The clock stands still, so only the byte bound can end the lingering."""
    async with open_pair() as p:
        t = p.transport
        ended = trio.Event()

        async def linger() -> None:
            await t.linger_close()
            ended.set()

        async def flood() -> None:
            chunk, sent = b"x" * 65536, 0
            with suppress(OSError):
                while sent <= LINGER_MAX_BYTES:
                    sent += await p.tpeer.send(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(linger)
            await flood()
            await trio.testing.wait_all_tasks_blocked()
            assert ended.is_set()  # more than LINGER_MAX_BYTES came: it stopped reading
            nursery.cancel_scope.cancel()
        assert t.abort_reason == "connection finished"


async def test_linger_close_of_a_reset_connection_still_ends_it() -> None:
    """Over TCP: the peer's reset makes ``shutdown`` fail (ENOTCONN); lingering still
    ends the connection, without an error."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    with ours, peer:
        async with trio.open_nursery() as nursery:
            t = SocketTransport(ours, nursery)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # a reset
            with trio.fail_after(5):
                await t.wait_readable()
                await t.linger_close()
            assert t.abort_reason == "connection finished"
            assert ours.fileno() == -1


async def test_wait_send_all_might_not_block_waits_for_the_backlog(pair: Pair) -> None:
    """Beside the flusher (which already waits on the socket), without a second
    waiter on the same socket (trio.BusyResourceError)."""
    t = pair.transport
    big = item(b"B" * BIG)
    t.offer(big)
    await trio.testing.wait_all_tasks_blocked()  # the flusher waits to write
    backlog_at_return: list[bool] = []

    async def waiter() -> None:
        await t.wait_send_all_might_not_block()
        backlog_at_return.append(t.backlogged)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert backlog_at_return == []  # parked behind the backlog
            assert payloads(await pair.read(len(big.frame))) == [big.payload]
    assert backlog_at_return == [False]


async def test_an_abort_ends_wait_send_all_might_not_block(pair: Pair) -> None:
    t = pair.transport
    t.offer(item(b"B" * BIG))
    woke = trio.Event()

    async def waiter() -> None:
        await t.wait_send_all_might_not_block()
        woke.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            t.abort("gone")
    assert woke.is_set()
    assert not t.backlogged


async def test_every_writer_waiting_behind_a_backlog_wakes(pair: Pair) -> None:
    """Two send_all callers and a wait_send_all_might_not_block caller wait at once:
    each returns once the backlog is written (none is left parked)."""
    t = pair.transport
    big = item(b"B" * BIG)
    t.offer(big)
    pings = [ping_frame(b"first"), ping_frame(b"second")]
    returned: list[str] = []

    async def send(data: bytes, name: str) -> None:
        await t.send_all(data)
        returned.append(name)

    async def wait() -> None:
        await t.wait_send_all_might_not_block()
        returned.append("waiter")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, pings[0], "first")
            nursery.start_soon(send, pings[1], "second")
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []  # all three behind the backlog
            data = await pair.read(len(big.frame) + total(pings))
    got = frames(data)
    assert got[0] == (0x1, big.payload)
    assert sorted(got[1:]) == [(0x9, b"first"), (0x9, b"second")]  # in the order they came
    assert sorted(returned) == ["first", "second", "waiter"]
