"""The messages of signed-token connections: refresh in place, and expiry (sans-IO).

Part of :mod:`takhin_ws.wire.messages` (which lists them with every other message):

- ``refresh`` (client): ``{"token": "..."}``, a new token for the open connection;
- ``refreshed`` (server): the new token's expiry, and the channels its claim no
  longer allows (unsubscribed at once);
- ``token_expiring`` (server): the token expires at ``expiresAt``; refresh before, or
  the connection is closed with 4001 ``token expired``.
"""

from __future__ import annotations

from typing import ClassVar, Final

from attrs import frozen

__all__ = ["CLOSE_TOKEN_EXPIRED", "TOKEN_EXPIRED", "Refresh", "Refreshed", "TokenExpiring"]

#: Close code and reason of a connection whose token expired (an application code:
#: RFC 6455 leaves 4000-4999 to applications).
CLOSE_TOKEN_EXPIRED: Final = 4001
TOKEN_EXPIRED: Final = "token expired"


@frozen(kw_only=True)
class Refresh:
    """``refresh``: replace the connection's token (same ``sub``) without reconnecting."""

    TYPE: ClassVar[str] = "refresh"
    token: str


@frozen(kw_only=True)
class Refreshed:
    """Answer to ``refresh``: ``expires_at`` (Unix seconds) of the new token; the
    channels it no longer allows, unsubscribed; ``count``: the subscription's size now."""

    TYPE: ClassVar[str] = "refreshed"
    expires_at: int
    unsubscribed: tuple[str, ...] = ()
    count: int = 0


@frozen(kw_only=True)
class TokenExpiring:
    """The token expires at ``expires_at`` (Unix seconds): send ``refresh`` before."""

    TYPE: ClassVar[str] = "token_expiring"
    expires_at: int
