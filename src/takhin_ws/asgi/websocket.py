"""One WebSocket client behind ASGI, from ``websocket.connect`` to its end.

The handshake passes the same :class:`~takhin_ws.core.access.admission.Admission` as on the
standalone listener (shutting down, Origin, API keys, capacity, connect parameters;
the header checks and permessage-deflate are the ASGI server's), then the embedding
app's ``authorize`` hook; a refusal is an HTTP response with a JSON body when the
server offers the ``websocket.http.response`` extension (Hypercorn does), else a
``websocket.close`` before accepting (the server answers 403). Accepted, the client is
registered with an :class:`~takhin_ws.asgi.writer.AsgiWriter` as its subscriber, in
the same synchronous step as giving back its handshake slot and queueing the core's
first frames, and :class:`AsgiSession` runs two tasks: the reader (client messages
into the :class:`~takhin_ws.core.session.SessionCore`, replies into the writer's
queue) and the writer.

Heartbeat: ASGI has no ping message, so the app sends no WebSocket pings of its own;
a client's JSON ``ping`` is answered with ``pong`` as everywhere, and WebSocket pings
are the ASGI server's (Hypercorn's ``websocket_ping_interval``). A client that stops
reading is found by the write deadline once data backs up.

Shutdown: :meth:`AsgiSession.close_going_away` (the app's shutdown) sends Close 1001
instead of the backlog; a session cancelled from outside (the ASGI server's graceful
timeout) sends Close 1001 on its way out, shielded and bounded by the write deadline.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import trio

from .._exceptions import HubFullError
from ..core.access.admission import Upgrade
from ..core.access.renewal import token_session
from ..core.hub import Client
from ..core.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Close,
    SessionCore,
)
from ..net.heartbeat import sweep_period
from ..net.http.routes import refusal
from ..net.session import CLOSE_ABNORMAL, Ending, log_ending
from ..wire.http import HttpError
from ..wire.websocket.frames import Outbound
from .auth import Access, authorize_scope
from .scope import Receive, Scope, Send, client_address, has_http_response_extension, request_of
from .state import AppState
from .writer import AsgiWriter, close_message, gap_texts

__all__ = ["CLOSE_TOO_BIG", "AsgiSession", "serve_websocket"]

log = logging.getLogger("takhin_ws.server")

#: Close code of a message over ``max_message_size`` (RFC 6455 7.4.1).
CLOSE_TOO_BIG: Final = 1009
GOING_AWAY: Final = Close(CLOSE_GOING_AWAY, "server shutting down")


async def serve_websocket(state: AppState, scope: Scope, receive: Receive, send: Send) -> None:
    """Run one WebSocket connection scope to its end (never raises but cancellation)."""
    if (await receive())["type"] != "websocket.connect":
        return
    state.connections_total += 1
    remote = client_address(scope)
    try:
        await _connection(state, scope, receive, send, remote)
    except Exception:
        log.exception("a WebSocket connection from %s failed; it was closed", remote)


async def _connection(
    state: AppState, scope: Scope, receive: Receive, send: Send, remote: str
) -> None:
    request = request_of(scope)
    try:
        state.hosts.check(request)
        hub = state.running_services().hub
        upgrade = state.admission.admit(
            request,
            accepting=state.accepting,
            occupied=len(hub) + state.pending,
            capacity=hub.max_clients,
            owns_handshake=False,
        )
    except HttpError as exc:
        await _refuse(state, scope, send, exc, remote)
        return
    # the same synchronous step as the admission: the slot is taken
    state.pending += 1
    try:
        try:
            access = await authorize_scope(state.authorize, scope)
            channels = _channels(upgrade, access)
        except HttpError as exc:
            await _refuse(state, scope, send, exc, remote)
            return
        await send({"type": "websocket.accept", "subprotocol": upgrade.subprotocol})
    finally:
        state.pending -= 1
    # registration and the first frames: one synchronous step with giving the slot back
    settings = state.settings
    services = state.services
    if services is None or not state.accepting:  # stopped during the handshake
        await send(
            {"type": "websocket.close", "code": GOING_AWAY.code, "reason": GOING_AWAY.reason}
        )
        return
    writer = AsgiWriter(
        send,
        queue_size=settings.queue_size,
        write_timeout=settings.write_timeout,
        gap_texts=None if upgrade.variant.bare else gap_texts,
    )
    try:
        # a signed token's claim filters what reaches the client (core/access/permissions)
        client = services.hub.add_client(
            writer, channels, variant=upgrade.variant, permissions=upgrade.auth.permissions
        )
    except HubFullError:
        await send(close_message(Close(CLOSE_TRY_AGAIN, "connection limit reached")))
        return
    series = None if services.producer is None else services.producer.series
    permits = None if access.channels is None else access.permits
    authenticator = state.admission.authenticator
    authenticator.admitted[upgrade.auth.kind] += 1
    token = token_session(upgrade.auth, authenticator, settings.token_expiry_notice)
    core = SessionCore(
        services.hub,
        settings,
        client,
        clock=trio.current_time,
        series=series,
        permits=permits,
        token=token,
    )
    session = AsgiSession(core, writer, receive, send, max_message_size=settings.max_message_size)
    state.sessions.add(session)
    try:
        session.start(upgrade, source=services.source_kind)
        who = remote if access.identity is None else f"{access.identity} at {remote}"
        log.debug("client %s (%s) connected through ASGI", client.id, who)
        await session.run(settings.write_timeout)
    finally:
        state.session_ended(session)
        services.hub.remove_client(client)
        log_ending(client.id, remote, session.ending())


def _channels(upgrade: Upgrade, access: Access) -> list[str] | None:
    """The connection's first subscription, within what *access* permits (403 if
    ``?channels=`` names a channel outside it)."""
    if access.channels is None:
        return upgrade.channels
    if upgrade.channels is None:
        return access.default_channels()
    refused = sorted({c for c in upgrade.channels if not access.permits(c)})
    if refused:
        raise HttpError(403, f"channels not allowed on this connection: {', '.join(refused)}")
    return upgrade.channels


async def _refuse(state: AppState, scope: Scope, send: Send, exc: HttpError, remote: str) -> None:
    """Answer a refused handshake with its status and JSON body (or, without the
    HTTP-response extension, close before accepting: the server answers 403)."""
    state.count_rejected(exc)
    if exc.status in (401, 403):
        log.warning("refused a WebSocket upgrade from %s: %d %s", remote, exc.status, exc.message)
    if not has_http_response_extension(scope):
        await send(close_message(Close(CLOSE_POLICY, exc.message)))
        return
    answer = refusal(exc)
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode(), v.encode()) for k, v in answer.headers),
    ]
    await send(
        {"type": "websocket.http.response.start", "status": answer.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": answer.body})


class AsgiSession:
    """A registered ASGI client: its core, its writer, and the connection's receive."""

    __slots__ = ("_by_client", "_max_size", "_receive", "_send", "core", "writer")

    def __init__(
        self,
        core: SessionCore,
        writer: AsgiWriter,
        receive: Receive,
        send: Send,
        *,
        max_message_size: int,
    ) -> None:
        self.core = core
        self.writer = writer
        self._receive = receive
        self._send = send
        self._max_size = max_message_size
        #: the client's disconnect, once it came (its close code)
        self._by_client: int | None = None

    @property
    def client(self) -> Client:
        return self.core.client

    @property
    def backlogged(self) -> bool:
        return self.writer.backlogged

    def start(self, upgrade: Upgrade, *, source: str | None = None) -> None:
        """``welcome`` (naming the metrics *source*'s kind), any replay and the latest
        snapshot, queued synchronously."""
        self._offer_reply(self.core.start(upgrade.since, upgrade.epoch, source=source).frames)

    def close_going_away(self) -> None:
        """Close with 1001 (shutdown): instead of anything still queued."""
        self.writer.close(GOING_AWAY, discard=True)

    async def run(self, write_timeout: float) -> None:
        """Read and write until the connection ends; Close 1001 if cancelled first."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, nursery.cancel_scope, write_timeout)
                if self.core.token is not None:
                    nursery.start_soon(self._expire)
                await self._read()
                nursery.cancel_scope.cancel()  # the peer is gone
        finally:
            if self._by_client is None and self.writer.closing is None:
                # cancelled from outside (the ASGI server stopping): say so, briefly
                self.writer.close(GOING_AWAY, discard=True)
                with trio.CancelScope(shield=True), trio.move_on_after(write_timeout):
                    await self._send(
                        {
                            "type": "websocket.close",
                            "code": GOING_AWAY.code,
                            "reason": GOING_AWAY.reason,
                        }
                    )

    async def _expire(self) -> None:
        """A token connection's ``token_expiring``, then its close 4001: checked as
        often as the standalone server's heartbeat sweep does (no sweep here; a token
        connection pays this task, the others nothing)."""
        period = sweep_period(self.core.settings)
        while True:
            await trio.sleep(period)
            reply = self.core.expiry(time.time())
            if reply is None:
                continue
            self._offer_reply(reply.frames)
            if reply.close is not None:
                self.writer.close(reply.close)
                return

    async def _write(self, scope: trio.CancelScope, write_timeout: float) -> None:
        """The writer; once it has sent Close, wait (bounded) for the peer's reply,
        then end the session. A dropped client ends it at once."""
        closed = await self.writer.run()
        if closed is not None:
            await trio.sleep(write_timeout)  # RFC 6455: let the peer answer our Close
        scope.cancel()

    async def _read(self) -> None:
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._by_client = int(message.get("code") or CLOSE_ABNORMAL)
                return
            if kind != "websocket.receive" or self.writer.closing is not None:
                continue  # after our close decision, input is not answered
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            size = len(data.encode()) if isinstance(data, str) else len(data)
            if size > self._max_size:
                reason = f"message exceeds the limit of {self._max_size} bytes"
                self.writer.close(Close(CLOSE_TOO_BIG, reason))
                continue
            delay = self.core.command_delay()
            if delay:
                await trio.sleep(delay)  # throttled: this sender waits, alone
            reply = self.core.receive(data)
            self._offer_reply(reply.frames)
            if reply.close is not None:
                self.writer.close(reply.close)

    def _offer_reply(self, frames: tuple[Outbound, ...]) -> None:
        offer = self.core.client.offer  # in the client's wire variant
        for frame in frames:
            offer(frame)

    def ending(self) -> Ending:
        """How the session ended: who closed it, the code, the reason."""
        dropped = self.writer.dropped
        if dropped is not None:
            return Ending("dropped", CLOSE_ABNORMAL, dropped)
        close = self.writer.closing
        if close is not None:
            return Ending("server", close.code, close.reason)
        return Ending("client", self._by_client or CLOSE_ABNORMAL, "")
