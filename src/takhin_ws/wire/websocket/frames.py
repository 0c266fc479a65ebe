"""Server-to-client WebSocket frames, built once and shared by every client (sans-IO).

Server frames are never masked (RFC 6455 section 5.1), so one ``bytes`` object is a
valid frame for every connection. A published message has a few *wire variants*
(:class:`Variant`): the envelope or only its metrics ``data`` (``format=bare``), plain
or compressed with permessage-deflate (one per window size). Each variant is built
lazily, the first time a client of that variant needs it, and then shared: with
``server_no_context_takeover`` a compressed message depends on no connection's state.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs
from attrs import frozen

from ..channels import STATE_STREAMS
from .deflate import deflate

__all__ = [
    "BARE",
    "PLAIN",
    "Outbound",
    "Variant",
    "bare_payload",
    "close_frame",
    "deflated_frame",
    "has_close_frame",
    "ping_frame",
    "pong_frame",
    "text_frame",
]

_FIN_TEXT: Final = 0x81
_FIN_CLOSE: Final = 0x88
_FIN_PING: Final = 0x89
_FIN_PONG: Final = 0x8A
#: RSV1 marks a compressed message (RFC 7692 section 6).
_RSV1: Final = 0x40
_MAX_CONTROL_PAYLOAD: Final = 125
#: How every envelope of a metrics snapshot starts (``encode`` writes ``type`` first).
_METRICS_PREFIX: Final = b'{"type":"metrics","data":'
#: The envelope key that follows ``data`` (``,"timestamp":`` cannot occur inside a JSON
#: string, where every quote is escaped, so its last occurrence is the envelope's).
_AFTER_DATA: Final = b',"timestamp":'


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying UTF-8 *payload*."""
    return _header(_FIN_TEXT, len(payload)) + payload


def deflated_frame(data: bytes) -> bytes:
    """One unfragmented text frame carrying a permessage-deflate message (RSV1 set)."""
    return _header(_FIN_TEXT | _RSV1, len(data)) + data


def ping_frame(payload: bytes = b"") -> bytes:
    if len(payload) > _MAX_CONTROL_PAYLOAD:
        raise ValueError("control frame payload exceeds 125 bytes")
    return _header(_FIN_PING, len(payload)) + payload


