"""Server-to-client WebSocket frames, built once and shared by every client (sans-IO).

Server frames are never masked (RFC 6455 section 5.1), so one ``bytes`` object is a
valid frame for every connection. We do not use per-message compression, so a
frame never depends on its connection.
"""

from __future__ import annotations

import struct
from typing import Final

from attrs import frozen

__all__ = ["Outbound", "close_frame", "ping_frame", "text_frame"]

_FIN_TEXT: Final = 0x81
_FIN_CLOSE: Final = 0x88
_FIN_PING: Final = 0x89
_MAX_CONTROL_PAYLOAD: Final = 125


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying UTF-8 *payload*."""
    return _header(_FIN_TEXT, len(payload)) + payload


def ping_frame(payload: bytes = b"") -> bytes:
    if len(payload) > _MAX_CONTROL_PAYLOAD:
        raise ValueError("control frame payload exceeds 125 bytes")
    return _header(_FIN_PING, len(payload)) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    encoded = reason.encode()
    if len(encoded) > _MAX_CONTROL_PAYLOAD - 2:  # cut on a character boundary: valid UTF-8
        encoded = encoded[: _MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
    body = struct.pack("!H", code) + encoded
    return _header(_FIN_CLOSE, len(body)) + body


@frozen(slots=True, weakref_slot=False)
class Outbound:
    """One encoded message: the JSON payload and its ready-to-write frame.

    ``channel`` is the stream whose offset it carries (``None`` with ``offset`` for
    per-client replies such as ``welcome`` or ``error``); ``route`` is the channel it
    was published on (``topic:orders`` for an event of that topic). The same object is put
    into every subscriber's queue.
    """

    payload: bytes
    frame: bytes
    channel: str | None = None
    offset: int | None = None
    route: str | None = None

    @classmethod
    def of(
        cls,
        payload: bytes,
        channel: str | None = None,
        offset: int | None = None,
        route: str | None = None,
    ) -> Outbound:
        return cls(payload, text_frame(payload), channel, offset, route)
