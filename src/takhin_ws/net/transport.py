"""The byte stream of one connection, with a synchronous write-through fast path.

:class:`SocketTransport` is a ``trio.abc.Stream`` over a non-blocking stdlib
socket. Every byte for this peer goes through the one outbound path here: the
HTTP answer or the ``101``, pongs and Close frames (*control*, via
:meth:`send_control_nowait` and :meth:`send_all`) and the hub's data frames (via
:meth:`offer`).

What is written when is decided by the connection's sans-IO
:class:`~takhin_ws.core.outbuffer.OutboundBuffer` (write order, the drop-oldest
queue and its ``gap``, batching, the closing state); this class keeps only the
``send`` calls and the waiting. ``offer`` is what ``Hub.publish`` calls for each
subscriber: while the buffer is idle it writes the shared frame straight into the
kernel with one ``socket.send`` and wakes no task. Only when the kernel does not
take it all does the connection grow a backlog, and one flusher task is started
that waits for writability and writes the buffer's chunks until nothing is pending
(then it exits), or until the socket has taken nothing for the write deadline.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable
from contextlib import suppress
from typing import Final

import trio

from ..config.settings import DEFAULT_QUEUE_SIZE, DEFAULT_WRITE_TIMEOUT
from ..core.outbuffer import MAX_BATCH_BYTES, GapEncoder, OutboundBuffer
from ..core.queue import DropOldestQueue
from ..wire.websocket.frames import Outbound

__all__ = ["DEFAULT_WRITE_TIMEOUT", "MAX_BATCH_BYTES", "SocketTransport"]

log = logging.getLogger("takhin_ws.transport")

#: A backlogged socket that does not report itself writable is still tried this many
#: times per write deadline: a peer that takes any bytes within the deadline stays.
PROGRESS_CHECKS: Final = 10
#: How long, and how much, an HTTP peer may still send after our answer.
LINGER_TIMEOUT: Final = 1.0
LINGER_MAX_BYTES: Final = 1024 * 1024
#: Most bytes read by one ``receive_some``.
RECEIVE_BYTES: Final = 16 * 1024

_GONE_ERRNOS: Final = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF})


class SocketTransport(trio.abc.Stream):
    """One accepted TCP connection. Not shared between connections.

    Kept small (slots, nothing allocated until needed): there is one per client.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_control_lot",
        "_flushing",
        "_nursery",
        "_prefix",
        "_sock",
        "_write_timeout",
        "abort_reason",
        "bytes_sent",
        "fast_writes",
        "last_receive",
        "next_ping",
    )

    def __init__(
        self,
        sock: socket.socket,
        nursery: trio.Nursery,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        gap_frames: GapEncoder | None = None,
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._nursery = nursery
        self._write_timeout = write_timeout
        self._buffer = OutboundBuffer(queue_size, gap_frames)
        self._prefix = b""
        self._control_lot: trio.lowlevel.ParkingLot | None = None
        self._flushing = False
        self._closed = False
        self.abort_reason: str | None = None
        self.last_receive = trio.current_time()
        self.next_ping = 0.0
        self.bytes_sent = 0
        self.fast_writes = 0

    # --- set-up ---

    def without_gaps(self) -> None:
        """This peer takes no ``gap`` messages (a ``format=bare`` client receives
        metrics and nothing else): data lost to the drop-oldest policy goes unsaid."""
        self._buffer.without_gaps()

    def replay(self, data: bytes) -> None:
        """Bytes already read from the socket (the request head) that
        :meth:`receive_some` must return first."""
        self._prefix = data + self._prefix

    @property
    def socket(self) -> socket.socket:
        return self._sock

    @property
    def queue(self) -> DropOldestQueue[Outbound]:
        """The data waiting behind a backlog (the hub reads its statistics)."""
        return self._buffer.queue

    @property
    def closing(self) -> bool:
        return self._buffer.closing or self._closed

    @property
    def backlogged(self) -> bool:
        return self._buffer.pending

    # --- the hub's side: synchronous, never blocks, never raises ---

    def offer(self, item: Outbound) -> None:
        """Write *item*'s frame now if nothing is pending, else queue it (drop-oldest)."""
        buffer = self._buffer
        if buffer.idle:  # the fast path: one send, no task, nothing allocated
            frame = item.frame
            try:
                sent = self._sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.abort(f"send failed: {exc.strerror or exc}")
                return
            self.bytes_sent += sent
            if sent == len(frame):
                self.fast_writes += 1
                return
            buffer.started(frame, sent)
            self._start_flusher()
            return
        if not buffer.closing:
            buffer.offer(item)
            self._start_flusher()

    def send_control_nowait(self, data: bytes) -> int:
        """Queue a control chunk (a ping, a close frame) ahead of data; return its number."""
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        seq = self._buffer.add_control(data)
        if not self._pump():
            self._start_flusher()
        return seq

    def begin_closing(self) -> None:
        """No more data frames: drop what is queued (a Close frame follows)."""
        self._buffer.begin_closing()

    # --- writing ---

    def _pump(self) -> bool:
        """Write as much as the kernel takes now; True once nothing is pending."""
        sock = self._sock
        buffer = self._buffer
        while not self._closed:
            chunk = buffer.next_chunk()
            if chunk is None:
                return True
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.abort(f"send failed: {exc.strerror or exc}")
                return True
            self.bytes_sent += sent
            if buffer.sent(sent) and self._control_lot is not None:
                self._control_lot.unpark_all()  # a control chunk went out whole
            if sent < len(chunk):
                return False
        return True

    def _start_flusher(self) -> None:
        if not self._flushing and not self._closed:
            self._flushing = True
            self._nursery.start_soon(self._flusher)

    async def _flusher(self) -> None:
        """Drain the backlog; abort once the socket has taken no byte for the write
        deadline. The kernel reports a socket writable only once a good share of its
        buffer is free (a third for TCP), which a peer reading slowly but steadily may
        take longer than the deadline to free: so the flusher also tries to write every
        ``PROGRESS_CHECKS``-th of the deadline, and any byte taken is progress."""
        timeout = self._write_timeout
        check = timeout / PROGRESS_CHECKS
        try:
            sent = self.bytes_sent
            deadline = trio.current_time() + timeout
            while not self._pump():
                now = trio.current_time()
                if self.bytes_sent != sent:  # the socket took bytes: progress
                    sent = self.bytes_sent
                    deadline = now + timeout
                elif now >= deadline:
                    self.abort(f"write timeout: no progress for {timeout:g} s")
                    return
                with trio.move_on_at(min(deadline, now + check)):
                    await trio.lowlevel.wait_writable(self._sock)
        except (trio.ClosedResourceError, OSError) as exc:
            self.abort(f"connection lost: {exc}")
        finally:
            self._flushing = False
            if self._control_lot is not None:
                self._control_lot.unpark_all()  # the backlog is gone (or the connection)

    # --- trio.abc.Stream ---

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """A control chunk (an HTTP answer, a Close frame): returns once written."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        seq = self.send_control_nowait(bytes(data))  # a Close frame starts closing
        while self._buffer.control_done < seq:
            if self._closed:
                raise trio.BrokenResourceError(self.abort_reason or "connection closed")
            await self._lot().park()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _lot(self) -> trio.lowlevel.ParkingLot:
        """Where writers wait: woken when a control chunk goes out whole, when the
        backlog is gone and when the connection is (made on first use)."""
        lot = self._control_lot
        if lot is None:
            lot = self._control_lot = trio.lowlevel.ParkingLot()
        return lot

    async def wait_send_all_might_not_block(self) -> None:
        """Until nothing is pending (or the connection is gone). Waits for the flusher
        to drain the backlog, not on the socket: the flusher is already waiting there,
        and trio lets one task at a time wait to write a socket."""
        if not self.backlogged:
            await trio.lowlevel.checkpoint()
            return
        while self.backlogged:  # (an abort forgets the backlog)
            await self._lot().park()

    def receive_nowait(self, max_bytes: int = RECEIVE_BYTES) -> bytes | None:
        """What the socket holds now, without waiting (``None``: nothing yet; ``b""``:
        the peer closed). Raises ``trio.BrokenResourceError`` if the connection broke."""
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        try:
            received = self._sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        self.last_receive = trio.current_time()
        return received

    def wait_readable(self) -> Awaitable[None]:
        """Until the socket is readable (a checkpoint). Trio's own wait, returned as it
        is: a connection waiting here holds no coroutine frame of this class, and no
        failed ``recv`` raised an exception (whose traceback would keep the waiting
        call's frame alive) to get here."""
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        # returned, not awaited here: awaiting it in an ``async def`` would put that
        # coroutine's frame under every idle connection
        if self._prefix:
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105
        return trio.lowlevel.wait_readable(self._sock)  # noqa: ASYNC105

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        size = max_bytes or RECEIVE_BYTES
        while True:
            if self._closed:
                raise trio.ClosedResourceError("transport is closed")
            would_block = False
            try:
                received = self._sock.recv(size)
            except BlockingIOError:
                would_block = True  # wait outside the handler: it would keep the exception alive
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if would_block:
                await trio.lowlevel.wait_readable(self._sock)
                continue
            self.last_receive = trio.current_time()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return received

    def abort(self, reason: str) -> None:
        """Close the socket at once (no handshake): wakes every task blocked on it."""
        if self._closed:
            return
        self.abort_reason = self.abort_reason or reason
        self._closed = True
        self._buffer.close()
        if self._control_lot is not None:
            self._control_lot.unpark_all()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()

    async def aclose(self) -> None:
        self.abort(self.abort_reason or "connection closed")
        await trio.lowlevel.checkpoint()

    async def linger_close(self) -> None:
        """End an HTTP exchange politely: stop writing, then read and discard what
        the peer still sends (an unread request body) for up to ``LINGER_TIMEOUT`` s,
        so closing does not reset the connection before it has read our answer."""
        if self._closed:
            return
        if not self.backlogged:
            with suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            discarded = 0
            with trio.move_on_after(LINGER_TIMEOUT), suppress(trio.BrokenResourceError):
                while discarded < LINGER_MAX_BYTES:
                    data = await self.receive_some()
                    if not data:
                        break
                    discarded += len(data)
        self.abort("connection finished")
