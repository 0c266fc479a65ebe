"""One client's outbound side behind ASGI: a bounded queue and one task that sends it.

Behind ASGI the server owns the socket, so the standalone write-through fast path (a
synchronous ``socket.send`` of the shared frame from inside ``Hub.publish``) and the
shared deflate frame are not available: the only way out is awaiting the server's
``send`` with a ``websocket.send`` message, once per message per client. So
:class:`AsgiWriter` is the client's :class:`~takhin_ws.lowlevel.Subscriber`: ``offer`` (called
from ``Hub.publish``) only queues, in the same :class:`~takhin_ws.lowlevel.DropOldestQueue`
as the standalone backlog (capacity ``queue_size``, the oldest message dropped when
full, replies kept), and :meth:`AsgiWriter.run`, one task per client, sends what is
queued in order. Data lost to the drop-oldest policy is reported with ``gap``
messages before the next message, exactly as on the standalone listener.

A send that makes no progress for ``write_timeout`` ends the writer with the client
*dropped* (the session then unregisters it); whether the socket goes at once is up to
the ASGI server (Hypercorn finishes a write it has begun).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import trio

from ..core.queue import Drop, DropOldestQueue
from ..core.session import Close
from ..wire.gaps import gap_payloads
from ..wire.websocket.frames import Outbound
from .scope import Message, Send

__all__ = ["AsgiWriter", "close_message", "gap_texts"]

_SEND: Final = "websocket.send"
_CLOSE: Final = "websocket.close"


class AsgiWriter:
    """The queue and the sending task of one ASGI WebSocket client."""

    __slots__ = ("_close", "_gap_texts", "_send", "_write_timeout", "dropped", "queue")

    def __init__(
        self,
        send: Send,
        *,
        queue_size: int,
        write_timeout: float,
        gap_texts: Callable[[Sequence[Drop]], list[str]] | None,
    ) -> None:
        self.queue: DropOldestQueue[Outbound] = DropOldestQueue(queue_size)
        self._send = send
        self._write_timeout = write_timeout
        #: ``None``: this client takes no ``gap`` (``format=bare``)
        self._gap_texts = gap_texts
        self._close: Close | None = None
        #: why the writer gave up on the client (``None`` while it has not)
        self.dropped: str | None = None

    # --- the hub's side: synchronous, never blocks, never raises ---

    def offer(self, item: Outbound) -> None:
        if not self.queue.closed:
            self.queue.put_nowait(item)

    @property
    def backlogged(self) -> bool:
        return bool(self.queue)

    @property
    def closing(self) -> Close | None:
        """The close asked for (``None`` while open)."""
        return self._close

    def close(self, close: Close, *, discard: bool = False) -> None:
        """Send *close* after what is queued (or instead of it, with *discard*: a
        shutdown does not wait behind a backlog). Idempotent: the first close wins."""
        if self._close is not None:
            return
        self._close = close
        if discard:
            self.queue.clear()
        self.queue.close()

    # --- the task ---

    async def run(self) -> Close | None:
        """Send queued messages in order until closed: then the Close message, and
        return it. Return ``None`` if the client was dropped (``dropped`` says why)."""
        queue = self.queue
        while True:
            await queue.wait()
            # one synchronous step: the item and the drops before it (all older)
            try:
                item: Outbound | None = queue.get_nowait()
            except trio.EndOfChannel:
                item = None
            drops = queue.take_drops()
            if drops and self._gap_texts is not None:
                for text in self._gap_texts(drops):
                    if not await self._deliver({"type": _SEND, "text": text}):
                        return None
            if item is None:
                break
            if not await self._deliver({"type": _SEND, "text": item.payload.decode()}):
                return None
        close = self._close
        assert close is not None  # the queue is closed only by close()
        if not await self._deliver(close_message(close)):
            return None
        return close

    async def _deliver(self, message: Message) -> bool:
        """Send *message* within the write deadline; False (and ``dropped``) if not."""
        with trio.move_on_after(self._write_timeout):
            try:
                await self._send(message)
            except OSError as exc:  # a server that reports the peer gone (uvicorn's kind)
                return self._drop(f"send failed: {exc}")
            return True
        return self._drop(f"write timeout: no progress for {self._write_timeout:g} s")

    def _drop(self, reason: str) -> bool:
        self.dropped = reason
        self.queue.close()
        return False


def gap_texts(drops: Sequence[Drop]) -> list[str]:
    """The ``gap`` messages for *drops*, as texts to send."""
    return [payload.decode() for payload in gap_payloads(drops)]


def close_message(close: Close) -> Message:
    """The ``websocket.close`` message of *close*."""
    return {"type": _CLOSE, "code": close.code, "reason": close.reason}
