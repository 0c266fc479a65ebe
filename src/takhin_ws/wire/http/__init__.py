"""Plain HTTP on the WebSocket port, without I/O: request heads (h11, and httptools for
the common upgrade head), refusals and responses, and chunked request bodies.

The names of :mod:`.plain` are re-exported here, so ``takhin_ws.wire.http`` is where the
rest of the package takes them from.

Internal: import from ``takhin_ws`` and its public tiers."""

from . import plain
from .plain import *  # noqa: F403 (one list of names: plain.__all__)

__all__ = plain.__all__
