"""Client frames checked, and compressed messages inflated, before wsproto sees them.

:class:`InboundFilter` (sans-IO) reads the client's byte stream frame by frame, as it
arrives, and passes it on unchanged (control frames whole, once checked), except:

- a protocol violation stops it with the close code RFC 6455 asks for, as soon as the
  offending bytes are read: an unmasked frame, a reserved opcode, RSV bits without a
  negotiated extension, a fragmented or oversized control frame, a continuation out of
  place, a length not in the fewest bytes, a Close code a peer may not send (1002);
  invalid UTF-8 in a text message or a Close reason (1007, in the bytes that break it);
  a declared length taking the message beyond the limit (1009, without waiting for the
  body); a binary message (1003: the protocol is JSON in text frames). What passed
  before the violation is handed on first (its messages are answered), then nothing;
- a permessage-deflate message (RSV1) is collected, inflated (with a fresh inflater:
  the handshake answered ``client_no_context_takeover``) and handed on as one plain
  frame, masked with a zero key.

A plain data frame is handed on as it arrives: nothing is held but a partial header, a
control frame or the compressed message in progress, and each byte is looked at once
(the cost is linear in the message size). Every check wsproto makes is made here
first: wsproto would fail the connection itself, without a Close frame. (wsproto
refuses RSV1 frames without an extension object: inflating here keeps it on its
public API.) :class:`~takhin_ws.net.inboundio.InboundReader` puts the filter between a
transport and wsproto and turns a violation into a Close frame, then a polite drop.
"""

from __future__ import annotations

import codecs

from .deflate import inflate
from .framing import (
    BINARY,
    CLOSE,
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    CONTINUATION,
    CONTROL_OPCODES,
    DATA_OPCODES,
    FIN,
    MASK_SIZE,
    MASKED,
    MAX_CONTROL_PAYLOAD,
    RSV1,
    RSV23,
    TEXT,
    ZERO_MASK,
    ProtocolViolation,
    check_close,
    client_frame,
    declared_length,
    length_field_end,
    unmask,
)

__all__ = [
    "CLOSE_INVALID_DATA",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "InboundFilter",
    "ProtocolViolation",
]

# What the payload of the frame in progress is for: a plain data frame is handed on as
# it arrives, a control frame collected and handed on whole once checked, a compressed
# data frame collected until its message ends.
_PASS, _CONTROL, _INFLATE = 0, 1, 2


