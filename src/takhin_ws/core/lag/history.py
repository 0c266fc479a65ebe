"""A session's answer to ``history`` for one group (sans-IO).

``{"type": "history", "data": {"channel": "group:<groupId>"}}`` asks for that group's
``totalLag`` and ``lagSeconds`` over ``--series-window``
(:class:`~takhin_ws.core.lag.series.GroupLagSeries`). :func:`group_history` answers it
for a :class:`~takhin_ws.core.session.SessionCore`: the encoded answer is shared by
every client asking for that group until the next tick; a group the server does not
keep gets an empty ``lags``. A connection that may not subscribe to ``group:<id>``
(its token's claim, an embedding app's permits) may not read its history either
(``forbidden``); a channel that is not ``group:<id>`` is ``invalid_field``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from ...wire.channels import parse_channel
from ...wire.messages import Error, History, Payload
from ...wire.websocket.frames import Outbound
from ..access.permissions import refused
from ..hub import Client, Hub
from ..replies import Reply

if TYPE_CHECKING:
    from ...config.settings import Settings
    from ..series import Series

__all__ = ["GROUP_PREFIX", "group_history"]

#: The channels a ``history`` request may name: one group's.
GROUP_PREFIX: Final = "group:"
#: Error code of a request for a channel this connection may not see (as a subscribe's).
FORBIDDEN: Final = "forbidden"
#: Characters of a bad channel quoted back in an error.
_QUOTED: Final = 60


class _Core(Protocol):
    """What :func:`group_history` needs of a session core."""

    hub: Hub
    client: Client
    settings: Settings
    series: Series | None
    permits: Callable[[str], bool] | None

    def _reply(self, payload: Payload) -> list[Outbound]: ...

    def _invalid(self, error: Error) -> Reply: ...


def group_history(core: _Core, channel: str) -> Reply:
    """*core*'s answer to ``history`` for *channel* (see the module docstring)."""
    if not channel.startswith(GROUP_PREFIX) or not _is_channel(channel):
        return core._invalid(
            Error(
                code="invalid_field",
                message="data.channel: history is kept for group:<id> channels, "
                f"got {channel[:_QUOTED]!r}",
                path="$.data.channel",
            )
        )
    if refused([channel], core.client.permissions, core.permits):
        error = Error(
            code=FORBIDDEN,
            message=f"not allowed on this connection: {channel}",
            path="$.data.channel",
        )
        return Reply(tuple(core._reply(error)))
    if core.series is None:  # a hub with no producer: nothing kept
        return Reply(tuple(core._reply(History(interval=core.settings.interval, channel=channel))))
    if core.client.variant.bare:
        return Reply()
    group_id = channel[len(GROUP_PREFIX) :]
    return Reply((core.series.groups.reply(group_id, core.hub.reply),))


def _is_channel(channel: str) -> bool:
    try:
        parse_channel(channel)
    except ValueError:
        return False
    return True
