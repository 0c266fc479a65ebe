"""The embedding app's say on who connects and to which channels: the ``authorize`` hook.

``create_app(..., authorize=hook)`` calls ``hook(scope)`` for every WebSocket handshake
that passed the server's own checks (Origin, API keys, limits, parameters). It returns
(or, if it is a coroutine function, resolves to):

- an :class:`Access`: the connection is accepted; ``identity`` names the user in the
  logs, ``channels`` the channel patterns it may receive (``None``: every channel);
- a :class:`Refusal`: the handshake is refused with that status (401, 403...) and a
  JSON body, as every other refusal.

A pattern is a channel name in which ``*`` matches any run of characters (the only
wildcard): ``topic:orders.*``, ``group:billing-*``, ``metrics``. A connection may only
subscribe to channels its patterns match: the default subscription becomes the streams
it may receive (plus the patterns that name one channel), ``?channels=`` naming another
is refused with 403, and a later ``subscribe`` to one is answered ``forbidden``. Each
channel is received whole: a client allowed ``topic:orders.*`` but not ``metrics``
gets no snapshot (they hold every topic).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from functools import cache
from typing import Final, TypeAlias

import attrs

from ..wire.channels import STREAMS, parse_channel
from ..wire.http import HttpError
from .scope import Scope

__all__ = ["Access", "Authorize", "Refusal", "authorize_scope"]

WILDCARD: Final = "*"
_REFUSAL_STATUSES: Final = range(400, 600)


def _patterns(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("channels: a list of patterns, not one string")
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"channels: a pattern is a non-empty string, got {pattern!r}")
    return patterns


@attrs.frozen
class Access:
    """A connection the embedding app accepts: who it is, and what it may receive."""

    #: The user (or service) as the app knows it: logged with the connection.
    identity: str | None = None
    #: Channel patterns (``*`` is the only wildcard); ``None``: every channel.
    channels: tuple[str, ...] | None = attrs.field(default=None, converter=_patterns)

    def permits(self, channel: str) -> bool:
        """Whether *channel* matches one of the patterns (always, without patterns)."""
        return self.channels is None or _matcher(self.channels)(channel) is not None

    def default_channels(self) -> list[str] | None:
        """The subscription of a client that chose none: everything it may receive
        (``None``: everything, as without patterns)."""
        if self.channels is None:
            return None
        chosen = [s for s in STREAMS if self.permits(s)]
        for pattern in self.channels:
            if WILDCARD not in pattern and pattern not in chosen:
                try:
                    chosen.append(parse_channel(pattern))
                except ValueError:
                    continue  # a pattern that names no channel permits nothing
        return chosen


@cache
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """One compiled regular expression per distinct pattern set (shared by every
    connection with that set); no pattern matches nothing."""
    if not patterns:
        return lambda channel: None
    alternatives = "|".join(".*".join(map(re.escape, p.split(WILDCARD))) for p in patterns)
    return re.compile(f"(?:{alternatives})").fullmatch


@attrs.frozen
class Refusal:
    """A handshake the embedding app refuses: the HTTP status and the reason the
    client reads in the JSON body (``error.message``)."""

    status: int = 403
    message: str = "forbidden"
    #: Extra response headers (``WWW-Authenticate`` for a 401, say).
    headers: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.status not in _REFUSAL_STATUSES:
            raise ValueError(f"a refusal's status is 400-599, got {self.status}")


#: The hook: given the handshake's ASGI scope, an :class:`Access` or a :class:`Refusal`
#: (or an awaitable of one).
Authorize: TypeAlias = Callable[[Scope], "Access | Refusal | Awaitable[Access | Refusal]"]


async def authorize_scope(hook: Authorize | None, scope: Scope) -> Access:
    """The hook's decision on *scope*: its :class:`Access`, or :class:`HttpError` for
    its :class:`Refusal`. Without a hook every connection has every channel. A hook
    that returns anything else is the app's bug: ``TypeError``."""
    if hook is None:
        return Access()
    decision = hook(scope)
    if inspect.isawaitable(decision):
        decision = await decision
    if isinstance(decision, Access):
        return decision
    if isinstance(decision, Refusal):
        raise HttpError(decision.status, decision.message, headers=list(decision.headers))
    raise TypeError(
        f"the authorize hook must return takhin_ws.asgi.Access or Refusal, got {decision!r}"
    )
