"""The hub: clients, subscriptions, offsets, history and publish (sans-IO).

``publish`` is synchronous and never blocks: it encodes the message once
(:mod:`~takhin_ws.core.encoding`), builds its WebSocket frame once, records it in the
stream's history, and offers the same :class:`Outbound` object to every subscribed
client. Clients that receive another wire variant (``format=bare``, permessage-deflate)
are grouped by variant when the subscriptions change; a publish builds each variant
once, for its whole group. What a client does with it (write it straight to its
socket, or queue it behind a backlog) is the client's business (:class:`Subscriber`);
the hub never waits for anyone."""

from __future__ import annotations

import functools
import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from .._exceptions import HubClosedError, HubFullError
from ..config.settings import DEFAULT_HISTORY_SIZE, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_DISTINCT_VIEWS
from ..wire.channels import EVENT_STREAMS, METRICS_LEAN, STREAMS, parse_channel, stream_of
from ..wire.messages import EpochChanged, Error, Payload, channel_of
from ..wire.websocket.frames import PLAIN, Outbound, Variant
from .access.filtered import FilteredMetrics
from .access.limits import subscribe_refusal
from .access.permissions import Permissions
from .clients import Client, HubStatistics, QueueSubscriber, Subscriber
from .encoding import Prepared, SnapshotData, encode_published, encode_reply
from .history import StreamHistory
from .metrics.snapshot import GroupInfo
from .metrics.views import MetricsViews, ViewChannels, is_view
from .subscriptions import Subscriptions

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_MAX_CLIENTS",
    "Client",
    "Hub",
    "HubStatistics",
    "QueueSubscriber",
    "Subscriber",
    "channel_of",
]

#: The subscription of a client that did not choose one: everything, as in 2.9.
ALL_CHANNELS: Final = frozenset(STREAMS)


