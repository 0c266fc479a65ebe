"""What a session core answers an input with: frames to write, and maybe a close (sans-IO)."""

from __future__ import annotations

from attrs import frozen

from ..wire.websocket.frames import Outbound

__all__ = ["Close", "Reply"]


@frozen
class Close:
    """Close the connection with *code* and *reason* (after the reply's frames)."""

    code: int
    reason: str


@frozen
class Reply:
    """What to do after an input: write ``frames`` in order, then ``close`` if set."""

    frames: tuple[Outbound, ...] = ()
    close: Close | None = None
