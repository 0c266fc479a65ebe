"""Client frames checked, and compressed messages inflated, before wsproto sees them.

:class:`InboundFilter` (sans-IO) reads the client's byte stream frame by frame and
passes it on unchanged, except for two things:

- a protocol violation raises :class:`ProtocolViolation` with the close code RFC 6455
  asks for, as soon as the offending header is read: an unmasked frame, a reserved
  opcode, RSV bits without a negotiated extension, a fragmented or oversized control
  frame, a continuation out of place (1002); invalid UTF-8 in a text message or a
  Close reason (1007); a frame whose declared length takes the message beyond the
  limit (1009, without waiting for the body); a binary message (1003: the protocol is
  JSON in text frames);
- a permessage-deflate message (RSV1) is collected, inflated (with a fresh inflater:
  the handshake answered ``client_no_context_takeover``) and handed on as one plain
  frame, masked with a zero key.

trio-websocket offers no way to give wsproto an extension, and wsproto refuses RSV1
frames without one: inflating here keeps both on their public APIs.
:class:`~takhin_ws.net.inboundio.InboundStream` puts the filter between a transport and
trio-websocket and turns a violation into a Close frame, then a polite drop.
"""

from __future__ import annotations

import codecs
import struct
from typing import Final

from .deflate import inflate

__all__ = [
    "CLOSE_INVALID_DATA",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "InboundFilter",
    "ProtocolViolation",
]

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_INVALID_DATA: Final = 1007
CLOSE_TOO_BIG: Final = 1009

_CONTINUATION: Final = 0x0
_TEXT: Final = 0x1
_BINARY: Final = 0x2
_CLOSE: Final = 0x8
_PING: Final = 0x9
_PONG: Final = 0xA
_DATA_OPCODES: Final = frozenset({_CONTINUATION, _TEXT, _BINARY})
_CONTROL_OPCODES: Final = frozenset({_CLOSE, _PING, _PONG})
_FIN: Final = 0x80
_RSV1: Final = 0x40
_RSV23: Final = 0x30
_MASKED: Final = 0x80
_MAX_CONTROL_PAYLOAD: Final = 125
_ZERO_MASK: Final = b"\x00\x00\x00\x00"
#: Close codes a peer may send (RFC 6455 section 7.4; 1004-1006 and 1015 never travel).
_SENDABLE_CODES: Final = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
_APP_CODES: Final = range(3000, 5000)


class ProtocolViolation(Exception):
    """The client broke RFC 6455 (or 7692): close with *code*, then drop."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


def _unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked (zero key: the payload as it is) client frame."""
    first = _FIN | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, _MASKED | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, _MASKED | 126, size)
    else:
        head = struct.pack("!BBQ", first, _MASKED | 127, size)
    return head + _ZERO_MASK + payload


