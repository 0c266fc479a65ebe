"""The inbound filter (sans-IO): RFC 6455 violations found at the header, compressed
client messages inflated; what passes is parsed by wsproto's server-side parser."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from takhin_ws.wire.websocket.deflate import TAIL
from takhin_ws.wire.websocket.inbound import (
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    InboundFilter,
    ProtocolViolation,
)

LIMIT = 1024
MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame, built by hand so that it can break every rule."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return head + payload
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    return head + MASK + bytes(a ^ b for a, b in zip(payload, key, strict=True))


def compressed(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[: -len(TAIL)]


def messages(data: bytes) -> list[tuple[Opcode, object]]:
    """Every finished message wsproto's server side (no extension) parses from *data*."""
    protocol = FrameProtocol(client=False, extensions=[])
    protocol.receive_bytes(data)
    out: list[tuple[Opcode, object]] = []
    parts: list[object] = []
    kind = Opcode.CONTINUATION
    for f in protocol.received_frames():
        if f.opcode in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
            out.append((f.opcode, f.payload))
            continue
        if f.opcode is not Opcode.CONTINUATION:
            kind = f.opcode
        parts.append(f.payload)
        if f.message_finished:
            if kind is Opcode.TEXT:
                out.append((kind, "".join(map(str, parts))))
            else:
                out.append((kind, b"".join(p for p in parts if isinstance(p, bytes))))
            parts = []
    return out


def feed(data: bytes, *, deflate: bool = False, chunk: int | None = None) -> bytes:
    inbound = InboundFilter(max_message_size=LIMIT, deflate=deflate)
    if chunk is None:
        return inbound.feed(data)
    return b"".join(inbound.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))


def found(inbound: InboundFilter) -> ProtocolViolation | None:
    """The filter's violation so far (a call: mypy does not narrow it across feeds)."""
    return inbound.violation


def violation(data: bytes, *, deflate: bool = False) -> ProtocolViolation:
    inbound = InboundFilter(max_message_size=LIMIT, deflate=deflate)
    messages(inbound.feed(data))  # wsproto never fails on what passed: it would drop us
    assert inbound.violation is not None
    assert inbound.feed(frame(0x9, b"more")) == b""  # nothing after a violation
    return inbound.violation


# --- what passes, passes unchanged ---

VALID = (
    frame(0x1, b'{"type":"ping"}')
    + frame(0x9, b"hb")
    + frame(0x1, '{"type":"subscribe","data":"topic:é'.encode()[:-1], fin=False)
    + frame(0xA, b"")
    + frame(0x0, 'é"}'.encode()[1:])
    + frame(0x8, struct.pack("!H", 1000) + b"bye")
)


def test_valid_stream_passes_byte_for_byte() -> None:
    assert feed(VALID) == VALID
    assert messages(feed(VALID)) == [
        (Opcode.TEXT, '{"type":"ping"}'),
        (Opcode.PING, b"hb"),
        (Opcode.PONG, b""),
        (Opcode.TEXT, '{"type":"subscribe","data":"topic:é"}'),
        (Opcode.CLOSE, (1000, "bye")),
    ]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, len(VALID)))
def test_any_chunking_gives_the_same_bytes(chunk: int) -> None:
    assert feed(VALID, chunk=chunk) == VALID


def test_request_head_passes_unchecked() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    inbound = InboundFilter(max_message_size=LIMIT, skip=len(head))
    ping = frame(0x9, b"p")
    assert inbound.feed(head[:5]) == head[:5]
    assert inbound.feed(head[5:] + ping[:1]) == head[5:]
    assert inbound.feed(ping[1:]) == ping


def test_nothing_after_a_close_frame_is_looked_at() -> None:
    close = frame(0x8, struct.pack("!H", 1001))
    garbage = frame(0x3, b"", masked=False)
    inbound = InboundFilter(max_message_size=LIMIT)
    assert inbound.feed(close + garbage) == close
    assert inbound.feed(garbage) == b""


def test_a_message_exactly_at_the_limit_passes() -> None:
    data = frame(0x1, b"a" * (LIMIT - 10), fin=False) + frame(0x0, b"b" * 10)
    assert messages(feed(data)) == [(Opcode.TEXT, "a" * (LIMIT - 10) + "b" * 10)]


def test_a_plain_frame_is_handed_on_as_it_arrives() -> None:
    """Nothing of a big frame is held back (and so never copied again with each read):
    every byte fed comes out at once, the header as soon as it is whole."""
    data = frame(0x1, b"x" * 1000)
    inbound = InboundFilter(max_message_size=LIMIT)
    assert inbound.feed(data[:5]) == b""  # a partial header waits
    assert inbound.feed(data[5:100]) == data[:100]
    assert inbound.feed(data[100:700]) == data[100:700]
    assert inbound.feed(data[700:]) == data[700:]


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 50))
def test_what_passes_does_not_depend_on_the_chunking(data: bytes, chunk: int) -> None:
    """Whatever the bytes (valid or not), feeding them in chunks hands on the same bytes
    and finds the same violation as feeding them whole; and wsproto never fails on what
    is handed on (it would drop the peer without a Close frame)."""
    whole = InboundFilter(max_message_size=LIMIT, deflate=True)
    passed = whole.feed(data)
    messages(passed)
    cut = InboundFilter(max_message_size=LIMIT, deflate=True)
    assert b"".join(cut.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)) == passed
    assert (None if cut.violation is None else cut.violation.code) == (
        None if whole.violation is None else whole.violation.code
    )


