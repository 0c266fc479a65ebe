"""Who is subscribed to what, grouped the way the fan-out sends (sans-IO).

:class:`Subscriptions` is the hub's table of members per channel. For the fan-out it
keeps each channel's members grouped by wire variant and permission set (rebuilt only
when they change): a publish builds each group's message once and hands every member
of the group the same object. Unrestricted clients (``None``: no token, or a claim
that grants everything) form groups of their own that no check slows down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..wire.websocket.frames import Outbound, Variant
from .access.permissions import Permissions
from .clients import Client
from .metrics.views import is_view

__all__ = ["Group", "Subscriptions"]

#: The subscribers of one channel that receive the same bytes: a variant, a
#: permission set (``None``: unrestricted) and the clients.
Group = tuple[Variant, Permissions | None, tuple[Client, ...]]
#: What one group receives of a message (built once for the group); ``None``: nothing.
Shape = Callable[[Outbound, Variant, Permissions | None], Outbound | None]


class Subscriptions:
    """Members per channel, their fan-out groups, and the views with subscribers.

    *on_view_unused* is called with a view channel whose last subscriber left."""

    __slots__ = ("_groups", "_on_view_unused", "members", "views")

    def __init__(self, on_view_unused: Callable[[str], None]) -> None:
        self._on_view_unused = on_view_unused
        #: client id -> client, per channel
        self.members: dict[str, dict[str, Client]] = {}
        self._groups: dict[str, tuple[Group, ...]] = {}
        #: metrics views with subscribers, in the order first subscribed
        self.views: dict[str, None] = {}

    def set(self, client: Client, channels: frozenset[str]) -> None:
        """*client* is subscribed to exactly *channels* from now on."""
        for channel in client.channels - channels:
            members = self.members[channel]
            del members[client.id]
            if not members:
                del self.members[channel]
                if is_view(channel):
                    del self.views[channel]
                    self._on_view_unused(channel)
            self._groups.pop(channel, None)
        for channel in channels - client.channels:
            self.members.setdefault(channel, {})[client.id] = client
            if is_view(channel):
                self.views[channel] = None
            self._groups.pop(channel, None)
        client.channels = channels

    def set_permissions(self, client: Client, permissions: Permissions | None) -> None:
        """*client* holds *permissions* from now on: its channels' groups are rebuilt."""
        if permissions != client.permissions:
            for channel in client.channels:
                self._groups.pop(channel, None)
            client.permissions = permissions

    def groups(self, channel: str) -> tuple[Group, ...]:
        groups = self._groups.get(channel)
        if groups is None:
            members = self.members.get(channel)
            if members is None:
                # nobody: nothing cached (a publish on each of a million topics
                # nobody follows must not leave a million entries behind)
                return ()
            by_key: dict[tuple[Variant, Permissions | None], list[Client]] = {}
            for client in members.values():
                by_key.setdefault((client.variant, client.permissions), []).append(client)
            groups = tuple((v, p, tuple(clients)) for (v, p), clients in by_key.items())
            self._groups[channel] = groups
        return groups

    def offer(
        self, channel: str, item: Outbound, shape: Shape, skip: Mapping[str, Client] | None = None
    ) -> int:
        """Offer *item* to every member of *channel* (but those in *skip*), as *shape*
        makes it for each group; return how many were offered it."""
        offered = 0
        for variant, permissions, clients in self.groups(channel):
            out = shape(item, variant, permissions)
            if out is None:
                continue
            if skip is None:  # the fast path: no check per client
                for client in clients:
                    client.subscriber.offer(out)
                offered += len(clients)
                continue
            for client in clients:
                if client.id not in skip:
                    client.subscriber.offer(out)
                    offered += 1
        return offered

    def variants(self, *channels: str) -> frozenset[Variant]:
        """The variants the unrestricted members of *channels* receive."""
        return frozenset(v for ch in channels for v, p, _ in self.groups(ch) if p is None)

    def count(self, channel: str) -> int:
        return len(self.members.get(channel, ()))