class InboundFilter:
    """The checks and the inflation for one connection (see the module docstring).

    *skip* bytes (the HTTP request head already read) pass through unchecked.
    Small: one per client, holding nothing between frames but a partial header.
    """

    __slots__ = (
        "_closed",
        "_compressed",
        "_deflate",
        "_max",
        "_opcode",
        "_parts",
        "_pending",
        "_size",
        "_skip",
        "_utf8",
    )

    def __init__(self, *, max_message_size: int, deflate: bool = False, skip: int = 0) -> None:
        self._max = max_message_size
        self._deflate = deflate
        self._skip = skip
        self._pending = b""
        self._closed = False  # a Close frame went through: nothing after it matters
        self._opcode: int | None = None  # the data message in progress
        self._compressed = False
        self._size = 0  # bytes of the message in progress so far (as declared)
        self._parts: list[bytes] | None = None  # compressed data of the message in progress
        self._utf8: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> bytes:
        """Take bytes read from the socket; return the bytes to hand to wsproto
        (possibly none yet). Raise :class:`ProtocolViolation`."""
        head = b""
        if self._skip:
            head, data = data[: self._skip], data[self._skip :]
            self._skip -= len(head)
        if self._closed or not data:
            return head
        buf = self._pending + data if self._pending else data
        out = [head]
        pos = 0
        while True:
            end = self._frame(buf, pos, out)
            if end == pos:
                break
            pos = end
        self._pending = buf[pos:]
        return b"".join(out)

    def _frame(self, buf: bytes, pos: int, out: list[bytes]) -> int:
        """Handle the frame at *pos* if it is complete; return where the next one starts
        (*pos* itself while it is incomplete). Checks run on whatever header is there."""
        available = len(buf) - pos
        if available < 2:
            return pos
        first, second = buf[pos], buf[pos + 1]
        opcode = first & 0x0F
        self._check_header(first, second, opcode)
        length = second & 0x7F
        start = pos + 2
        if length == 126:
            if available < 4:
                return pos
            (length,) = struct.unpack_from("!H", buf, pos + 2)
            start = pos + 4
        elif length == 127:
            if available < 10:
                return pos
            (length,) = struct.unpack_from("!Q", buf, pos + 2)
            start = pos + 10
            if length >> 63:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
        if opcode in _DATA_OPCODES and self._size + length > self._max:
            raise ProtocolViolation(
                CLOSE_TOO_BIG, f"message exceeds the limit of {self._max} bytes"
            )
        end = start + 4 + length
        if len(buf) < end:
            return pos
        payload = _unmask(buf[start + 4 : end], buf[start : start + 4])
        if opcode in _CONTROL_OPCODES:
            if opcode == _CLOSE:
                self._check_close(payload)
                self._closed = True
                out.append(buf[pos:end])
                return len(buf)  # what follows a Close frame is ignored
            out.append(buf[pos:end])
        else:
            self._data(first, opcode, buf[pos:end], payload, out)
        return end

    def _check_header(self, first: int, second: int, opcode: int) -> None:
        if not second & _MASKED:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if opcode not in _DATA_OPCODES and opcode not in _CONTROL_OPCODES:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if first & _RSV23:
            raise ProtocolViolation(
                CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension uses them)"
            )
        if opcode in _CONTROL_OPCODES:
            if first & _RSV1:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "compressed control frame")
            if not first & _FIN:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if second & 0x7F > _MAX_CONTROL_PAYLOAD:
                raise ProtocolViolation(
                    CLOSE_PROTOCOL_ERROR, "control frame payload exceeds 125 bytes"
                )
            return
        if opcode == _CONTINUATION:
            if self._opcode is None:
                raise ProtocolViolation(
                    CLOSE_PROTOCOL_ERROR, "continuation frame without a message"
                )
            if first & _RSV1:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "RSV1 set on a continuation frame")
            return
        if self._opcode is not None:
            raise ProtocolViolation(
                CLOSE_PROTOCOL_ERROR, "new message before the previous one was finished"
            )
        if opcode == _BINARY:
            raise ProtocolViolation(
                CLOSE_UNSUPPORTED_DATA, "binary frames are not supported: send JSON text"
            )
        if first & _RSV1 and not self._deflate:
            raise ProtocolViolation(
                CLOSE_PROTOCOL_ERROR, "compressed frame but permessage-deflate was not negotiated"
            )

    def _data(
        self, first: int, opcode: int, frame: bytes, payload: bytes, out: list[bytes]
    ) -> None:
        if opcode != _CONTINUATION:
            self._opcode = opcode
            self._compressed = bool(first & _RSV1)
            if opcode == _TEXT and not self._compressed:
                self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._size += len(payload)
        final = bool(first & _FIN)
        if self._compressed:
            if self._parts is None:
                self._parts = []
            self._parts.append(payload)
            if final:
                out.append(self._inflated())
        else:
            if self._utf8 is not None:
                try:
                    self._utf8.decode(payload, final)
                except UnicodeDecodeError:
                    raise ProtocolViolation(
                        CLOSE_INVALID_DATA, "text message is not valid UTF-8"
                    ) from None
            out.append(frame)
        if final:
            self._opcode = None
            self._size = 0
            self._utf8 = None

    def _inflated(self) -> bytes:
        assert self._opcode is not None
        assert self._parts is not None
        data, self._parts = b"".join(self._parts), None
        try:
            message = inflate(data, self._max)
        except OverflowError:
            raise ProtocolViolation(
                CLOSE_TOO_BIG, f"message inflates beyond the limit of {self._max} bytes"
            ) from None
        except ValueError:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "invalid compressed data") from None
        if self._opcode == _TEXT:
            try:
                message.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation(
                    CLOSE_INVALID_DATA, "text message is not valid UTF-8"
                ) from None
        return _client_frame(self._opcode, message)

    @staticmethod
    def _check_close(payload: bytes) -> None:
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
