"""What one connection writes next, and in what order: the outbound policy (sans-IO).

:class:`OutboundBuffer` is to a connection's outgoing bytes what websockets'
``Protocol.data_to_send`` is: it decides, and the caller writes. It is told what there
is to write (:meth:`~OutboundBuffer.offer` for the hub's data frames,
:meth:`~OutboundBuffer.add_control` for the connection's own bytes: the HTTP answer or
the ``101``, pings, pongs, Close frames), answers what to write now
(:meth:`~OutboundBuffer.next_chunk`) and is told how much of it the socket took
(:meth:`~OutboundBuffer.sent`). It never touches a socket, a task or a clock.

The write-through fast path stays the caller's single direct call: while
:attr:`~OutboundBuffer.idle` is true (nothing pending, not closing) the caller writes a
data frame straight to its socket without telling the buffer, and only a frame the
socket did not take whole is handed over (:meth:`~OutboundBuffer.started`).

Write order: the chunk already started (a frame is never interleaved), then control
chunks (never dropped), then one ``gap`` per channel for data lost to the drop-oldest
queue, then queued data joined into chunks of at most :data:`MAX_BATCH_BYTES`. Once a
Close frame is added (or :meth:`~OutboundBuffer.begin_closing` is called) the buffer
is *closing*: queued data is discarded, later offers are ignored and no ``gap`` is
written, so no data frame ever follows a Close frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from ..config.settings import DEFAULT_QUEUE_SIZE
from ..wire.websocket.frames import Outbound, has_close_frame
from .queue import Drop, DropOldestQueue

__all__ = ["MAX_BATCH_BYTES", "GapEncoder", "OutboundBuffer"]

#: Largest chunk of queued data :meth:`OutboundBuffer.next_chunk` joins: bounds how long a
#: pong or a Close frame can wait behind data that has already started going out.
MAX_BATCH_BYTES: Final = 64 * 1024

#: The ``gap`` frames owed for *drops* (``wire.gaps.gap_frames``).
GapEncoder = Callable[[Sequence[Drop]], bytes]


class OutboundBuffer:
    """The outbound policy of one connection. Not shared; kept small (slots, nothing
    allocated until a backlog forms): there is one per client."""

    __slots__ = (
        "_control",
        "_control_seq",
        "_current",
        "_current_control",
        "_gaps",
        "closing",
        "control_done",
        "idle",
        "queue",
    )

    def __init__(
        self, queue_size: int = DEFAULT_QUEUE_SIZE, gaps: GapEncoder | None = None
    ) -> None:
        #: Data offered while something was pending (drop-oldest; state conflated).
        self.queue: DropOldestQueue[Outbound] = DropOldestQueue(queue_size)
        self._gaps = gaps
        #: The chunk being written (what is left of it) and its control number, if any.
        self._current: bytes | memoryview | None = None
        self._current_control: int | None = None
        self._control: list[tuple[int, bytes]] = []  # rarely more than one chunk
        self._control_seq = 0
        #: The number of the last control chunk written whole (they go out in order).
        self.control_done = 0
        #: Nothing pending and not closing: a data frame may go straight to the socket.
        self.idle = True
        #: No more data: a Close frame has been (or is about to be) added.
        self.closing = False

    def without_gaps(self) -> None:
        """This peer takes no ``gap`` messages (a ``format=bare`` client receives
        metrics and nothing else): data lost to the drop-oldest policy goes unsaid."""
        self._gaps = None

    @property
    def pending(self) -> bool:
        """Whether anything is left to write (a started chunk, control, queued data)."""
        return self._current is not None or bool(self._control) or bool(self.queue)

    # --- what there is to write ---

    def offer(self, item: Outbound) -> None:
        """Queue a data frame behind what is pending (ignored once closing). A caller
        with nothing pending writes it through instead (see :attr:`idle`)."""
        if self.closing:
            return
        self.queue.put_nowait(item)
        self.idle = False

    def started(self, frame: bytes, sent: int) -> None:
        """The caller wrote *sent* bytes of *frame* straight through (while idle) and
        the socket took no more: the rest is written next, before anything else."""
        assert self._current is None, "a chunk is already being written"
        self._current = memoryview(frame)[sent:]
        self._current_control = None
        self.idle = False

    def add_control(self, data: bytes) -> int:
        """Queue a control chunk (an HTTP answer, a ping, a pong, a Close frame) ahead
        of queued data; return its number (see :attr:`control_done`). A chunk holding a
        Close frame starts closing: no data frame may follow it."""
        if not self.closing and has_close_frame(data):
            self.begin_closing()
        self._control_seq += 1
        self._control.append((self._control_seq, data))
        self.idle = False
        return self._control_seq

    def begin_closing(self) -> None:
        """No more data frames: drop what is queued (a Close frame follows). A data
        frame already started still completes."""
        if not self.closing:
            self.closing = True
            self.idle = False
            self.queue.clear()

    def close(self) -> None:
        """The connection is gone: forget everything pending, take nothing more."""
        self.closing = True
        self.idle = False
        self.queue.clear()
        self.queue.close()
        self._control.clear()
        self._current = None
        self._current_control = None

    # --- writing it ---

    def next_chunk(self) -> bytes | memoryview | None:
        """The bytes to write now, or ``None`` when nothing is pending (the buffer is
        idle again, unless closing). The same chunk (what is left of it) is returned
        until :meth:`sent` reports it written whole."""
        current = self._current
        if current is not None:
            return current
        if self._control:
            seq, data = self._control.pop(0)
            self._current, self._current_control = data, seq
            return data
        if self.closing:
            return None
        chunk = self._data_chunk()
        if chunk is None:
            self.idle = True
            return None
        self._current = chunk
        return chunk

    def _data_chunk(self) -> bytes | None:
        queue = self.queue
        if queue.has_drops and self._gaps is not None:
            return self._gaps(queue.take_drops())
        if not queue:
            return None
        first = queue.get_nowait().frame
        if not queue or len(first) >= MAX_BATCH_BYTES:
            return first
        parts = [first]
        size = len(first)
        while queue and size < MAX_BATCH_BYTES:
            frame = queue.get_nowait().frame
            parts.append(frame)
            size += len(frame)
        return b"".join(parts)

    def sent(self, n: int) -> bool:
        """The socket took *n* bytes of the chunk :meth:`next_chunk` returned. True
        when that completed a control chunk (:attr:`control_done` moved on)."""
        current = self._current
        assert current is not None, "nothing is being written"
        if n < len(current):
            self._current = memoryview(current)[n:]
            return False
        self._current = None
        control = self._current_control
        if control is None:
            return False
        self._current_control = None
        self.control_done = control
        return True