class InboundFilter:
    """The checks and the inflation for one connection (see the module docstring).

    *skip* bytes (the HTTP request head already read) pass through unchecked.
    After a violation :attr:`violation` holds it and :meth:`feed` hands on nothing.
    """

    __slots__ = (
        "_closed",
        "_compressed",
        "_control",
        "_deflate",
        "_first",
        "_head",
        "_kind",
        "_left",
        "_mask",
        "_max",
        "_offset",
        "_opcode",
        "_parts",
        "_size",
        "_skip",
        "_utf8",
        "violation",
    )

    def __init__(self, *, max_message_size: int, deflate: bool = False, skip: int = 0) -> None:
        self._max = max_message_size
        self._deflate = deflate
        self._skip = skip
        self._closed = False  # a Close frame went through: nothing after it matters
        self.violation: ProtocolViolation | None = None
        # the frame in progress: its header (while incomplete), then its payload
        self._head = b""
        self._first = 0
        self._kind = _PASS
        self._left = -1  # payload bytes still to come; -1 while reading a header
        self._mask = ZERO_MASK
        self._offset = 0  # payload bytes of this frame already seen
        self._control: list[bytes] | None = None  # a control frame, as it came
        # the data message in progress
        self._opcode: int | None = None
        self._compressed = False
        self._size = 0  # bytes of the message so far (as declared)
        self._parts: list[bytes] | None = None  # its compressed data, unmasked
        self._utf8: codecs.IncrementalDecoder | None = None

    @property
    def between_messages(self) -> bool:
        """Whether everything handed on so far ends a message: no frame, frame header or
        fragmented data message is in progress (a parser of the output holds nothing)."""
        return self._left < 0 and not self._head and self._opcode is None and not self._skip

    def feed(self, data: bytes) -> bytes:
        """Take bytes read from the socket; return the bytes to hand to wsproto
        (possibly none yet). On a violation, return what passed before it and set
        :attr:`violation`."""
        out: list[bytes] = []
        if self._skip:
            head, data = data[: self._skip], data[self._skip :]
            self._skip -= len(head)
            out.append(head)
        if self._closed or self.violation is not None or not data:
            return b"".join(out)
        view = memoryview(data)
        pos, end = 0, len(view)
        try:
            while pos < end and not self._closed:
                if self._left < 0:
                    pos = self._read_header(view, pos, out)
                else:
                    pos = self._read_payload(view, pos, out)
        except ProtocolViolation as exc:
            self.violation = exc
        return b"".join(out)

    # --- a frame header ---

    def _read_header(self, view: memoryview, pos: int, out: list[bytes]) -> int:
        """Take header bytes from *pos*, checking each part as soon as it is there (the
        first two bytes, then the length: a violation does not wait for the mask, nor
        an oversized frame for its body); once the header is whole, start the frame."""
        head = self._head
        end = len(view)
        while True:
            if len(head) < 2:
                target = 2
            else:
                length_end = length_field_end(head[1])
                target = length_end if len(head) < length_end else length_end + MASK_SIZE
            take = min(target - len(head), end - pos)
            head += view[pos : pos + take]
            pos += take
            if len(head) < target:
                self._head = head
                return pos
            if target == 2:
                self._check_header(head[0], head[1])
            length_end = length_field_end(head[1])
            if target == length_end:
                self._check_length(head)
            elif target == length_end + MASK_SIZE:
                break
        self._head = b""
        self._start_frame(head, out)
        return pos

    def _check_length(self, head: bytes) -> None:
        length = declared_length(head)
        if head[0] & 0x0F in DATA_OPCODES and self._size + length > self._max:
            raise ProtocolViolation(
                CLOSE_TOO_BIG, f"message exceeds the limit of {self._max} bytes"
            )

    def _start_frame(self, head: bytes, out: list[bytes]) -> None:
        first = head[0]
        opcode = first & 0x0F
        length = declared_length(head)
        self._first = first
        self._mask = head[-MASK_SIZE:]
        self._left = length
        self._offset = 0
        if opcode in CONTROL_OPCODES:
            self._kind = _CONTROL
            self._control = [head]
        else:
            self._size += length
            if opcode != CONTINUATION:
                self._opcode = opcode
                self._compressed = bool(first & RSV1)
                if opcode == TEXT and not self._compressed:
                    self._utf8 = codecs.getincrementaldecoder("utf-8")()
            if self._compressed:
                self._kind = _INFLATE
                if self._parts is None:
                    self._parts = []
            else:
                self._kind = _PASS
                if not length and first & FIN and self._utf8 is not None:
                    self._check_utf8(b"", final=True)  # before wsproto sees the end
                out.append(head)
        if not length:
            self._end_frame(out)

    def _check_header(self, first: int, second: int) -> None:
        opcode = first & 0x0F
        if not second & MASKED:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if first & RSV23:
            raise ProtocolViolation(
                CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension uses them)"
            )
        if opcode in CONTROL_OPCODES:
            if first & RSV1:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "compressed control frame")
            if not first & FIN:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if second & 0x7F > MAX_CONTROL_PAYLOAD:
                raise ProtocolViolation(
                    CLOSE_PROTOCOL_ERROR, "control frame payload exceeds 125 bytes"
                )
            return
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise ProtocolViolation(
                    CLOSE_PROTOCOL_ERROR, "continuation frame without a message"
                )
            if first & RSV1:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "RSV1 set on a continuation frame")
            return
        if self._opcode is not None:
            raise ProtocolViolation(
                CLOSE_PROTOCOL_ERROR, "new message before the previous one was finished"
            )
        if opcode == BINARY:
            raise ProtocolViolation(
                CLOSE_UNSUPPORTED_DATA, "binary frames are not supported: send JSON text"
            )
        if first & RSV1 and not self._deflate:
            raise ProtocolViolation(
                CLOSE_PROTOCOL_ERROR, "compressed frame but permessage-deflate was not negotiated"
            )

    # --- its payload ---

    def _read_payload(self, view: memoryview, pos: int, out: list[bytes]) -> int:
        take = min(self._left, len(view) - pos)
        chunk = view[pos : pos + take]
        kind = self._kind
        if kind == _PASS:
            if self._utf8 is not None:  # checked before wsproto sees it (it would drop us)
                final = take == self._left and bool(self._first & FIN)
                self._check_utf8(unmask(chunk, self._mask, self._offset), final=final)
            out.append(bytes(chunk))
        elif kind == _CONTROL:
            assert self._control is not None
            self._control.append(bytes(chunk))
        else:
            assert self._parts is not None
            self._parts.append(unmask(chunk, self._mask, self._offset))
        self._offset += take
        self._left -= take
        if not self._left:
            self._end_frame(out)
        return pos + take

    def _end_frame(self, out: list[bytes]) -> None:
        self._left = -1
        kind = self._kind
        if kind == _CONTROL:
            assert self._control is not None
            frame, self._control = b"".join(self._control), None
            if self._first & 0x0F == CLOSE:
                check_close(unmask(frame[2 + MASK_SIZE :], self._mask))
                self._closed = True
            out.append(frame)
            return
        if not self._first & FIN:
            return
        if kind == _INFLATE:
            out.append(self._inflated())
        self._opcode = None
        self._size = 0
        self._utf8 = None

    def _check_utf8(self, data: bytes, *, final: bool) -> None:
        assert self._utf8 is not None
        try:
            self._utf8.decode(data, final)
        except UnicodeDecodeError:
            raise ProtocolViolation(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None

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
        if self._opcode == TEXT:
            try:
                message.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation(
                    CLOSE_INVALID_DATA, "text message is not valid UTF-8"
                ) from None
        return client_frame(self._opcode, message)
