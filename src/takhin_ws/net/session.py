"""One WebSocket client: the I/O loop around its :class:`~takhin_ws.core.session.SessionCore`.

The core decides what is sent and when to close; this loop reads the client's
messages from trio-websocket, hands each to the core, writes the reply's frames to
the transport in the same synchronous step, and carries out close decisions. A close
asked for from outside (:meth:`Session.close`, at shutdown) runs in a task of the
connection's own nursery; the loop waits for it, so the connection and its reader
stay until the peer's Close reply (RFC 6455). Nothing of this exists until asked: an
idle session holds no event and no cancel scope.

A session costs two tasks: trio-websocket's reader (which also answers pings and
Close frames) and the loop here. Outbound data never needs a task of its own: the
hub writes through :class:`~takhin_ws.net.transport.SocketTransport`, which starts a
flusher only while the peer is backed up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

import trio
from attrs import frozen
from trio_websocket import ConnectionClosed, WebSocketConnection

from ..core.hub import Client, Hub
from ..core.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Close,
    Reply,
    SessionCore,
    gap_frames,
)
from .transport import SocketTransport

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..core.series import Series
    from .inboundio import InboundStream

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TRY_AGAIN",
    "Ending",
    "Session",
    "gap_frames",
    "log_ending",
]

_log = logging.getLogger("takhin_ws.server")

#: What a client sees when the connection ends without a Close frame (RFC 6455 7.1.5).
CLOSE_ABNORMAL: Final = 1006
#: Abort reasons of the server's own teardown after a session ended (not a cause).
_OUR_TEARDOWN: Final = "connection"


@frozen
class Ending:
    """How a session ended: ``by`` is ``server`` (it sent Close), ``client`` (the peer
    did) or ``dropped`` (no Close handshake: heartbeat, write deadline, reset)."""

    by: Literal["server", "client", "dropped"]
    code: int
    reason: str


class Session:
    """A registered client connection. Created by the server after the handshake."""

    __slots__ = (
        "_close",
        "_closed",
        "_inbound",
        "_nursery",
        "core",
        "settings",
        "transport",
        "ws",
    )

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        transport: SocketTransport,
        ws: WebSocketConnection,
        client: Client,
        series: Series | None = None,
        *,
        nursery: trio.Nursery,
        inbound: InboundStream | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.ws = ws
        self.core = SessionCore(hub, settings, client, clock=trio.current_time, series=series)
        self._nursery = nursery  # the connection's own (its reader's) nursery
        self._inbound = inbound  # what trio-websocket reads: it knows a peer's violation
        self._close: Close | None = None
        # made only when close() is asked (an idle session holds no event or scope)
        self._closed: trio.Event | None = None

    @property
    def id(self) -> str:
        return self.core.id

    @property
    def client(self) -> Client:
        return self.core.client

    def start(
        self,
        since: Mapping[str, int] | None = None,
        epoch: str | None = None,
        *,
        source: str | None = None,
    ) -> None:
        """Send ``welcome``, the latest snapshot and any replay, synchronously (in the
        same step as the client's registration, so no publish slips in between)."""
        self._write(self.core.start(since, epoch, source=source))

    async def run(self) -> None:
        """Process client messages until the connection closes, or close it."""
        try:
            while True:
                message = await self.ws.get_message()
                delay = self.core.command_delay()
                if delay:
                    await trio.sleep(delay)  # throttled: this sender waits, alone
                if not self._handle(message):
                    break
        except ConnectionClosed:
            if self._closed is not None:
                # close() sent our Close frame: keep the connection (and its reader)
                # until the peer's reply arrives or the close gives up
                await self._closed.wait()
                return
            violation = None if self._inbound is None else self._inbound.violation
            if violation is not None and self._inbound is not None:
                # every message before the violation is answered: now its Close frame
                self._close = Close(violation.code, violation.reason)
                await self._inbound.refuse()
            return
        if self._close is not None and self._closed is None:
            await self._close_connection(self._close)

    def ending(self) -> Ending:
        """How the connection ended (or is ending): who closed it, the code, the reason."""
        if self._close is not None:
            return Ending("server", self._close.code, self._close.reason)
        dropped = self.transport.abort_reason
        if dropped is not None and not dropped.startswith(_OUR_TEARDOWN):
            return Ending("dropped", CLOSE_ABNORMAL, dropped)
        closed = self.ws.closed
        if closed is not None and closed.code != CLOSE_ABNORMAL:
            return Ending("client", closed.code, closed.reason or "")
        return Ending("dropped", CLOSE_ABNORMAL, dropped or "connection lost")

    def _handle(self, message: str | bytes) -> bool:
        """Answer one message; False once the connection is to be closed."""
        reply = self.core.receive(message)
        self._write(reply)
        if reply.close is not None:
            self._close = reply.close
            return False
        return True

    def _write(self, reply: Reply) -> None:
        offer = self.core.client.offer  # in the client's wire variant
        for frame in reply.frames:
            offer(frame)

    def close(self, code: int, reason: str) -> None:
        """Ask this session to close with *code*: a task in the connection's own nursery
        sends Close and waits for the reply within the write deadline; the session's
        loop sees the connection closing, waits for that, and ends (:meth:`run` returns).
        Idempotent; a session already closing keeps its own code."""
        if self._close is not None:
            return
        self._close = Close(code, reason)
        self._closed = closed = trio.Event()

        async def closer() -> None:
            try:
                await self._close_connection(Close(code, reason))
            finally:
                closed.set()

        self._nursery.start_soon(closer)

    async def _close_connection(self, close: Close) -> None:
        """Close handshake, bounded by the write deadline; then drop the socket.

        RFC 6455: after sending Close, keep the connection (and its reader) until the
        peer's Close arrives."""
        with trio.move_on_after(self.settings.write_timeout):
            await self.ws.aclose(close.code, close.reason)
        self.transport.abort(close.reason)


def log_ending(client_id: str, remote: str, ending: Ending) -> None:
    """One line per session end, at one level, with structured fields for JSON logs."""
    closed_by = {"server": "by the server", "client": "by the client", "dropped": "dropped"}
    _log.info(
        "client %s (%s) closed %s: %d %s",
        client_id,
        remote,
        closed_by[ending.by],
        ending.code,
        ending.reason or "(no reason)",
        extra={
            "client_id": client_id,
            "remote": remote,
            "closed_by": ending.by,
            "close_code": ending.code,
            "close_reason": ending.reason,
        },
    )
