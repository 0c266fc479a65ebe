"""The frames a client sends, as RFC 6455 (and 7692) lays them out (sans-IO).

Opcodes and header bits, how a header declares its length (and the fewest-bytes rule),
unmasking, rebuilding a frame as a masked client frame, the close codes and which of
them a peer may send, and :class:`ProtocolViolation`, the error a broken rule raises
with the close code to answer it with. :class:`~takhin_ws.wire.websocket.inbound.InboundFilter`
reads a client's stream with them; server frames are :mod:`takhin_ws.wire.websocket.frames`'.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "BINARY",
    "CLOSE",
    "CLOSE_INVALID_DATA",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "CONTINUATION",
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "FIN",
    "LENGTH_16",
    "LENGTH_64",
    "MASKED",
    "MASK_SIZE",
    "MAX_CONTROL_PAYLOAD",
    "PING",
    "PONG",
    "RSV1",
    "RSV23",
    "TEXT",
    "ZERO_MASK",
    "ProtocolViolation",
    "check_close",
    "client_frame",
    "declared_length",
    "length_field_end",
    "unmask",
]

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_INVALID_DATA: Final = 1007
CLOSE_TOO_BIG: Final = 1009

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
DATA_OPCODES: Final = frozenset({CONTINUATION, TEXT, BINARY})
CONTROL_OPCODES: Final = frozenset({CLOSE, PING, PONG})
FIN: Final = 0x80
RSV1: Final = 0x40
RSV23: Final = 0x30
MASKED: Final = 0x80
MAX_CONTROL_PAYLOAD: Final = 125
LENGTH_16: Final = 126
LENGTH_64: Final = 127
MASK_SIZE: Final = 4
ZERO_MASK: Final = b"\x00\x00\x00\x00"
#: Close codes a peer may send: RFC 6455's (1004-1006 and 1015 never travel) and 1012,
#: 1013 (registered since), as wsproto takes them. 1014 is registered too, but wsproto
#: refuses it: refused here with 1002 so that the peer gets a Close frame.
_SENDABLE_CODES: Final = frozenset({1000, 1001, 1002, 1003, *range(1007, 1014)})
_APP_CODES: Final = range(3000, 5000)


class ProtocolViolation(Exception):
    """The client broke RFC 6455 (or 7692): close with *code*, then drop."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


def unmask(data: bytes | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """*data* unmasked with *mask*, *offset* bytes into the frame's payload."""
    size = len(data)
    if not size:
        return b""
    turn = offset % MASK_SIZE
    key = mask[turn:] + mask[:turn]
    stream = (key * (size // MASK_SIZE + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(size, "little")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked (zero key: the payload as it is) client frame."""
    first = FIN | opcode
    size = len(payload)
    if size < LENGTH_16:
        head = bytes((first, MASKED | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, MASKED | LENGTH_16, size)
    else:
        head = struct.pack("!BBQ", first, MASKED | LENGTH_64, size)
    return head + ZERO_MASK + payload


def length_field_end(second: int) -> int:
    """Where the length of a frame whose second byte is *second* ends (2, 4 or 10)."""
    length = second & 0x7F
    return 4 if length == LENGTH_16 else 10 if length == LENGTH_64 else 2


def declared_length(head: bytes) -> int:
    """The payload length a header declares (up to its length bytes); raise
    :class:`ProtocolViolation` for a length not in the fewest bytes (RFC 6455 5.2)."""
    length = head[1] & 0x7F
    if length == LENGTH_16:
        (length,) = struct.unpack_from("!H", head, 2)
        if length < LENGTH_16:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "frame length not in fewest bytes")
    elif length == LENGTH_64:
        (length,) = struct.unpack_from("!Q", head, 2)
        if length >> 63:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
        if length < 1 << 16:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "frame length not in fewest bytes")
    return length


def check_close(payload: bytes) -> None:
    """Raise :class:`ProtocolViolation` unless *payload* is a Close frame's valid payload:
    empty, or a code a peer may send and a UTF-8 reason."""
    if not payload:
        return
    if len(payload) == 1:
        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if code not in _SENDABLE_CODES and code not in _APP_CODES:
        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
