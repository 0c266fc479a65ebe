"""The inbound filter at work: between a connection's transport and trio-websocket.

What trio-websocket reads passes :class:`~takhin_ws.wire.inbound.InboundFilter`; what it
writes goes to the transport unchanged.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Final

import trio

from ..wire.frames import close_frame
from ..wire.inbound import InboundFilter, ProtocolViolation

if TYPE_CHECKING:
    from .transport import SocketTransport

__all__ = ["RECEIVE_BYTES", "InboundStream"]

log = logging.getLogger("takhin_ws.inbound")

#: Most bytes one read hands trio-websocket (its own default is 4 KiB: a big message
#: would take a read, a filter pass and a wsproto call per 4 KiB).
RECEIVE_BYTES: Final = 64 * 1024


class InboundStream(trio.abc.Stream):
    """*transport* as trio-websocket sees it: what it receives passes the filter.

    On a violation trio-websocket first gets every byte that passed before it (the
    messages it holds are answered), then, once the handshake's answer has been sent
    (a violation right behind the upgrade request waits for the 101), a broken
    stream. The Close frame with the violation's code is the session's to send, after
    its last answer: :meth:`refuse` sends it (no data frame after it) and ends the
    connection after a bounded linger (reading and discarding what the peer still
    sends, so closing does not reset the connection before the Close frame is read)."""

    __slots__ = ("_answered", "_at", "_filter", "_ready", "_transport", "_waiter")

    def __init__(self, transport: SocketTransport, inbound: InboundFilter) -> None:
        self._transport = transport
        self._filter = inbound
        # passed, not yet asked for (an inflated message can be long): taken from
        # _at on, never sliced off the front
        self._ready = b""
        self._at = 0
        self._answered = False  # something (the handshake's answer) was sent
        self._waiter: trio.Event | None = None  # made only if a violation waits for it

    @property
    def violation(self) -> ProtocolViolation | None:
        """The peer's protocol violation, once every byte before it was handed on."""
        if self._at < len(self._ready):
            return None
        return self._filter.violation

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._transport.send_all(data)
        self._answered = True
        if self._waiter is not None:
            self._waiter.set()

    async def wait_send_all_might_not_block(self) -> None:
        await self._transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._at < len(self._ready):
            await trio.lowlevel.checkpoint()  # before taking: a cancellation loses nothing
        else:
            while True:
                violation = self._filter.violation
                if violation is not None:
                    await self._until_answered()
                    raise trio.BrokenResourceError(str(violation))
                data = await self._transport.receive_some(max_bytes)
                if not data:
                    return data
                self._ready, self._at = self._filter.feed(data), 0
                if self._ready:
                    break
        ready, start = self._ready, self._at
        end = len(ready) if max_bytes is None else min(start + max_bytes, len(ready))
        if end == len(ready):
            self._ready, self._at = b"", 0  # held no longer than needed
            return ready if start == 0 else ready[start:]
        self._at = end
        return ready[start:end]

    async def _until_answered(self) -> None:
        """Until the handshake's answer was sent: what a client sends right behind its
        upgrade request is refused after the 101, never in place of it."""
        if not self._answered:
            self._waiter = waiter = trio.Event()
            await waiter.wait()

    async def refuse(self) -> None:
        """Send the Close frame of the violation (no data frame after it), then end the
        connection after a bounded linger."""
        violation = self._filter.violation
        assert violation is not None
        log.info("closing a connection: %s", violation)
        transport = self._transport
        transport.begin_closing()
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await transport.send_all(close_frame(violation.code, violation.reason))
        await transport.linger_close()

    async def aclose(self) -> None:
        await self._transport.aclose()