def pong_frame(payload: bytes = b"") -> bytes:
    """The answer to a ping carrying *payload* (RFC 6455 5.5.3: the same payload)."""
    if len(payload) > _MAX_CONTROL_PAYLOAD:
        raise ValueError("control frame payload exceeds 125 bytes")
    return _header(_FIN_PONG, len(payload)) + payload


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A Close frame with *code* and *reason* (cut to fit); ``None``: no status code
    (the answer to a Close frame that had none)."""
    if code is None:
        return _header(_FIN_CLOSE, 0)
    encoded = reason.encode()
    if len(encoded) > _MAX_CONTROL_PAYLOAD - 2:  # cut on a character boundary: valid UTF-8
        encoded = encoded[: _MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
    body = struct.pack("!H", code) + encoded
    return _header(_FIN_CLOSE, len(body)) + body


def bare_payload(payload: bytes) -> bytes | None:
    """The ``data`` object of a ``metrics`` envelope, as JSON; ``None`` for any other
    message (a ``format=bare`` client receives metrics and nothing else)."""
    if not payload.startswith(_METRICS_PREFIX):
        return None
    end = payload.rfind(_AFTER_DATA)
    if end < len(_METRICS_PREFIX):
        return None
    return payload[len(_METRICS_PREFIX) : end]


@frozen
class Variant:
    """What one client receives of a message: envelope or bare, plain or compressed.

    ``window_bits`` 0 is plain; 9-15 is permessage-deflate with that window, for
    payloads of at least ``min_size`` bytes (smaller ones go plain).
    """

    #: ``format=bare``: only the ``data`` of a ``metrics`` message, nothing else.
    bare: bool = False
    #: 0: plain; 9-15: permessage-deflate with a window of that many bits.
    window_bits: int = 0
    #: Smaller payloads go plain even when compressing (``--compress-min-size``).
    min_size: int = 0

    @property
    def uncompressed(self) -> Variant:
        return BARE if self.bare else PLAIN


#: The 2.9 envelope, uncompressed: what every client gets by default.
PLAIN: Final = Variant()
#: ``format=bare``, uncompressed.
BARE: Final = Variant(bare=True)


@frozen(slots=True, weakref_slot=False)
class Outbound:
    """One encoded message: its ready-to-write frame (and, cut from it, its JSON payload).

    ``channel`` is the stream whose offset it carries (``None`` with ``offset`` for
    per-client replies such as ``welcome`` or ``error``); ``route`` is the channel it
    was published on (``topic:orders`` for an event of that topic). The same object is put
    into every subscriber's queue; :meth:`variant` gives the object to put into the
    queue of a client that receives another variant (built once, then shared).
    """

    frame: bytes
    channel: str | None = None
    offset: int | None = None
    route: str | None = None
    #: a compressed variant: the message it compresses (whose payload it carries)
    _source: Outbound | None = attrs.field(default=None, eq=False, repr=False)
    #: the other variants built so far (made on first need: most messages have none)
    _variants: dict[Variant, Outbound | None] | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )

    @classmethod
    def of(
        cls,
        payload: bytes,
        channel: str | None = None,
        offset: int | None = None,
        route: str | None = None,
    ) -> Outbound:
        """The message whose JSON text is *payload*: its frame is the one copy kept
        (header and text in one right-sized object), whatever buffer *payload* came in
        (orjson's output keeps a 4 KiB allocation even for a 60-byte text)."""
        return cls(text_frame(payload), channel, offset, route)

    @property
    def payload(self) -> bytes:
        """The JSON text of the message (cut from its frame; a compressed variant's is
        the text it compresses)."""
        source = self._source
        if source is not None:
            return source.payload
        frame = self.frame
        length = frame[1] & 0x7F
        return frame[4 if length == 126 else 10 if length == 127 else 2 :]

    @property
    def state_key(self) -> str | None:
        """The channel this message is the latest state of (a ``metrics`` snapshot, or
        a view of one): a newer message of the same key supersedes it in a slow
        client's queue. ``None`` for events and replies, which are never conflated."""
        if self.channel in STATE_STREAMS:
            return self.route or self.channel
        return None

    def variant(self, variant: Variant) -> Outbound | None:
        """This message as *variant* clients receive it (``self`` for :data:`PLAIN`);
        ``None`` if they receive nothing of it (a bare client and a non-metrics message)."""
        if variant == PLAIN:
            return self
        variants = self._variants
        if variants is None:
            variants = {}
            object.__setattr__(self, "_variants", variants)
        try:
            return variants[variant]
        except KeyError:
            built = variants[variant] = self._build(variant)
            return built

    def _build(self, variant: Variant) -> Outbound | None:
        if variant == BARE:
            payload = bare_payload(self.payload)
            if payload is None:
                return None
            return Outbound(text_frame(payload), self.channel, self.offset, self.route)
        base = self.variant(variant.uncompressed)
        if base is None:
            return None
        payload = base.payload
        if len(payload) < variant.min_size:
            return base
        frame = deflated_frame(deflate(payload, variant.window_bits))
        return Outbound(frame, self.channel, self.offset, self.route, base)


_OPCODE_CLOSE: Final = 0x8
_DATA_OPCODES: Final = frozenset({0x0, 0x1, 0x2})
_CONTROL_OPCODES: Final = frozenset({0x8, 0x9, 0xA})


def has_close_frame(data: bytes | bytearray | memoryview) -> bool:
    """Whether *data* is a run of whole, well-formed server WebSocket frames (unmasked)
    one of which is a Close frame. Anything else (an HTTP response, a fragment) is not.

    An HTTP response can never pass: its first byte ``H`` (0x48) reads as a non-final
    control frame, which RFC 6455 forbids."""
    view = memoryview(data)
    end = len(view)
    pos = 0
    found = False
    while pos < end:
        if end - pos < 2:
            return False
        first, second = view[pos], view[pos + 1]
        opcode = first & 0x0F
        if first & 0x30 or second & 0x80:  # RSV2/RSV3, or a masked (client) frame
            return False
        length = second & 0x7F
        pos += 2
        if opcode in _CONTROL_OPCODES:
            if not first & 0x80 or first & 0x40 or length > _MAX_CONTROL_PAYLOAD:
                return False
            found |= opcode == _OPCODE_CLOSE
        elif opcode not in _DATA_OPCODES:
            return False
        elif length >= 126:
            size = 2 if length == 126 else 8
            if end - pos < size:
                return False
            length = int.from_bytes(view[pos : pos + size], "big")
            pos += size
        pos += length
    return found and pos == end
