"""One WebSocket client: the I/O loop around its :class:`~takhin_ws.core.session.SessionCore`.

The core decides what is sent and when to close; this loop reads the client's
frames (:class:`~takhin_ws.net.inboundio.InboundReader`: checked, parsed by wsproto),
hands each message to the core, writes the reply's frames to the transport in the
same synchronous step, answers pings and the peer's Close, and carries out close
decisions. After sending its own Close frame a session keeps the connection until
the peer's Close arrives or the write deadline passes (RFC 6455 7.1.1).

A session is one task: the connection's own, which runs this loop. Outbound data
never needs a task: the hub writes through
:class:`~takhin_ws.net.transport.SocketTransport`, which starts a flusher only while
the peer is backed up. Nothing else exists until asked: a close asked for from
outside (:meth:`Session.close`, at shutdown) sends the Close frame at once and starts
one short task that drops the connection if the peer's reply does not come in time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

import trio
from attrs import frozen
from wsproto.events import CloseConnection, Event, Ping, TextMessage

from ..core.access.auth import AuthKind
from ..core.access.renewal import TokenSession
from ..core.hub import Client, Hub
from ..core.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Close,
    Reply,
    SessionCore,
)
from ..wire.websocket.frames import close_frame, pong_frame
from .transport import SocketTransport

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..core.series import Series
    from .inboundio import InboundReader

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TRY_AGAIN",
    "Ending",
    "Session",
    "endings_logged",
    "log_ending",
]

_log = logging.getLogger("takhin_ws.server")
#: The level of the one line a session's end is logged with.
ENDING_LEVEL: Final = logging.INFO

#: What a client sees when the connection ends without a Close frame (RFC 6455 7.1.5).
CLOSE_ABNORMAL: Final = 1006
#: A Close frame without a status code reads as this code (RFC 6455 7.1.5).
CLOSE_NO_STATUS: Final = 1005
#: Why a connection ended when the peer closed TCP without a Close frame.
PEER_VANISHED: Final = "the peer closed the TCP connection without a Close frame"


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
        "_done",
        "_inbound",
        "_nursery",
        "auth",
        "core",
        "peer_closed",
        "settings",
        "transport",
    )

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        transport: SocketTransport,
        client: Client,
        series: Series | None = None,
        *,
        nursery: trio.Nursery,
        inbound: InboundReader,
        auth: AuthKind,
        token: TokenSession | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        #: how the client authenticated (``none``, ``api_key``, ``token``)
        self.auth = auth
        self.core = SessionCore(
            hub, settings, client, clock=trio.current_time, series=series, token=token
        )
        self._nursery = nursery  # where the closer of close() runs (the server's)
        self._inbound = inbound
        #: the Close this server sent (or decided to send), once it did
        self._close: Close | None = None
        #: the peer's Close frame, once it arrived (code 1005: it had no status code)
        self.peer_closed: Close | None = None
        # made only when close() is asked (an idle session holds no event or scope)
        self._done: trio.Event | None = None

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
        head: bytes,
    ) -> None:
        """Send ``welcome``, the latest snapshot and any replay, synchronously (in the
        same step as the client's registration, so no publish slips in between),
        behind *head* (the ``101``) and in one write with it: the connection's first
        chunk, which nothing is queued before and which is never dropped."""
        variant = self.core.client.variant
        chunks = [head]
        for item in self.core.start(since, epoch, source=source).frames:
            out = item.variant(variant)
            if out is not None:
                chunks.append(out.frame)
        self.transport.send_control_nowait(b"".join(chunks))

    async def run(self) -> None:
        """Process client frames until the connection closes, or close it."""
        inbound = self._inbound
        transport = self.transport
        try:
            while True:
                events = inbound.read_nowait()
                if events is None:
                    transport.abort(PEER_VANISHED)
                    return
                for event in events:
                    if not await self._on(event):
                        return
                violation = inbound.violation
                if violation is not None:
                    if self._close is None:
                        # every message before the violation is answered: now its Close
                        self._close = Close(violation.code, violation.reason)
                        await inbound.refuse()
                    return
                if self._close is not None and self._done is None:
                    # a message made this loop close: the rest of what was read held no
                    # Close of the peer (that returned above), so wait for it
                    await self._close_connection(self._close)
                    return
                # trio's own wait: an idle connection holds no coroutine of ours below
                # this one (and the wait is this loop's checkpoint, however busy the peer)
                await transport.wait_readable()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # lost (a reset), or aborted: heartbeat, write deadline, our close's deadline
            self.transport.abort(f"connection lost: {exc}")
        finally:
            if self._done is not None:
                self._done.set()

    async def _on(self, event: Event) -> bool:
        """Handle one event; False once the connection is done."""
        if isinstance(event, CloseConnection):
            self.peer_closed = Close(event.code, event.reason or "")
            if self._close is None:  # the peer closes first: answer with its code
                code = None if event.code == CLOSE_NO_STATUS else event.code
                with trio.move_on_after(self.settings.write_timeout):
                    await self.transport.send_all(close_frame(code, event.reason or ""))
            return False
        if self._close is not None:
            return True  # after our Close frame: only the peer's Close matters
        if isinstance(event, Ping):
            self.transport.send_control_nowait(pong_frame(event.payload))
            return True
        if not isinstance(event, TextMessage):
            # a pong: any byte read counts as the peer being alive (a binary message
            # never gets here: the inbound filter refuses it with 1003)
            return True
        delay = self.core.command_delay()
        if delay:
            await trio.sleep(delay)  # throttled: this sender waits, alone
            if self.transport.closing:
                return True  # closed from outside meanwhile
        close = self._handle(event.data)
        if close is not None:
            # the messages after it are not answered, but a Close among them ends the
            # handshake at once (:meth:`run` waits for it only if none came)
            self._send_close(close)
        return True

    def _handle(self, message: str) -> Close | None:
        """Answer one message; the Close it calls for, if any."""
        reply = self.core.receive(message)
        self._write(reply)
        return reply.close

    def ending(self) -> Ending:
        """How the connection ended (or is ending): who closed it, the code, the reason."""
        if self._close is not None:
            return Ending("server", self._close.code, self._close.reason)
        closed = self.peer_closed
        if closed is not None:
            return Ending("client", closed.code, closed.reason)
        # the server asks once it has aborted the transport, which keeps the first reason
        return Ending("dropped", CLOSE_ABNORMAL, self.transport.abort_reason or "connection lost")

    def _write(self, reply: Reply) -> None:
        offer = self.core.client.offer  # in the client's wire variant
        for frame in reply.frames:
            offer(frame)

    def _send_close(self, close: Close) -> None:
        """Our Close frame, behind everything already written (no data frame after it)."""
        self._close = close
        transport = self.transport
        if transport.closing:
            return
        transport.begin_closing()
        transport.send_control_nowait(close_frame(close.code, close.reason))

    async def _close_connection(self, close: Close) -> None:
        """The rest of the close handshake this loop started (its Close frame is sent):
        RFC 6455, read until the peer's Close, bounded by the write deadline; then drop
        the socket."""
        with trio.move_on_after(self.settings.write_timeout):
            while self.peer_closed is None:
                await self.transport.wait_readable()
                events = self._inbound.read_nowait()
                if events is None:
                    break
                for event in events:
                    await self._on(event)
        self.transport.abort(close.reason)

    def check_expiry(self, now: float) -> None:
        """The heartbeat sweep's call at wall-clock *now* (a token connection): send
        ``token_expiring`` when due, close with 4001 once the token expired."""
        reply = self.core.expiry(now)
        if reply is None:
            return
        self._write(reply)
        if reply.close is not None:
            self.close(reply.close.code, reply.close.reason)

    def close(self, code: int, reason: str) -> None:
        """Close this session with *code* from outside its loop (the shutdown): the
        Close frame goes out now; the loop ends when the peer's Close arrives, and a
        task in the server's nursery drops the connection if that takes longer than
        the write deadline. Idempotent; a session already closing keeps its own code."""
        if self._close is not None or self.transport.closing:
            return
        self._send_close(Close(code, reason))
        self._done = done = trio.Event()
        self._nursery.start_soon(self._closer, done, reason)

    async def _closer(self, done: trio.Event, reason: str) -> None:
        with trio.move_on_after(self.settings.write_timeout):
            await done.wait()
        self.transport.abort(reason)


def endings_logged() -> bool:
    """Whether :func:`log_ending` writes a line (else its peer address need not be
    looked up: a system call per connection)."""
    return _log.isEnabledFor(ENDING_LEVEL)


def log_ending(client_id: str, remote: str, ending: Ending) -> None:
    """One line per session end, at one level, with structured fields for JSON logs."""
    if not endings_logged():
        return  # a crowd leaving at once builds no line nobody reads
    closed_by = {"server": "by the server", "client": "by the client", "dropped": "dropped"}
    _log.log(
        ENDING_LEVEL,
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
