"""One client's protocol state, without I/O: what to send, and when to close (sans-IO).

:class:`SessionCore` is to a connection what h11's ``Connection`` or websockets'
``ServerProtocol`` is: it is fed what happened (the session starts, the client sent a
message, the stream's epoch changed) and answers with a :class:`Reply`: the frames to
write, in order, and whether to close the connection (code and reason). It holds the
welcome, the subscription changes, resume (``since``/``epoch``), and the abuse limit;
it never touches a socket, a task or a clock of its own (the clock is injected).

Live data does not pass through here: the hub writes published frames straight to the
client's subscriber (the fast path). The core only decides what a client is sent in
answer to something, so every answer is one synchronous step with the hub: a caller
that writes a reply's frames before its next checkpoint (as :class:`~takhin_ws.net.session.Session`
does) can never see a live message slip in between a replay and the ``subscribed``
that announces it.

Extension points: :meth:`SessionCore._reply` is the one place a per-client message is
encoded (a connection that wants no replies returns none there); :meth:`_latest` picks
the frame a newly subscribed channel gets at once; message types dispatch in
:meth:`receive`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from .._exceptions import RemoteProtocolError
from ..wire.auth import Refresh
from ..wire.channels import EVENT_STREAMS, MAX_OFFSET, stream_of
from ..wire.codec import decode
from ..wire.messages import (
    CLIENT_TYPES,
    PROTOCOL_VERSION,
    Error,
    Heartbeat,
    History,
    Limits,
    Payload,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Welcome,
)
from ..wire.websocket.frames import Outbound
from .access.filtered import filtered_history
from .access.permissions import refused as refused_channels
from .access.renewal import TokenSession, expiry, refresh
from .hub import Client, Hub
from .lag.history import group_history
from .replies import Close, Reply

if TYPE_CHECKING:
    from ..config.settings import Settings
    from .series import Series

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TRY_AGAIN",
    "Close",
    "Reply",
    "SessionCore",
]

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_POLICY: Final = 1008
CLOSE_TRY_AGAIN: Final = 1013

TOO_MANY_INVALID: Final = "too many invalid messages"
BINARY_REFUSED: Final = "binary frames are not supported: send JSON text"
#: Error code of a ``subscribe`` to a channel the connection's permissions (an
#: embedding app's, or its token's claim) exclude.
FORBIDDEN: Final = "forbidden"


class SessionCore:
    """The protocol state of one registered client (see the module docstring).

    *clock* returns seconds on a monotonic scale (the abuse window is measured in it).
    Not thread-safe; one per connection.
    """

    __slots__ = (
        "_bad",
        "_clock",
        "_joined",
        "_stamp",
        "_tokens",
        "client",
        "hub",
        "permits",
        "series",
        "settings",
        "token",
    )

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        client: Client,
        *,
        clock: Callable[[], float],
        series: Series | None = None,
        permits: Callable[[str], bool] | None = None,
        token: TokenSession | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.client = client
        self._clock = clock
        #: whether this client may subscribe to a channel (``None``: to every one);
        #: an embedding app's authorization decides it (``takhin_ws.asgi``)
        self.permits = permits
        #: the chart series a ``history`` request is answered from (none: empty)
        self.series = series
        #: per event stream, the stream's offset when this client started receiving
        #: it live: a replay sends only what is older (the rest arrived live)
        self._joined: dict[str, int] = {}
        self._bad: deque[float] | None = None  # times of recent invalid messages
        # the command token bucket: `command_burst` tokens, `command_rate` per second
        self._tokens = float(settings.command_burst)
        self._stamp = clock()
        #: the grant of a connection that came with a signed token (else ``None``)
        self.token = token

    @property
    def id(self) -> str:
        return self.client.id

    # --- inputs ---

    def start(
        self,
        since: Mapping[str, int] | None = None,
        epoch: str | None = None,
        *,
        source: str | None = None,
    ) -> Reply:
        """The first frames of the connection: ``welcome``, then (with *since*) the
        ``subscribed`` announcing the resume and the replay, then the latest snapshot.
        *source* is the metrics source's kind ``welcome`` announces."""
        hub = self.hub
        settings = self.settings
        self._note_joined(self.client.channels)
        out = self._reply(
            Welcome(
                protocol=PROTOCOL_VERSION,
                client_id=self.client.id,
                epoch=hub.epoch,
                channels=tuple(sorted(self.client.channels)),
                heartbeat=Heartbeat(interval=settings.ping_interval, timeout=settings.ping_timeout),
                limits=Limits(
                    queue_size=settings.queue_size,
                    max_message_size=settings.max_message_size,
                    max_channels=settings.max_channels,
                ),
                offsets={stream: hub.offset(stream) for stream in EVENT_STREAMS},
                source=source,
            )
        )
        if since:
            recovered, replay = self._resume(since, epoch)
            channels = self.client.channels
            out += self._reply(
                Subscribed(
                    channels=tuple(sorted(channels)), recovered=recovered, count=len(channels)
                )
            )
            out += replay
        out += self._latest(self.client.channels)
        return Reply(tuple(out))

    def command_delay(self) -> float:
        """Seconds the next client message must wait before it is handled (0: at once).

        A token bucket: ``command_burst`` messages at once, then ``command_rate`` per
        second. Each call takes a token; a sender faster than that is throttled (its
        messages wait, and the connection's reader with them), never starving others."""
        rate = self.settings.command_rate
        now = self._clock()
        self._tokens = min(
            float(self.settings.command_burst), self._tokens + (now - self._stamp) * rate
        )
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / rate

    def receive(self, message: str | bytes) -> Reply:
        """Answer one client message (text: the protocol has no binary messages; a bare
        connection ignores them all)."""
        if self.client.variant.bare:
            return Reply()
        if not isinstance(message, str):
            return Reply(close=Close(CLOSE_UNSUPPORTED_DATA, BINARY_REFUSED))
        try:
            envelope = decode(message, accept=CLIENT_TYPES, max_size=self.settings.max_message_size)
        except RemoteProtocolError as exc:
            return self._invalid(Error(code=exc.code, message=exc.message, path=exc.path))
        payload = envelope.payload
        if isinstance(payload, Ping):
            return Reply(tuple(self._reply(Pong())))
        if isinstance(payload, Subscribe):
            return self._subscribe(payload)
        if isinstance(payload, Unsubscribe):
            return self._unsubscribe(payload)
        if isinstance(payload, History):
            if payload.channel is not None:  # one group's lag (core/lag/history)
                return group_history(self, payload.channel)
            return Reply(tuple(self._history()))
        if isinstance(payload, Refresh):
            return refresh(self, payload)
        return Reply()  # pragma: no cover - decode accepts only CLIENT_TYPES

    def expiry(self, now: float) -> Reply | None:
        """At wall-clock *now* (Unix seconds): ``token_expiring`` once, before the
        token's ``exp``; a close (4001) from ``exp`` on; else ``None``."""
        return None if self.token is None else expiry(self, now)

    # --- commands ---

    def _history(self) -> list[Outbound]:
        """The chart series kept (empty without a series: a hub with no producer),
        encoded once per tick for every client asking meanwhile (a reconnecting crowd
        costs one encoding); none on a bare connection, as every reply."""
        if self.series is None:
            return self._reply(History(interval=self.settings.interval))
        if self.client.variant.bare:
            return []
        permissions = self.client.permissions
        if permissions is None:
            return [self.series.reply(self.hub.reply)]
        # a restricted client: its groups only (encoded for it: a rare request)
        return self._reply(filtered_history(self.series.history(), permissions))

    def _subscribe(self, request: Subscribe) -> Reply:
        since = dict(request.since or {})
        for stream, offset in since.items():
            if stream not in EVENT_STREAMS:
                return self._invalid(
                    Error(
                        code="invalid_field",
                        message=f"cannot resume {stream!r}: only topics and groups keep history",
                        path=f"$.data.since.{stream}",
                    )
                )
            if not 0 <= offset <= MAX_OFFSET:
                return self._invalid(
                    Error(
                        code="invalid_field",
                        message=f"data.since.{stream}: an offset is 0 to {MAX_OFFSET}",
                        path=f"$.data.since.{stream}",
                    )
                )
        before = self.client.channels
        added = frozenset(request.channels) - before
        refused = refused_channels(added, self.client.permissions, self.permits)
        if refused:
            if self.token is not None:
                self.token.authenticator.refusals[FORBIDDEN] += 1
            message = f"not allowed on this connection: {', '.join(refused)}"
            error = Error(code=FORBIDDEN, message=message, path="$.data.channels")
            return Reply(tuple(self._reply(error)))
        settings = self.settings
        refusal = self.hub.subscribe_refusal(
            before, added, settings.max_channels, settings.max_views
        )
        if refusal is not None:  # over a limit, or a view that cannot be had
            error, invalid = refusal
            return self._invalid(error) if invalid else Reply(tuple(self._reply(error)))
        # streams not received before this request: everything after `since` is
        # replayed now, before any live message of them can arrive
        channels = self.hub.subscribe(self.client, added)
        recovered, replay = self._resume(since, request.epoch)
        out = self._reply(
            Subscribed(channels=tuple(sorted(added)), recovered=recovered, count=len(channels))
        )
        out += replay
        self._note_joined(request.channels)
        out += self._latest(added)
        return Reply(tuple(out))

    def _unsubscribe(self, request: Unsubscribe) -> Reply:
        removed = frozenset(request.channels) & self.client.channels
        channels = self.hub.unsubscribe(self.client, removed)
        self._forget_streams(removed)
        reply = Subscribed(channels=tuple(sorted(removed)), count=len(channels))
        return Reply(tuple(self._reply(reply)))

    def _forget_streams(self, removed: Iterable[str]) -> None:
        """The streams no channel of the subscription carries any more: a later
        subscribe to them joins afresh."""
        channels = self.client.channels
        for stream in {stream_of(ch) for ch in removed}:
            if not any(stream_of(ch) == stream for ch in channels):
                self._joined.pop(stream, None)

    def _invalid(self, error: Error) -> Reply:
        """Answer a bad message with *error*; close (1008) once there were too many."""
        out = tuple(self._reply(error))
        if self._count_bad():
            return Reply(out)
        return Reply(out, Close(CLOSE_POLICY, TOO_MANY_INVALID))

    def _count_bad(self) -> bool:
        """Record one invalid message; False once the window holds more than the limit."""
        now = self._clock()
        if self._bad is None:
            self._bad = deque()
        bad = self._bad
        bad.append(now)
        horizon = now - self.settings.bad_message_window
        while bad and bad[0] < horizon:
            bad.popleft()
        return len(bad) <= self.settings.bad_message_limit

    # --- resume ---

    def _resume(
        self, since: Mapping[str, int], epoch: str | None
    ) -> tuple[dict[str, bool], list[Outbound]]:
        """The messages after *since* (per stream) that this client has not received
        live, and ``recovered`` per stream."""
        recovered: dict[str, bool] = {}
        replay: list[Outbound] = []
        for stream, after in since.items():
            if stream not in EVENT_STREAMS:
                continue
            items = self.hub.replay(stream, after, epoch)
            recovered[stream] = items is not None
            if not items:
                continue
            joined = self._joined.get(stream)
            replay.extend(
                item
                for item in items
                if self._wants(item) and (joined is None or (item.offset or 0) <= joined)
            )
        return recovered, replay

    def _wants(self, item: Outbound) -> bool:
        client = self.client
        channels = client.channels
        wanted = item.channel in channels or item.route in channels
        return wanted and (client.permissions is None or client.permissions.sees(item.route))

    def _note_joined(self, channels: Iterable[str]) -> None:
        for stream in {stream_of(ch) for ch in channels}:
            if stream in EVENT_STREAMS:
                self._joined.setdefault(stream, self.hub.offset(stream))

    # --- what this client is sent ---

    def _latest(self, channels: Iterable[str]) -> list[Outbound]:
        """The frames a client gets at once on subscribing to *channels*: the latest
        snapshot of each snapshot channel among them."""
        out = []
        for channel in sorted(channels):  # metrics first, then its views
            if stream_of(channel) == "metrics":
                latest = self.hub.latest(channel, self.client.permissions)
                if latest is not None:
                    out.append(latest)
        return out

    def _reply(self, payload: Payload) -> list[Outbound]:
        """One per-client message, encoded (no offset); none on a bare connection."""
        if self.client.variant.bare:
            return []
        return [self.hub.reply(payload)]
