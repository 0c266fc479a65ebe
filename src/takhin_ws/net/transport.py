"""The byte stream of one connection, with a synchronous write-through fast path.

:class:`SocketTransport` is a ``trio.abc.Stream`` over a non-blocking stdlib
socket. Every byte for this peer goes through the one outbound path here: the
HTTP answer or the ``101``, pongs and Close frames (*control*, via
:meth:`send_control_nowait` and :meth:`send_all`) and the hub's data frames (via
:meth:`offer`).

``offer`` is what ``Hub.publish`` calls for each subscriber. While nothing is
pending for this peer it writes the shared frame straight into the kernel with
one ``socket.send`` and wakes no task. Only when the kernel does not take it
all does the connection grow a backlog: the rest of the frame waits as the
*partial* chunk, later frames go into the drop-oldest queue, and one flusher
task is started that waits for writability and drains everything pending with
as few sends as possible. The flusher exits when the backlog is gone.

Write order: the partial chunk (a frame is never interleaved), then control
chunks, then a ``gap`` for data lost to the drop-oldest policy, then queued data.
Control chunks are never dropped. Once a Close frame has been handed to us the
transport is *closing*: queued data is discarded and later offers are ignored,
so no data frame ever follows a Close frame. The Close frame is recognised in the
bytes themselves (:func:`has_close_frame`), whoever wrote it.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Final

import trio

from ..config.settings import DEFAULT_QUEUE_SIZE, DEFAULT_WRITE_TIMEOUT
from ..core.queue import Drop, DropOldestQueue
from ..wire.websocket.frames import Outbound, has_close_frame

__all__ = ["DEFAULT_WRITE_TIMEOUT", "MAX_BATCH_BYTES", "SocketTransport", "has_close_frame"]

log = logging.getLogger("takhin_ws.transport")

#: Largest chunk the flusher hands to one ``send``: bounds how long a pong or a
#: Close frame can wait behind data that has already started going out.
MAX_BATCH_BYTES: Final = 64 * 1024
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
        "_closed",
        "_closing",
        "_control",
        "_control_done",
        "_control_lot",
        "_control_seq",
        "_flushing",
        "_gap_frames",
        "_nursery",
        "_partial",
        "_partial_control",
        "_prefix",
        "_sock",
        "_write_timeout",
        "abort_reason",
        "bytes_sent",
        "fast_writes",
        "last_receive",
        "next_ping",
        "queue",
    )

    def __init__(
        self,
        sock: socket.socket,
        nursery: trio.Nursery,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        gap_frames: Callable[[Sequence[Drop]], bytes] | None = None,
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._nursery = nursery
        self._write_timeout = write_timeout
        self._gap_frames = gap_frames
        self.queue: DropOldestQueue[Outbound] = DropOldestQueue(queue_size)
        self._prefix = b""
        self._partial: memoryview | None = None
        self._partial_control: int | None = None
        self._control: list[tuple[int, bytes]] = []  # rarely more than one chunk
        self._control_seq = 0
        self._control_done = 0
        self._control_lot: trio.lowlevel.ParkingLot | None = None
        self._flushing = False
        self._closing = False
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
        self._gap_frames = None

    def replay(self, data: bytes) -> None:
        """Bytes already read from the socket (the request head) that
        :meth:`receive_some` must return first."""
        self._prefix = data + self._prefix

    @property
    def socket(self) -> socket.socket:
        return self._sock

    @property
    def closing(self) -> bool:
        return self._closing or self._closed

    @property
    def backlogged(self) -> bool:
        return self._partial is not None or bool(self._control) or bool(self.queue)

    # --- the hub's side: synchronous, never blocks, never raises ---

    def offer(self, item: Outbound) -> None:
        """Write *item*'s frame now if nothing is pending, else queue it (drop-oldest)."""
        if self._closing or self._closed:
            return
        if self._partial is None and not self._control and not self.queue:
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
            self._partial = memoryview(frame)[sent:]
            self._partial_control = None
            self._start_flusher()
            return
        self.queue.put_nowait(item)
        self._start_flusher()

    def send_control_nowait(self, data: bytes) -> int:
        """Queue a control chunk (a ping, a close frame) ahead of data; return its number."""
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        self._control_seq += 1
        self._control.append((self._control_seq, data))
        self._pump()
        if self.backlogged:
            self._start_flusher()
        return self._control_seq

    def begin_closing(self) -> None:
        """No more data frames: drop what is queued (a Close frame follows)."""
        if not self._closing:
            self._closing = True
            self.queue.clear()  # a data frame already half written still completes

    # --- writing ---

    def _next_chunk(self) -> tuple[bytes | memoryview, int | None] | None:
        if self._partial is not None:
            return self._partial, self._partial_control
        if self._control:
            seq, data = self._control.pop(0)
            return data, seq
        if self._closing:
            return None
        queue = self.queue
        if queue.has_drops and self._gap_frames is not None:
            return self._gap_frames(queue.take_drops()), None
        if not queue:
            return None
        first = queue.get_nowait()
        if not queue or len(first.frame) >= MAX_BATCH_BYTES:
            return first.frame, None
        parts = [first.frame]
        size = len(first.frame)
        while queue and size < MAX_BATCH_BYTES:
            frame = queue.get_nowait().frame
            parts.append(frame)
            size += len(frame)
        return b"".join(parts), None

    def _pump(self) -> bool:
        """Write as much as the kernel takes now; True once nothing is pending."""
        sock = self._sock
        while not self._closed:
            nxt = self._next_chunk()
            if nxt is None:
                return True
            chunk, control = nxt
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.abort(f"send failed: {exc.strerror or exc}")
                return True
            self.bytes_sent += sent
            if sent < len(chunk):
                self._partial = memoryview(chunk)[sent:]
                self._partial_control = control
                return False
            self._partial = None
            self._partial_control = None
            if control is not None:
                self._control_done = control
                if self._control_lot is not None:
                    self._control_lot.unpark_all()
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

    # --- trio.abc.Stream ---

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """A control chunk (an HTTP answer, a Close frame): returns once written."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        if not self._closing and has_close_frame(data):
            self.begin_closing()  # no data frame may follow a Close frame
        seq = self.send_control_nowait(bytes(data))
        while self._control_done < seq:
            if self._closed:
                raise trio.BrokenResourceError(self.abort_reason or "connection closed")
            if self._control_lot is None:
                self._control_lot = trio.lowlevel.ParkingLot()
            await self._control_lot.park()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self.backlogged:
            await trio.lowlevel.wait_writable(self._sock)
        else:
            await trio.lowlevel.checkpoint()

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
        self._closing = True
        self._closed = True
        self.queue.clear()
        self.queue.close()
        self._control.clear()
        self._partial = None
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
