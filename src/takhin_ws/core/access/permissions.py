"""Channel permissions of a token: patterns over the channel grammar, compiled once (sans-IO).

A token's ``channels`` claim is a list of patterns such as ``["metrics",
"topic:orders.*", "group:billing-*", "groups"]``; ``*`` matches any run of characters
(none included) and is the only wildcard. What the patterns grant:

- a topic ``T`` is *visible* when ``topics`` or ``topic:T`` matches a pattern (so
  ``topics`` grants every topic); a group ``G`` when ``groups`` or ``group:G`` does;
- ``metrics`` (and its view ``metrics:lean``) when ``metrics`` matches; the views
  ``metrics:topic:T`` and ``metrics:group:G`` also need ``T`` (``G``) visible;
- the streams ``topics`` and ``groups`` may be subscribed to when some topic (group)
  can be visible: such a subscription carries the events of the visible ones only.

:class:`Permissions` compares and hashes by its patterns, so clients holding the same
claim share one filtered ``metrics`` frame per tick (see :mod:`~takhin_ws.core.access.auth`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from ...wire.channels import METRICS_GROUP_PREFIX, METRICS_LEAN, METRICS_TOPIC_PREFIX, parse_channel

__all__ = ["MAX_PATTERNS", "ClaimError", "Permissions", "check_pattern", "refused"]

#: Patterns one claim may hold (a claim is bounded like a subscription).
MAX_PATTERNS: Final = 1000
_TOPIC: Final = "topic:"
_GROUP: Final = "group:"


class ClaimError(ValueError):
    """A ``channels`` claim that is not a list of channel patterns."""


def check_pattern(pattern: object) -> str:
    """*pattern* if it is a channel pattern (a channel, ``*`` standing for any run of
    characters), else raise :class:`ClaimError`."""
    if not isinstance(pattern, str):
        raise ClaimError("channels: every pattern must be a string")
    if pattern != "*":
        try:
            parse_channel(pattern.replace("*", "x"))
        except ValueError:
            raise ClaimError(f"channels: {pattern!r} is not a channel pattern") from None
    return pattern


def _regex(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [".*".join(map(re.escape, p.split("*"))) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts), re.DOTALL) if parts else None


def _may_match_prefix(pattern: str, prefix: str) -> bool:
    """Whether *pattern* can match some channel starting with *prefix*."""
    literal, star, _ = pattern.partition("*")
    if not star:
        return pattern.startswith(prefix) and len(pattern) > len(prefix)
    return literal.startswith(prefix) or prefix.startswith(literal)


class Permissions:
    """A compiled ``channels`` claim (see the module docstring). Immutable."""

    __slots__ = ("_regex", "any_group", "any_topic", "everything", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        chosen = tuple(sorted({check_pattern(p) for p in patterns}))
        if len(chosen) > MAX_PATTERNS:
            raise ClaimError(f"channels: at most {MAX_PATTERNS} patterns")
        self.patterns = chosen
        self._regex = _regex(chosen)
        #: Every channel is granted: such a client is treated as one with an API key
        #: (the unfiltered fast path).
        self.everything = all(self.matches(c) for c in ("metrics", "topics", "groups"))
        #: Some topic (group) can be visible: the stream may be subscribed to.
        self.any_topic = self.matches("topics") or any(_may_match_prefix(p, _TOPIC) for p in chosen)
        self.any_group = self.matches("groups") or any(_may_match_prefix(p, _GROUP) for p in chosen)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Permissions) and other.patterns == self.patterns

    def __hash__(self) -> int:
        return hash(self.patterns)

    def __repr__(self) -> str:
        return f"Permissions({list(self.patterns)!r})"

    def matches(self, channel: str) -> bool:
        """Whether a pattern matches *channel* as a whole."""
        return self._regex is not None and self._regex.fullmatch(channel) is not None

    def sees_topic(self, name: str) -> bool:
        return self.matches("topics") or self.matches(_TOPIC + name)

    def sees_group(self, group_id: str) -> bool:
        return self.matches("groups") or self.matches(_GROUP + group_id)

    def sees(self, route: str | None) -> bool:
        """Whether a message published on *route* (``topic:orders``, ``groups``,
        ``metrics``...) may reach this client."""
        if route is None:
            return True
        if route.startswith(_TOPIC):
            return self.sees_topic(route[len(_TOPIC) :])
        if route.startswith(_GROUP):
            return self.sees_group(route[len(_GROUP) :])
        return self.matches(route)

    def allows(self, channel: str) -> bool:
        """Whether this client may subscribe to *channel* (a valid channel)."""
        if channel == "topics":
            return self.any_topic
        if channel == "groups":
            return self.any_group
        if channel.startswith((_TOPIC, _GROUP)):
            return self.sees(channel)
        if channel == "metrics" or channel == METRICS_LEAN:
            return self.matches("metrics") or self.matches(channel)
        metrics = self.matches("metrics") or self.matches(channel)
        if channel.startswith(METRICS_TOPIC_PREFIX):
            return metrics and self.sees_topic(channel[len(METRICS_TOPIC_PREFIX) :])
        if channel.startswith(METRICS_GROUP_PREFIX):
            return metrics and self.sees_group(channel[len(METRICS_GROUP_PREFIX) :])
        return False

    def allowed(self, channels: Iterable[str]) -> frozenset[str]:
        return frozenset(c for c in channels if self.allows(c))


def refused(
    channels: Iterable[str],
    permissions: Permissions | None,
    permits: Callable[[str], bool] | None = None,
) -> list[str]:
    """The channels of *channels* that *permissions* (a token's claim) or *permits*
    (an embedding app's say, ``takhin_ws.asgi``) do not allow, sorted."""
    return sorted(
        c
        for c in channels
        if (permits is not None and not permits(c))
        or (permissions is not None and not permissions.allows(c))
    )