# --- RFC 6455 violations ---


def test_what_came_before_a_violation_is_handed_on() -> None:
    """A valid message and a bad frame in one read (Autobahn 3.2, 5.15): the message is
    handed on (and answered), then nothing more."""
    good = frame(0x1, b'{"type":"ping"}') + frame(0x1, b"a", fin=False) + frame(0x0, b"b")
    inbound = InboundFilter(max_message_size=LIMIT)
    assert inbound.feed(good + frame(0x1, b"x", rsv=0x20) + frame(0x9, b"p")) == good
    assert inbound.violation is not None
    assert inbound.violation.code == CLOSE_PROTOCOL_ERROR
    assert messages(good) == [(Opcode.TEXT, '{"type":"ping"}'), (Opcode.TEXT, "ab")]


def test_invalid_utf8_is_found_where_it_arrives() -> None:
    """Fail fast (Autobahn 6.4): the bytes that break UTF-8 stop the frame before the
    rest of it arrives."""
    data = frame(0x1, "κόσμε".encode() + b"\xed\xa0\x80" + b"edited")
    inbound = InboundFilter(max_message_size=LIMIT)
    assert inbound.feed(data[:12]) == data[:12]
    assert found(inbound) is None
    inbound.feed(data[12:19])
    refused = found(inbound)
    assert refused is not None
    assert refused.code == CLOSE_INVALID_DATA


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (frame(0x1, b"hi", masked=False), CLOSE_PROTOCOL_ERROR, "must be masked"),
        (frame(0x9, b"", masked=False), CLOSE_PROTOCOL_ERROR, "must be masked"),
        *[
            (frame(op, b""), CLOSE_PROTOCOL_ERROR, f"reserved opcode {op:#x}")
            for op in (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
        ],
        (frame(0x1, b"x", rsv=0x40), CLOSE_PROTOCOL_ERROR, "not negotiated"),
        (frame(0x1, b"x", rsv=0x20), CLOSE_PROTOCOL_ERROR, "reserved bits"),
        (frame(0x1, b"x", rsv=0x10), CLOSE_PROTOCOL_ERROR, "reserved bits"),
        (frame(0x9, b"x", fin=False), CLOSE_PROTOCOL_ERROR, "fragmented control"),
        (frame(0x9, b"x" * 126), CLOSE_PROTOCOL_ERROR, "exceeds 125"),
        (frame(0x0, b"x"), CLOSE_PROTOCOL_ERROR, "continuation frame without"),
        (
            frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
            CLOSE_PROTOCOL_ERROR,
            "before the previous one",
        ),
        (frame(0x1, b"\xff"), CLOSE_INVALID_DATA, "not valid UTF-8"),
        (frame(0x1, b"\xed\xa0\x80"), CLOSE_INVALID_DATA, "not valid UTF-8"),  # a surrogate
        (frame(0x1, b"\xc3", fin=False) + frame(0x0, b"("), CLOSE_INVALID_DATA, "UTF-8"),
        (frame(0x1, b"ok\xc3"), CLOSE_INVALID_DATA, "UTF-8"),  # cut mid-character
        (frame(0x8, b"\x03"), CLOSE_PROTOCOL_ERROR, "1-byte payload"),
        (frame(0x8, struct.pack("!H", 1005)), CLOSE_PROTOCOL_ERROR, "invalid close code 1005"),
        (frame(0x8, struct.pack("!H", 999)), CLOSE_PROTOCOL_ERROR, "invalid close code"),
        (frame(0x8, struct.pack("!H", 5000)), CLOSE_PROTOCOL_ERROR, "invalid close code"),
        # registered, but wsproto refuses it (and would drop the peer without a Close)
        (frame(0x8, struct.pack("!H", 1014)), CLOSE_PROTOCOL_ERROR, "invalid close code 1014"),
        # lengths not in the fewest bytes (RFC 6455 5.2; wsproto refuses them too)
        (bytes((0x81, 0xFE)) + struct.pack("!H", 125) + MASK, CLOSE_PROTOCOL_ERROR, "fewest"),
        (bytes((0x89, 0xFE)) + struct.pack("!H", 5), CLOSE_PROTOCOL_ERROR, "exceeds 125"),
        (bytes((0x81, 0xFF)) + struct.pack("!Q", 65535) + MASK, CLOSE_PROTOCOL_ERROR, "fewest"),
        (frame(0x8, struct.pack("!H", 1000) + b"\xff"), CLOSE_INVALID_DATA, "reason"),
        (frame(0x2, b"{}"), CLOSE_UNSUPPORTED_DATA, "binary frames are not supported"),
        (frame(0x2, b"{", fin=False), CLOSE_UNSUPPORTED_DATA, "send JSON text"),
    ],
)
def test_violations(data: bytes, code: int, reason: str) -> None:
    found = violation(data)
    assert found.code == code
    assert reason in found.reason
    assert str(code) in str(found)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1012, 1013, 3000, 4999])
