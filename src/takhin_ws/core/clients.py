"""The receiving end of a client as the hub sees it (sans-IO)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from attrs import frozen

from ..config.settings import DEFAULT_QUEUE_SIZE
from ..wire.websocket.frames import PLAIN, Outbound, Variant
from .access.permissions import Permissions
from .queue import DropOldestQueue

__all__ = ["Client", "HubStatistics", "QueueSubscriber", "Subscriber"]


class Subscriber(Protocol):
    """The receiving end of one client.

    ``offer`` is called synchronously from ``publish`` and must neither block nor
    raise: a subscriber that cannot take the item now queues it in ``queue``
    (drop-oldest), or records its own failure for its session to act on.
    """

    @property
    def queue(self) -> DropOldestQueue[Outbound]:
        """What waits for this client (the hub reads its statistics)."""

    def offer(self, item: Outbound) -> None: ...


class QueueSubscriber:
    """A subscriber that only queues; used in-process and by the sans-IO tests."""

    __slots__ = ("queue",)

    def __init__(self, capacity: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue: DropOldestQueue[Outbound] = DropOldestQueue(capacity)

    def offer(self, item: Outbound) -> None:
        if not self.queue.closed:  # offer must not raise; a closed reader takes nothing
            self.queue.put_nowait(item)


class Client:
    """The hub's record of one registered client.

    ``variant`` is the form in which it receives published messages (see
    :class:`~takhin_ws.Variant`); it is fixed at the handshake. ``permissions``
    restrict what reaches it (a token's claim; ``None``: everything), and change
    only through :meth:`Hub.set_permissions <takhin_ws.Hub.set_permissions>`."""

    __slots__ = ("channels", "id", "permissions", "subscriber", "variant")

    def __init__(
        self,
        client_id: str,
        subscriber: Subscriber,
        channels: frozenset[str],
        variant: Variant = PLAIN,
        permissions: Permissions | None = None,
    ) -> None:
        self.id = client_id
        self.subscriber = subscriber
        self.channels = channels
        self.variant = variant
        self.permissions = permissions

    def offer(self, item: Outbound) -> None:
        """Hand *item* to this client in its variant (replies, replays, snapshots)."""
        out = item.variant(self.variant)
        if out is not None:
            self.subscriber.offer(out)

    def __repr__(self) -> str:
        return f"<Client {self.id} channels={sorted(self.channels)}>"


@frozen
class HubStatistics:
    clients: int
    max_clients: int
    subscribers: Mapping[str, int]
    offsets: Mapping[str, int]
    published: int
    delivered: int
    dropped: int
    peak_queue_depth: int
    epoch: str
    #: Snapshots (or views) superseded in slow clients' queues by a newer one.
    conflated: int = 0
    #: Distinct metrics views with subscribers, and the most built per tick.
    views: int = 0
    max_views: int = 0
    #: Views built (one per distinct view per tick), and views over ``max_views``
    #: left unbuilt in a tick.
    views_built: int = 0
    views_skipped: int = 0
