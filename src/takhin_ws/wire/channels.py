"""The channel grammar: which names a client may subscribe to, and their streams (sans-IO).

Streams carry offsets (``metrics``, ``topics``, ``groups``). The other channels are
filters or views of one stream and share its offsets:

- ``topic:<name>`` and ``group:<id>``: the events of one topic or group;
- ``metrics:lean``: the ``metrics`` message without per-partition lags;
- ``metrics:group:<groupId>``: a ``group_detail`` message for one consumer group;
- ``metrics:topic:<name>``: a ``topic_detail`` message for one topic.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "EVENT_STREAMS",
    "MAX_OFFSET",
    "MAX_OFFSET_DIGITS",
    "METRICS_GROUP_PREFIX",
    "METRICS_LEAN",
    "METRICS_TOPIC_PREFIX",
    "STATE_STREAMS",
    "STREAMS",
    "parse_channel",
    "parse_offset",
    "stream_of",
]

STREAMS: Final = ("metrics", "topics", "groups")
EVENT_STREAMS: Final = ("topics", "groups")
#: Streams whose messages are state: each one (a snapshot, a view of it) supersedes the
#: previous one of its channel, so a slow client's queue keeps only the latest.
STATE_STREAMS: Final = frozenset({"metrics"})

#: The largest offset a client may name (offsets are signed 64-bit integers, as Redis
#: stream ids and JSON numbers in most clients carry them).
MAX_OFFSET: Final = 2**63 - 1
#: Digits of :data:`MAX_OFFSET`: a longer ``?since=`` offset is refused unread.
MAX_OFFSET_DIGITS: Final = len(str(MAX_OFFSET))
_ASCII_DIGITS: Final = re.compile(r"[0-9]+")

#: The metrics views (part of the ``metrics`` stream).
METRICS_LEAN: Final = "metrics:lean"
METRICS_GROUP_PREFIX: Final = "metrics:group:"
METRICS_TOPIC_PREFIX: Final = "metrics:topic:"

# A topic name in a channel: no whitespace, not starting with ":" (at most 249
# characters, Kafka's limit); a group id: any 1-249 non-whitespace characters.
_TOPIC: Final = r"[^\s:][^\s]{0,248}"
_GROUP: Final = r"[^\s]{1,249}"
_CHANNEL_RE: Final = re.compile(
    rf"^(?:metrics|topics|groups|topic:{_TOPIC}|group:{_GROUP}"
    rf"|metrics:lean|metrics:topic:{_TOPIC}|metrics:group:{_GROUP})$"
)


def parse_channel(channel: str) -> str:
    """Return *channel* if it names a valid channel, else raise ``ValueError``."""
    if not _CHANNEL_RE.fullmatch(channel):  # not match: "$" also matches before a final "\n"
        raise ValueError(
            f"unknown channel {channel!r} (expected metrics, topics, groups, "
            "topic:<name>, group:<id>, metrics:lean, metrics:topic:<name> "
            "or metrics:group:<id>)"
        )
    return channel


def parse_offset(text: str) -> int:
    """The offset written as *text* (ASCII digits only, at most
    :data:`MAX_OFFSET_DIGITS` of them, at most :data:`MAX_OFFSET`); else ``ValueError``.

    ``str.isdigit`` and ``int`` are not used alone: they accept other scripts' digits
    (``"٣"`` is 3) and superscripts (``isdigit`` only), and ``int`` of thousands of
    digits costs quadratic time."""
    if len(text) > MAX_OFFSET_DIGITS or not _ASCII_DIGITS.fullmatch(text):
        raise ValueError(f"an offset is 0 to {MAX_OFFSET} in ASCII digits")
    value = int(text)
    if value > MAX_OFFSET:
        raise ValueError(f"an offset is 0 to {MAX_OFFSET} in ASCII digits")
    return value


def stream_of(channel: str) -> str:
    """The stream whose offsets a channel uses: ``topic:orders`` -> ``topics``."""
    if channel.startswith("topic:"):
        return "topics"
    if channel.startswith("group:"):
        return "groups"
    if channel.startswith("metrics:"):
        return "metrics"
    return channel