def test_valid_close_codes_pass(code: int) -> None:
    close = frame(0x8, struct.pack("!H", code) + "fin é".encode())
    assert feed(close) == close


def test_violations_are_found_from_the_first_two_bytes() -> None:
    for data in (frame(0x1, b"x", masked=False), frame(0x5, b"abc"), frame(0x1, b"", rsv=0x40)):
        inbound = InboundFilter(max_message_size=LIMIT)
        inbound.feed(data[:2])
        assert inbound.violation is not None


def test_a_huge_declared_length_is_refused_at_the_header() -> None:
    # 2**62 bytes announced: refused with the ten header bytes, no mask or body awaited
    header = frame(0x1, b"", length=2**62)[:10]
    inbound = InboundFilter(max_message_size=LIMIT)
    assert inbound.feed(header[:9]) == b""  # the length is not complete yet
    assert found(inbound) is None
    assert inbound.feed(header[9:]) == b""
    refused = found(inbound)
    assert refused is not None
    assert refused.code == CLOSE_TOO_BIG
    assert str(LIMIT) in refused.reason
    assert violation(frame(0x1, b"", length=LIMIT + 1)[:4]).code == CLOSE_TOO_BIG


def test_a_length_with_its_top_bit_set_is_a_protocol_error() -> None:
    header = bytes((0x81, 0xFF)) + struct.pack("!Q", 1 << 63)
    assert violation(header).code == CLOSE_PROTOCOL_ERROR


def test_fragments_add_up_to_the_limit() -> None:
    data = frame(0x1, b"a" * 600, fin=False) + frame(0x0, b"b" * 300, fin=False)
    data += frame(0x9, b"ping")  # control frames do not count
    data += frame(0x0, b"c" * 200)[:4]
    found = violation(data)
    assert found.code == CLOSE_TOO_BIG


# --- permessage-deflate from the client ---


def test_compressed_message_is_inflated() -> None:
    text = '{"type":"subscribe","data":["metrics:lean","topic:é"]}'
    data = frame(0x1, compressed(text.encode()), rsv=0x40) + frame(0x9, b"p")
    out = feed(data, deflate=True)
    assert messages(out) == [(Opcode.TEXT, text), (Opcode.PING, b"p")]
    assert feed(data, deflate=True, chunk=3) == out


def test_compressed_message_in_fragments_with_a_ping_between() -> None:
    body = compressed(b'{"type":"ping"}' * 20)
    third = len(body) // 3
    data = (
        frame(0x1, body[:third], rsv=0x40, fin=False)
        + frame(0x9, b"mid")
        + frame(0x0, body[third : 2 * third], fin=False)
        + frame(0x0, body[2 * third :])
    )
    assert messages(feed(data, deflate=True)) == [
        (Opcode.PING, b"mid"),
        (Opcode.TEXT, '{"type":"ping"}' * 20),
    ]


def test_each_compressed_message_stands_alone() -> None:
    # client_no_context_takeover was answered: every message inflates on its own
    one = frame(0x1, compressed(b"same words, same words"), rsv=0x40)
    assert messages(feed(one * 3, deflate=True)) == [(Opcode.TEXT, "same words, same words")] * 3


def test_compressed_and_plain_messages_mix() -> None:
    data = frame(0x1, compressed(b"a" * 500), rsv=0x40) + frame(0x1, b"plain")
    assert messages(feed(data, deflate=True)) == [
        (Opcode.TEXT, "a" * 500),
        (Opcode.TEXT, "plain"),
    ]
    binary = frame(0x2, compressed(b"{}"), rsv=0x40)
    assert violation(binary, deflate=True).code == CLOSE_UNSUPPORTED_DATA


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, compressed(b"x" * (LIMIT + 1)), rsv=0x40), CLOSE_TOO_BIG),  # a bomb
        (frame(0x1, b"\xff\xfe\xfd\xfc", rsv=0x40), CLOSE_PROTOCOL_ERROR),
        (frame(0x1, compressed(b"\xff"), rsv=0x40), CLOSE_INVALID_DATA),
        (frame(0x9, b"", rsv=0x40), CLOSE_PROTOCOL_ERROR),
        (frame(0x1, b"", rsv=0x40, fin=False) + frame(0x0, b"", rsv=0x40), CLOSE_PROTOCOL_ERROR),
    ],
)
def test_compressed_violations(data: bytes, code: int) -> None:
    assert violation(data, deflate=True).code == code
