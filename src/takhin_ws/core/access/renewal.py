"""The token side of one connection: refresh in place, the expiry notice, the close (sans-IO).

A connection that authenticated with a signed token has a :class:`TokenSession` (the
others have none and pay nothing). It is asked two things:

- :meth:`~TokenSession.refresh`: a ``refresh`` message's token is verified like one at
  the handshake, and must carry the same ``sub``; then it replaces the grant (the
  session core re-evaluates the subscription at once);
- :meth:`~TokenSession.due` (from the heartbeat sweep, one sweep for every client):
  ``expiring`` once, ``notice`` seconds before ``exp``; ``expired`` from ``exp`` on.
  A refresh re-arms the notice for the new expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from ...wire.auth import CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED, Refresh, Refreshed, TokenExpiring
from ...wire.messages import Error, Payload
from ...wire.websocket.frames import Outbound
from ..hub import Client, Hub
from ..replies import Close, Reply
from .auth import Auth, Authenticator
from .tokens import Grant, TokenError

__all__ = ["INVALID_TOKEN", "TokenSession", "expiry", "refresh", "token_session"]

#: ``error`` code of a ``refresh`` whose token is refused (the connection keeps its
#: current token until that one expires).
INVALID_TOKEN = "invalid_token"
#: Refusal reason of a refresh carrying another ``sub``.
OTHER_SUBJECT = "subject"


class _Core(Protocol):
    """What :func:`refresh` and :func:`expiry` need of a session core."""

    hub: Hub
    client: Client
    token: TokenSession | None

    def _reply(self, payload: Payload) -> list[Outbound]: ...

    def _forget_streams(self, removed: Iterable[str]) -> None: ...


class TokenSession:
    """The grant of one token connection, and its expiry notice (see the module docstring)."""

    __slots__ = ("authenticator", "grant", "notice", "notified")

    def __init__(self, grant: Grant, authenticator: Authenticator, *, notice: float) -> None:
        self.grant = grant
        self.authenticator = authenticator
        #: seconds before ``exp`` that ``token_expiring`` is sent
        self.notice = notice
        self.notified = False

    def refresh(self, token: str) -> Grant | Error:
        """The new grant of *token* (now this connection's), or the ``error`` to answer."""
        try:
            grant = self.authenticator.refresh(token)
        except TokenError as exc:
            return Error(code=INVALID_TOKEN, message=exc.message, path="$.data.token")
        if grant.subject != self.grant.subject:
            self.authenticator.refusals[OTHER_SUBJECT] += 1
            return Error(
                code=INVALID_TOKEN,
                message="the token is for another subject ('sub') than this connection's",
                path="$.data.token",
            )
        self.grant = grant
        self.notified = False
        return grant

    def due(self, now: float) -> Literal["expiring", "expired"] | None:
        """What the connection is owed at wall-clock *now* (Unix seconds)."""
        expires = self.grant.expires_at
        if now >= expires:
            return "expired"
        if not self.notified and now >= expires - self.notice:
            self.notified = True
            return "expiring"
        return None


def refresh(core: _Core, request: Refresh) -> Reply:
    """*core*'s answer to ``refresh``: the grant replaced and the subscription narrowed
    to what the new claim allows (the rest unsubscribed, named in ``refreshed``)."""
    token = core.token
    if token is None:
        error = Error(
            code=INVALID_TOKEN,
            message="this connection did not authenticate with a token",
            path="$.data.token",
        )
        return Reply(tuple(core._reply(error)))
    grant = token.refresh(request.token)
    if isinstance(grant, Error):
        return Reply(tuple(core._reply(grant)))
    permissions = None if grant.permissions.everything else grant.permissions
    removed = core.hub.set_permissions(core.client, permissions)
    core._forget_streams(removed)
    refreshed = Refreshed(
        expires_at=grant.expires_at,
        unsubscribed=tuple(sorted(removed)),
        count=len(core.client.channels),
    )
    return Reply(tuple(core._reply(refreshed)))


def expiry(core: _Core, now: float) -> Reply | None:
    """What *core* (a token connection) is owed at wall-clock *now*."""
    assert core.token is not None
    due = core.token.due(now)
    if due == "expiring":
        notice = TokenExpiring(expires_at=core.token.grant.expires_at)
        return Reply(tuple(core._reply(notice)))
    if due == "expired":
        return Reply(close=Close(CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED))
    return None


def token_session(auth: Auth, authenticator: Authenticator, notice: float) -> TokenSession | None:
    """The token side of a connection that authenticated as *auth* (``None``: no token)."""
    if auth.grant is None:
        return None
    return TokenSession(auth.grant, authenticator, notice=notice)
