"""The ``gap`` message a backed-up client is owed for what it lost (sans-IO).

A client's outbound queue drops its oldest events when it overflows and remembers, per
channel, the first and last offset lost and how many (``core.queue.Drop``). Before the
next queued message goes out the client is told, one ``gap`` message per channel, so it
can resync. This is the encoder of those messages, at the wire level: the outbound
buffer (``core/outbuffer``) and the ASGI writer call it without reaching up into the hub.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .codec import encode
from .messages import Envelope, Gap
from .websocket.frames import text_frame

__all__ = ["LostRange", "gap_frames", "gap_payloads"]


class LostRange(Protocol):
    """What was lost of one channel (``core.queue.Drop`` is one)."""

    @property
    def channel(self) -> str: ...

    @property
    def first_offset(self) -> int: ...

    @property
    def last_offset(self) -> int: ...

    @property
    def count(self) -> int: ...


def gap_payloads(drops: Iterable[LostRange], clock: Callable[[], float] = time.time) -> list[bytes]:
    """The JSON text of the ``gap`` message for each of *drops* (stamped *clock()*)."""
    timestamp = int(clock())
    return [
        encode(
            Envelope(
                payload=Gap(
                    channel=d.channel,
                    first_offset=d.first_offset,
                    last_offset=d.last_offset,
                    count=d.count,
                ),
                timestamp=timestamp,
            )
        )
        for d in drops
    ]


def gap_frames(drops: Iterable[LostRange], clock: Callable[[], float] = time.time) -> bytes:
    """The ``gap`` messages for *drops* as ready text frames, one after the other."""
    return b"".join(text_frame(payload) for payload in gap_payloads(drops, clock))
