"""What one ``subscribe`` may add: the channel and view limits of a connection (sans-IO).

A subscribe is refused whole (nothing of it applied) when it would take the connection
over ``--max-channels`` channels or ``--max-views`` metrics views, names the view of a
group or topic the cluster does not have, or would add a distinct view beyond the
server's ``--max-distinct-views``.
"""

from __future__ import annotations

from typing import Final

from ...wire.messages import Error
from ..metrics.views import ViewChannels, is_view

__all__ = [
    "TOO_MANY_CHANNELS",
    "TOO_MANY_VIEWS",
    "UNKNOWN_VIEW",
    "VIEWS_UNAVAILABLE",
    "subscribe_refusal",
]

#: Error codes of a refused ``subscribe``: over ``--max-channels``; over ``--max-views``
#: on this connection; a group or topic the cluster does not have; a new distinct view
#: beyond ``--max-distinct-views`` on the server.
TOO_MANY_CHANNELS: Final = "too_many_channels"
TOO_MANY_VIEWS: Final = "too_many_views"
UNKNOWN_VIEW: Final = "unknown_view"
VIEWS_UNAVAILABLE: Final = "views_unavailable"


def subscribe_refusal(
    views: ViewChannels,
    held: frozenset[str],
    added: frozenset[str],
    max_channels: int,
    max_views: int,
) -> tuple[Error, bool] | None:
    """Why a connection holding *held* may not add *added*: the ``error`` to answer
    and whether it counts as an invalid message (a client's own excess does; a view
    that does not exist, or no room on the server, does not). ``None`` when it may."""
    if len(held) + len(added) > max_channels:
        message = (
            f"a connection may subscribe to at most {max_channels} channels "
            f"({len(held)} now, {len(added)} more asked)"
        )
        return Error(code=TOO_MANY_CHANNELS, message=message, path="$.data"), True
    new = sorted(c for c in added if is_view(c))
    if not new:
        return None
    now = sum(1 for c in held if is_view(c))
    if now + len(new) > max_views:
        message = (
            f"a connection may subscribe to at most {max_views} metrics views "
            f"({now} now, {len(new)} more asked)"
        )
        return Error(code=TOO_MANY_VIEWS, message=message, path="$.data"), True
    unknown = [c for c in new if views.unknown(c)]
    if unknown:
        message = f"no such group or topic in the cluster: {', '.join(unknown)}"
        return Error(code=UNKNOWN_VIEW, message=message, path="$.data"), False
    fresh = [c for c in new if c not in views]
    if fresh and len(views) + len(fresh) > views.max_views:
        message = (
            f"the server builds at most {views.max_views} distinct views per tick "
            "and has no room for more now"
        )
        return Error(code=VIEWS_UNAVAILABLE, message=message, path="$.data"), False
    return None
