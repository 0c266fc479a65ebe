"""One WebSocket client: welcome, snapshot, commands, resume and abuse limits.

A session costs two tasks: trio-websocket's reader (which also answers pings and
Close frames) and the command loop here. Outbound data never needs a task of its
own: the hub writes through :class:`~takhin_ws._transport.SocketTransport`, which
starts a flusher only while the peer is backed up.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._channels import EVENT_STREAMS, stream_of
from ._codec import decode
from ._exceptions import RemoteProtocolError
from ._frames import Outbound
from ._hub import Client, Hub
from ._messages import (
    CLIENT_TYPES,
    PROTOCOL_VERSION,
    Error,
    Gap,
    Heartbeat,
    Limits,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Welcome,
)
from ._queue import Drop
from ._transport import SocketTransport

if TYPE_CHECKING:
    from ._config import Settings

__all__ = ["Session", "gap_frames"]

log = logging.getLogger("takhin_ws.session")

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_TRY_AGAIN: Final = 1013


def gap_frames(hub: Hub, drops: Sequence[Drop]) -> bytes:
    """The ``gap`` messages for *drops*, as ready frames."""
    return b"".join(
        hub.reply(
            Gap(
                channel=d.channel,
                first_offset=d.first_offset,
                last_offset=d.last_offset,
                count=d.count,
            )
        ).frame
        for d in drops
    )


class Session:
    """A registered client connection. Created by the server after the handshake."""

    __slots__ = (
        "_bad",
        "_closed",
        "_closing",
        "_joined",
        "_replay",
        "client",
        "hub",
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
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.transport = transport
        self.ws = ws
        self.client = client
        self._joined: dict[str, int] = {}
        self._bad: deque[float] | None = None  # times of recent invalid messages
        self._replay: list[Outbound] = []
        self._closing: trio.CancelScope | None = None  # the wait in close(), if any
        self._closed: trio.Event | None = None  # set when close() is done

    @property
    def id(self) -> str:
        return self.client.id

    # --- start ---

    def start(self, since: Mapping[str, int] | None = None, epoch: str | None = None) -> None:
        """Send ``welcome``, the latest snapshot and any replay, synchronously, so no
        publish can slip in between them."""
        hub = self.hub
        settings = self.settings
        self._note_joined(self.client.channels)
        self._send(
            Welcome(
                protocol=PROTOCOL_VERSION,
                client_id=self.client.id,
                epoch=hub.epoch,
                channels=tuple(sorted(self.client.channels)),
                heartbeat=Heartbeat(interval=settings.ping_interval, timeout=settings.ping_timeout),
                limits=Limits(
                    queue_size=settings.queue_size, max_message_size=settings.max_message_size
                ),
                offsets={stream: hub.offset(stream) for stream in EVENT_STREAMS},
            )
        )
        if since:
            self._resume(since, epoch, announce=True)
        self._send_snapshot()

    def _send_snapshot(self) -> None:
        if "metrics" in self.client.channels:
            latest = self.hub.latest("metrics")
            if latest is not None:
                self.transport.offer(latest)

    # --- the command loop ---

    async def run(self) -> None:
        """Process client messages until the connection closes."""
        ws = self.ws
        try:
            while True:
                message = await ws.get_message()
                if not self._handle(message):
                    await ws.aclose(CLOSE_POLICY, "too many invalid messages")
                    return
        except ConnectionClosed:
            if self._closed is not None:
                # close() sent our Close frame: keep the connection (and its reader)
                # until the peer's reply arrives or close() gives up, as RFC 6455 asks
                await self._closed.wait()
            return
        finally:
            # The connection ends with this method and its trio-websocket reader is
            # then cancelled, possibly before it records the peer's Close reply: a
            # close() waiting for that reply would wait out its whole deadline.
            if self._closing is not None:
                self._closing.cancel()

    def _handle(self, raw: str | bytes) -> bool:
        """Answer one message; False once the peer has sent too many bad ones."""
        try:
            envelope = decode(raw, accept=CLIENT_TYPES, max_size=self.settings.max_message_size)
        except RemoteProtocolError as exc:
            self._send(Error(code=exc.code, message=exc.message, path=exc.path))
            return self._count_bad()
        payload = envelope.payload
        if isinstance(payload, Ping):
            self._send(Pong())
        elif isinstance(payload, Subscribe):
            self._subscribe(payload)
        elif isinstance(payload, Unsubscribe):
            channels = self.hub.unsubscribe(self.client, payload.channels)
            for stream in {stream_of(ch) for ch in payload.channels}:
                if not any(stream_of(ch) == stream for ch in channels):
                    self._joined.pop(stream, None)
            self._send(Subscribed(channels=tuple(sorted(channels))))
        return True

    def _count_bad(self) -> bool:
        now = trio.current_time()
        if self._bad is None:
            self._bad = deque()
        bad = self._bad
        bad.append(now)
        horizon = now - self.settings.bad_message_window
        while bad and bad[0] < horizon:
            bad.popleft()
        return len(bad) <= self.settings.bad_message_limit

    def _subscribe(self, request: Subscribe) -> None:
        since = dict(request.since or {})
        for stream in since:
            if stream not in EVENT_STREAMS:
                self._send(
                    Error(
                        code="invalid_field",
                        message=f"cannot resume {stream!r}: only topics and groups keep history",
                        path=f"$.data.since.{stream}",
                    )
                )
                self._count_bad()
                return
        had_metrics = "metrics" in self.client.channels
        # streams not received before this request: everything after `since` is
        # replayed now, before any live message of them can arrive
        channels = self.hub.subscribe(self.client, request.channels)
        recovered = self._resume(since, request.epoch, announce=False)
        self._send(Subscribed(channels=tuple(sorted(channels)), recovered=recovered))
        self._flush_replay()
        self._note_joined(request.channels)
        if not had_metrics and "metrics" in channels:
            self._send_snapshot()

    # --- resume ---

    def _resume(
        self, since: Mapping[str, int], epoch: str | None, *, announce: bool
    ) -> dict[str, bool]:
        """Collect the messages after *since* (per stream) that this client has not
        received live; return ``recovered`` per stream."""
        recovered: dict[str, bool] = {}
        self._replay = []
        for stream, after in since.items():
            if stream not in EVENT_STREAMS:
                continue
            items = self.hub.replay(stream, after, epoch)
            recovered[stream] = items is not None
            if not items:
                continue
            joined = self._joined.get(stream)
            self._replay.extend(
                item
                for item in items
                if self._wants(item) and (joined is None or (item.offset or 0) <= joined)
            )
        if announce:
            self._send(
                Subscribed(channels=tuple(sorted(self.client.channels)), recovered=recovered)
            )
            self._flush_replay()
        return recovered

    def _flush_replay(self) -> None:
        for item in self._replay:
            self.transport.offer(item)
        self._replay = []

    def _wants(self, item: Outbound) -> bool:
        channels = self.client.channels
        return item.channel in channels or item.route in channels

    def _note_joined(self, channels: Iterable[str]) -> None:
        for stream in {stream_of(ch) for ch in channels}:
            if stream in EVENT_STREAMS:
                self._joined.setdefault(stream, self.hub.offset(stream))

    # --- helpers ---

    def _send(self, payload: Welcome | Subscribed | Error | Pong) -> None:
        self.transport.offer(self.hub.reply(payload))

    async def close(self, code: int, reason: str) -> None:
        """Close handshake, bounded by the write deadline; then drop the socket."""
        self._closed = trio.Event()
        try:
            with trio.move_on_after(self.settings.write_timeout) as self._closing:
                await self.ws.aclose(code, reason)
            self.transport.abort(reason)
        finally:
            self._closed.set()
