"""The inbound filter at work: between a connection's transport and trio-websocket.

What trio-websocket reads passes :class:`~takhin_ws.wire.inbound.InboundFilter`; what it
writes goes to the transport unchanged.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING

import trio

from ..wire.frames import close_frame
from ..wire.inbound import InboundFilter, ProtocolViolation

if TYPE_CHECKING:
    from .transport import SocketTransport

__all__ = ["InboundStream"]

log = logging.getLogger("takhin_ws.inbound")


class InboundStream(trio.abc.Stream):
    """*transport* as trio-websocket sees it: what it receives passes the filter.

    On a violation the peer gets a Close frame with the code, no data frame after it,
    and the connection ends after a bounded linger (reading and discarding what the
    peer still sends, so closing does not reset the connection before the Close frame
    is read); trio-websocket then sees a broken stream."""

    __slots__ = ("_filter", "_ready", "_transport", "violation")

    def __init__(self, transport: SocketTransport, inbound: InboundFilter) -> None:
        self._transport = transport
        self._filter = inbound
        self._ready = b""  # passed, not yet asked for (an inflated message can be long)
        self.violation: ProtocolViolation | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.violation is not None:
            raise trio.BrokenResourceError(str(self.violation))
        if self._ready:
            await trio.lowlevel.checkpoint()  # before taking: a cancellation loses nothing
        while not self._ready:
            data = await self._transport.receive_some(max_bytes)
            if not data:
                return data
            try:
                self._ready = self._filter.feed(data)
            except ProtocolViolation as exc:
                await self._refuse(exc)
                raise trio.BrokenResourceError(str(exc)) from None
        if max_bytes is None or len(self._ready) <= max_bytes:
            out, self._ready = self._ready, b""
        else:
            out, self._ready = self._ready[:max_bytes], self._ready[max_bytes:]
        return out

    async def _refuse(self, violation: ProtocolViolation) -> None:
        self.violation = violation
        log.info("closing a connection: %s", violation)
        transport = self._transport
        transport.begin_closing()
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await transport.send_all(close_frame(violation.code, violation.reason))
        await transport.linger_close()

    async def aclose(self) -> None:
        await self._transport.aclose()
