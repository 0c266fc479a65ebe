"""What a client sends on one connection: bytes read, checked, parsed into events.

:class:`InboundReader` reads the transport, passes every byte through
:class:`~takhin_ws.wire.websocket.inbound.InboundFilter` (the RFC 6455 checks, inflation) and
parses what passed with wsproto's post-handshake ``Connection`` into events: whole
text messages, pings, pongs, a Close. The wsproto object exists only while a frame or
a fragmented message is in progress: an idle connection holds none (it would cost
~1.7 KB per client, and a client sends a few bytes a minute: a pong, now and then a
command), and a new one is made when bytes arrive.

On a violation the events of every byte before it are handed on first (their
messages are answered), then :attr:`InboundReader.violation` is set; the session
sends its Close frame after its last answer with :meth:`InboundReader.refuse`, which
then ends the connection after a bounded linger (reading and discarding what the peer
still sends, so closing does not reset the connection before the Close frame is read).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Final

import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Event, TextMessage

from ..wire.websocket.frames import close_frame
from ..wire.websocket.inbound import InboundFilter, ProtocolViolation

if TYPE_CHECKING:
    from .transport import SocketTransport

__all__ = ["RECEIVE_BYTES", "InboundReader"]

log = logging.getLogger("takhin_ws.inbound")

#: Most bytes one read takes from the socket.
RECEIVE_BYTES: Final = 64 * 1024


class InboundReader:
    """The inbound half of one connection (see the module docstring)."""

    __slots__ = ("_filter", "_parts", "_pending", "_transport", "_ws")

    def __init__(
        self, transport: SocketTransport, inbound: InboundFilter, pending: bytes = b""
    ) -> None:
        self._transport = transport
        self._filter = inbound
        #: bytes read with the request head (the client's first frames), not yet parsed
        self._pending = pending
        self._ws: Connection | None = None  # only while a frame or message is in progress
        self._parts: list[str] | list[bytes | bytearray] | None = None  # a message so far

    @property
    def violation(self) -> ProtocolViolation | None:
        """The peer's protocol violation (every event before it has been returned)."""
        return self._filter.violation

    def read_nowait(self) -> list[Event] | None:
        """The events of what arrived (the bytes read with the request head first):
        possibly none (nothing yet, or a partial frame); ``None`` at the end of the
        stream. Raises ``trio.BrokenResourceError`` or ``trio.ClosedResourceError``
        once the connection is lost or aborted."""
        if self._pending:
            pending, self._pending = self._pending, b""
            return self.feed(pending)
        data = self._transport.receive_nowait(RECEIVE_BYTES)
        if data is None:
            return []
        return self.feed(data) if data else None

    def feed(self, data: bytes) -> list[Event]:
        """Check and parse *data*: the whole messages and control frames it completes."""
        passed = self._filter.feed(data)
        if not passed:
            return []
        ws = self._ws
        if ws is None:
            ws = self._ws = Connection(ConnectionType.SERVER)
        ws.receive_data(passed)
        events: list[Event] = []
        for event in ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                message = self._assemble(event)
                if message is not None:
                    events.append(message)
            else:
                events.append(event)
        if self._parts is None and self._filter.between_messages:
            self._ws = None  # nothing in progress: an idle connection keeps no parser
        return events

    def _assemble(self, event: TextMessage | BytesMessage) -> Event | None:
        """A whole message once its last fragment is in (the filter bounds its size)."""
        if event.message_finished and self._parts is None:
            return event
        if isinstance(event, TextMessage):
            texts: list[str] = self._parts or []  # type: ignore[assignment]
            texts.append(event.data)
            self._parts = texts
            if not event.message_finished:
                return None
            self._parts = None
            return TextMessage(data="".join(texts))
        chunks: list[bytes | bytearray] = self._parts or []  # type: ignore[assignment]
        chunks.append(event.data)
        self._parts = chunks
        if not event.message_finished:
            return None
        self._parts = None
        return BytesMessage(data=b"".join(chunks))

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