class Hub:
    """Registry, subscriptions and fan-out of one process. Not thread-safe; run it
    inside one Trio run (every method is synchronous)."""

    def __init__(
        self,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_ttl: float | None = None,
        max_views: int = DEFAULT_MAX_DISTINCT_VIEWS,
        epoch: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_clients < 0:
            raise ValueError("max_clients must be >= 0")
        if history_size < 0:
            raise ValueError("history_size must be >= 0")
        self.max_clients = max_clients
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.epoch = epoch or secrets.token_hex(8)
        self._wall_clock = wall_clock
        self._clients: dict[str, Client] = {}
        self._views = MetricsViews()
        self._subs = Subscriptions(self._views.forget)  # (decoded: kept for the tick)
        self._streams = {
            s: StreamHistory(s, 1 if s == "metrics" else history_size, history_ttl, clock)
            for s in STREAMS
        }
        self._filtered = FilteredMetrics(self._views)
        self._view_channels = ViewChannels(self._views, self._subs.views, max_views)
        self._ids = itertools.count(1)
        self._published = 0
        self._delivered = 0
        self._dropped_gone = 0
        self._conflated_gone = 0
        self._peak = 0
        self._closed = False

    # --- registry ---

    def add_client(
        self,
        subscriber: Subscriber,
        channels: Iterable[str] | None = None,
        *,
        client_id: str | None = None,
        variant: Variant = PLAIN,
        permissions: Permissions | None = None,
    ) -> Client:
        """Register *subscriber*, receiving published messages as *variant* and what
        *permissions* grant (``None``: all); raise :class:`HubFullError` when full."""
        if self._closed:
            raise HubClosedError("hub is closed")
        if len(self._clients) >= self.max_clients:
            raise HubFullError(f"hub is full ({self.max_clients} clients)")
        chosen = ALL_CHANNELS if channels is None else frozenset(map(parse_channel, channels))
        if permissions is not None:
            allowed = permissions.allowed(chosen)
            if channels is not None and allowed != chosen:
                raise ValueError(f"channels not permitted: {sorted(chosen - allowed)}")
            chosen = allowed
        cid = client_id or f"c{next(self._ids)}"
        if cid in self._clients:
            raise ValueError(f"client id {cid!r} is already registered")
        client = Client(cid, subscriber, frozenset(), variant, permissions)
        self._clients[cid] = client
        self._set_channels(client, chosen)
        return client

    def remove_client(self, client: Client) -> None:
        """Unregister *client* (idempotent)."""
        if self._clients.pop(client.id, None) is None:
            return
        self._set_channels(client, frozenset())
        stats = client.subscriber.queue.statistics()
        self._dropped_gone += stats.dropped_total
        self._conflated_gone += stats.conflated_total
        self._peak = max(self._peak, stats.peak_size)

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, client: object) -> bool:
        return isinstance(client, Client) and self._clients.get(client.id) is client

    def clients(self) -> tuple[Client, ...]:
        """A snapshot of the registered clients (safe to iterate across awaits)."""
        return tuple(self._clients.values())

    # --- subscriptions ---

    def subscribe(self, client: Client, channels: Iterable[str]) -> frozenset[str]:
        added = frozenset(map(parse_channel, channels))
        self._set_channels(client, client.channels | added)
        return client.channels

    def unsubscribe(self, client: Client, channels: Iterable[str]) -> frozenset[str]:
        removed = frozenset(map(parse_channel, channels))
        self._set_channels(client, client.channels - removed)
        return client.channels

    def set_permissions(self, client: Client, permissions: Permissions | None) -> frozenset[str]:
        """Restrict *client* to *permissions* (a refreshed token); unsubscribe and
        return the channels they no longer allow."""
        keep = client.channels if permissions is None else permissions.allowed(client.channels)
        removed = client.channels - keep
        self._subs.set_permissions(client, permissions)
        self._set_channels(client, keep)
        return removed

    def _set_channels(self, client: Client, channels: frozenset[str]) -> None:
        if client.id not in self._clients and channels:
            raise ValueError(f"client {client.id} is not registered")
        self._subs.set(client, channels)

    def subscribers(self, channel: str) -> int:
        return self._subs.count(channel)

    # --- publish ---

    def publish(self, channel: str, payload: Payload, *, stale: bool | None = None) -> Outbound:
        """Assign the next offset of *channel*'s stream, encode once, fan out.

        *channel* is a stream (``metrics``, ``topics``, ``groups``) or a narrow
        channel (``topic:orders``); a narrow channel's message reaches the
        subscribers of the narrow channel and of its stream, each exactly once.
        """
        return self.commit(self.prepare(channel, payload, stale=stale))

    def prepare(
        self,
        channel: str,
        payload: Payload,
        *,
        stale: bool | None = None,
        data: SnapshotData | None = None,
        offset: int | None = None,
        timestamp: int | None = None,
    ) -> Prepared:
        """:meth:`publish`'s encoding for the next offset, the hub unchanged: a caller
        may do a big publish's heavy part in steps (*data* built by
        :func:`~takhin_ws.core.encoding.metrics_data_steps`, then ``Prepared.compress``
        in a worker thread), then :meth:`commit`. A bus's reader gives the *offset*
        and *timestamp* of what it received, and hands the result to :meth:`deliver`."""
        if self._closed:
            raise HubClosedError("hub is closed")
        if is_view(parse_channel(channel)):
            raise ValueError(f"{channel} is a view of metrics: publish on metrics")
        stream_name = stream_of(channel)
        subs = self._subs
        variants: dict[str | None, frozenset[Variant]] = {None: subs.variants(stream_name, channel)}
        if stream_name == "metrics" and METRICS_LEAN in self._view_channels:
            variants[METRICS_LEAN] = subs.variants(METRICS_LEAN)
        return encode_published(
            payload,
            channel,
            stream=stream_name,
            offset=self._streams[stream_name].offset + 1 if offset is None else offset,
            timestamp=int(self._wall_clock()) if timestamp is None else timestamp,
            epoch=self.epoch,
            stale=stale,
            data=data,
            variants=variants,
        )

    def commit(self, prepared: Prepared) -> Outbound:
        """Publish *prepared* (:meth:`prepare`): record it, offer it to every subscriber.
        If its offset was taken meanwhile (another publish on its stream, a new epoch),
        it is encoded again for the next offset first, here."""
        if self._closed:
            raise HubClosedError("hub is closed")
        stream = self._streams[prepared.stream]
        if prepared.offset != stream.offset + 1 or prepared.epoch != self.epoch:
            prepared = self.prepare(
                prepared.channel, prepared.payload, stale=prepared.stale, data=prepared.data
            )
        stream.offset += 1
        self._views.note_event(prepared.payload)  # a group event's state and members
        self._send(prepared.stream, prepared.channel, prepared.item, prepared)
        return prepared.item

    def publish_event(self, payload: Payload) -> Outbound:
        """Publish *payload* on the channel it belongs to (an event's ``channel``,
        see :func:`~takhin_ws.wire.messages.channel_of`)."""
        return self.publish(channel_of(payload), payload)

    def deliver(self, channel: str, item: Outbound | Prepared) -> None:
        """Fan out an already-encoded item (one that came through an event bus), or one
        prepared from it (:meth:`prepare` with its offset: its views built ahead).

        Its offset becomes the stream's offset. If it does not follow the previous
        one (the bus lost messages this hub never saw), the history before it is
        dropped, so a resume across the hole answers ``recovered: false``."""
        prepared, item = (item, item.item) if isinstance(item, Prepared) else (None, item)
        stream_name = stream_of(channel)
        self._streams[stream_name].advance(item)
        self._send(stream_name, channel, item, prepared)
        if stream_name == "groups":
            self._views.note_event_json(item.payload)

    def _send(self, stream_name: str, channel: str, item: Outbound, ahead: Prepared | None) -> None:
        """Record *item* in its stream's history and offer it to every subscriber; a
        snapshot's views too (from what was built *ahead* of it, if anything)."""
        self._streams[stream_name].append(item)
        self._published += 1
        snapshot = stream_name == "metrics"
        decoded, views = (None, None) if ahead is None else (ahead.decoded, ahead.views)
        if snapshot:
            self._filtered.source(item, decoded)
        self._fan_out(stream_name, channel, item)
        if snapshot:
            old = self._views.source(item, decoded, views)  # kept for the tick: no re-parse
            if ahead is not None and old is not None:
                ahead.garbage.append(old)  # for the caller to let go of in steps
            self._fan_out_views()
            self._filtered.source_done()

    def remember(self, channel: str, item: Outbound) -> None:
        """Record an already-encoded item in its stream's history and offset, like
        :meth:`deliver`, without sending it to any client: how a bus loads its recent
        past into a starting hub, so resumes work from the first connection."""
        stream_name = stream_of(channel)
        stream = self._streams[stream_name]
        stream.advance(item)
        stream.append(item)
        if stream_name == "metrics":  # what the views need of it
            self._views.source(item)
            self._filtered.source(item)
        elif stream_name == "groups":
            self._views.note_event_json(item.payload)

    def reset(self, epoch: str) -> None:
        """Start over in a new *epoch*: every stream's offset back to 0 and its history
        forgotten (a bus that lost its offsets starts numbering again). Clients stay
        registered, and each is offered one ``epoch`` message (encoded once), before
        any message of the new epoch; resumes against the old epoch answer
        ``recovered: false``. (Reset to the current epoch: nothing to announce.)"""
        previous, self.epoch = self.epoch, epoch
        for stream in self._streams.values():
            stream.clear()
        self._views.clear()
        self._filtered.clear()
        if epoch != previous and self._clients:
            lost = dict.fromkeys(EVENT_STREAMS, False)
            notice = self.reply(EpochChanged(epoch=epoch, previous=previous, recovered=lost))
            for client in tuple(self._clients.values()):
                # a pending snapshot of the old epoch goes: the next one, of the new
                # epoch, must come after the notice, not in the old one's place
                client.subscriber.queue.discard_state()
                client.offer(notice)  # in its variant: a bare client takes none

    def note_groups(self, groups: Mapping[str, GroupInfo]) -> None:
        """The state and members of every consumer group (a snapshot's ``groups``),
        for ``group_detail``; group events keep them current between snapshots."""
        self._views.note_groups(groups)

    def _out(
        self, item: Outbound, variant: Variant, permissions: Permissions | None
    ) -> Outbound | None:
        """*item* as one group receives it, built once for the whole group (a restricted
        group: what its permission set may see of it)."""
        if permissions is not None:
            restricted = self._filtered.message(item, permissions)
            return None if restricted is None else restricted.variant(variant)
        return item.variant(variant)

    def _fan_out(self, stream_name: str, channel: str, item: Outbound) -> None:
        subs = self._subs
        delivered = subs.offer(stream_name, item, self._out)
        if channel != stream_name:  # a narrow channel's: once to a member of both
            delivered += subs.offer(channel, item, self._out, subs.members.get(stream_name, {}))
        self._delivered += delivered

    def _fan_out_views(self) -> None:
        """Each view due (:meth:`ViewChannels.due`), built once, to its subscribers."""
        for channel, view in self._view_channels.due():
            shape = functools.partial(self._filtered.view_variant, channel)
            self._delivered += self._subs.offer(channel, view, shape)

    def subscribe_refusal(
        self, held: frozenset[str], added: frozenset[str], max_channels: int, max_views: int
    ) -> tuple[Error, bool] | None:
        """Why *added* may not join *held* (see ``core/access/limits``); ``None`` if it may."""
        return subscribe_refusal(self._view_channels, held, added, max_channels, max_views)

    # --- history and resume ---

    def offset(self, stream: str) -> int:
        """The offset of the last message published on *stream* (0 if none)."""
        return self._streams[stream].offset

    def latest(self, stream: str, permissions: Permissions | None = None) -> Outbound | None:
        """The last message of *stream* still in its history; for a view of metrics
        (``metrics:lean``...), its message for the latest snapshot; as clients
        holding *permissions* see it (the filtered snapshot, an event they may see)."""
        if permissions is not None:
            if is_view(stream):
                return self._filtered.view(stream, permissions)
            latest = self._streams[stream].latest()
            return None if latest is None else self._filtered.message(latest, permissions)
        if is_view(stream):
            return self._views.view(stream)
        return self._streams[stream].latest()

    def replay(self, stream: str, after: int, epoch: str | None) -> list[Outbound] | None:
        """Every message of *stream* with an offset greater than *after*, in order;
        ``None`` when that cannot be done exactly (other epoch, history too short,
        or an offset this hub never issued)."""
        if epoch is not None and epoch != self.epoch:
            return None
        return self._streams[stream].replay(after)

    # --- per-client replies ---

    def reply(self, payload: Payload) -> Outbound:
        """Encode a message for one client (``welcome``, ``error``...): no offset."""
        return encode_reply(payload, int(self._wall_clock()))

    # --- lifecycle and statistics ---

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> HubStatistics:
        dropped, conflated, peak = self._dropped_gone, self._conflated_gone, self._peak
        for client in self._clients.values():
            stats = client.subscriber.queue.statistics()
            dropped += stats.dropped_total
            conflated += stats.conflated_total
            peak = max(peak, stats.peak_size)
        return HubStatistics(
            clients=len(self._clients),
            max_clients=self.max_clients,
            subscribers={ch: len(m) for ch, m in sorted(self._subs.members.items())},
            offsets={name: s.offset for name, s in self._streams.items()},
            published=self._published,
            delivered=self._delivered,
            dropped=dropped,
            conflated=conflated,
            peak_queue_depth=peak,
            epoch=self.epoch,
            **self._view_channels.statistics(),
        )
