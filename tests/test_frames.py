"""Pre-built server frames, checked with wsproto's client-side frame parser."""

from __future__ import annotations

import struct
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Frame, FrameProtocol, Opcode

from takhin_ws.wire.codec import encode, payload_to_data
from takhin_ws.wire.messages import Envelope, MonitoringMetrics
from takhin_ws.wire.websocket.frames import (
    BARE,
    PLAIN,
    Outbound,
    Variant,
    bare_payload,
    close_frame,
    deflated_frame,
    has_close_frame,
    ping_frame,
    text_frame,
)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def parse(data: bytes, chunk: int | None = None) -> list[Frame]:
    """Feed *data* to a client-side parser (optionally in pieces); return its frames."""
    protocol = FrameProtocol(client=True, extensions=[])
    frames: list[Frame] = []
    step = chunk or max(len(data), 1)
    for start in range(0, max(len(data), 1), step):
        protocol.receive_bytes(data[start : start + step])
        frames.extend(protocol.received_frames())
    return frames


def one_message(frames: list[Frame], opcode: Opcode) -> object:
    """The payload of the single complete message *frames* make up."""
    assert frames
    assert frames[0].opcode is opcode
    assert all(f.opcode in (opcode, Opcode.CONTINUATION) for f in frames)
    assert frames[-1].frame_finished
    assert frames[-1].message_finished
    assert not any(f.message_finished for f in frames[:-1])
    if opcode is Opcode.TEXT:
        return "".join(str(f.payload) for f in frames)
    return b"".join(bytes(f.payload) for f in frames)  # type: ignore[arg-type]


def close_payload(frames: list[Frame]) -> tuple[int, str]:
    """The (code, reason) of the single close frame *frames* hold."""
    (frame,) = frames
    assert frame.opcode is Opcode.CLOSE
    assert frame.message_finished
    payload = frame.payload
    assert isinstance(payload, tuple)
    code, reason = payload
    assert isinstance(code, int)
    assert isinstance(reason, str)
    return code, reason


def header_size(n: int) -> int:
    """RFC 6455 minimal length encoding of an unmasked frame's header."""
    return 2 if n < 126 else 4 if n < 65536 else 10


@pytest.mark.parametrize("size", SIZES)
def test_text_frame_ascii(size: int) -> None:
    payload = bytes(ord("a") + i % 26 for i in range(size))
    frame = text_frame(payload)
    assert len(frame) == header_size(size) + size
    assert frame.endswith(payload)
    assert one_message(parse(frame), Opcode.TEXT) == payload.decode()


@pytest.mark.parametrize("size", SIZES)
def test_text_frame_utf8_fed_in_pieces(size: int) -> None:
    text = "é€😀a"
    payload = (text * (size // len(text.encode()) + 1)).encode()[:size]
    payload = payload.decode(errors="ignore").encode()
    payload += b"a" * (size - len(payload))
    assert len(payload) == size
    frame = text_frame(payload)
    assert one_message(parse(frame, chunk=997), Opcode.TEXT) == payload.decode()
    if size <= 1000:
        assert one_message(parse(frame, chunk=1), Opcode.TEXT) == payload.decode()


@pytest.mark.parametrize("size", SIZES)
def test_frames_back_to_back_stay_separate_messages(size: int) -> None:
    first, second = b"x" * size, b'{"type":"pong","timestamp":1}'
    frames = parse(text_frame(first) + ping_frame(b"hb") + text_frame(second))
    finished = [f for f in frames if f.message_finished]
    assert [f.opcode for f in finished] == [Opcode.TEXT, Opcode.PING, Opcode.TEXT]
    assert finished[-1].payload == second.decode()
    assert finished[1].payload == b"hb"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_text_frame_any_text(text: str) -> None:
    assert one_message(parse(text_frame(text.encode())), Opcode.TEXT) == text


@pytest.mark.parametrize("size", [0, 1, 125])
def test_ping_frame(size: int) -> None:
    payload = b"p" * size
    frame = ping_frame(payload)
    assert len(frame) == 2 + size
    assert one_message(parse(frame), Opcode.PING) == payload


def test_ping_frame_default_is_empty() -> None:
    assert one_message(parse(ping_frame()), Opcode.PING) == b""


@pytest.mark.parametrize("size", [126, 65535, 65536, 70000])
def test_ping_frame_refuses_oversize_payload(size: int) -> None:
    with pytest.raises(ValueError, match="125"):
        ping_frame(b"p" * size)


@pytest.mark.parametrize("size", SIZES)
def test_close_frame_reason_sizes(size: int) -> None:
    reason = "r" * size
    frame = close_frame(1000, reason)
    assert len(frame) <= 2 + 125  # a control frame never exceeds 125 bytes of payload
    code, got = close_payload(parse(frame))
    assert code == CloseReason.NORMAL_CLOSURE
    assert got == reason[:123]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1000, ""),
        (1001, "server shutting down"),
        (1008, "policy violation"),
        (1009, "message too big"),
        (1011, "internal error"),
        (4000, "application code"),
    ],
)
def test_close_frame_codes(code: int, reason: str) -> None:
    parsed_code, parsed_reason = close_payload(parse(close_frame(code, reason)))
    assert parsed_code == code
    assert parsed_reason == reason


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("é" * 100, id="2-byte"),
        pytest.param("€" * 60, id="3-byte"),
        pytest.param("😀" * 40, id="4-byte"),
        pytest.param("a" + "é" * 70, id="mixed"),
        pytest.param("ab" + "😀" * 40, id="4-byte-offset"),
    ],
)
def test_close_frame_truncates_reason_on_a_character_boundary(reason: str) -> None:
    frame = close_frame(1001, reason)
    assert len(frame) <= 2 + 125
    code, got = close_payload(parse(frame))
    assert code == CloseReason.GOING_AWAY
    assert reason.startswith(got)
    assert 123 - 3 <= len(got.encode()) <= 123  # as much as fits, whole characters only


def test_outbound_of() -> None:
    payload = b'{"type":"pong","timestamp":1}'
    item = Outbound.of(payload, "topics", 7, "topic:orders")
    assert item.frame == text_frame(payload)
    assert (item.payload, item.channel, item.offset, item.route) == (
        payload,
        "topics",
        7,
        "topic:orders",
    )
    bare = Outbound.of(payload)
    assert (bare.channel, bare.offset, bare.route) == (None, None, None)
    assert one_message(parse(bare.frame), Opcode.TEXT) == payload.decode()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_the_payload_is_cut_from_the_frame_at_every_header_size(size: int) -> None:
    payload = b"x" * size
    item = Outbound.of(payload)
    assert item.payload == payload
    assert item.frame == text_frame(payload)


def test_a_retained_message_costs_its_length_not_the_encoders_buffer() -> None:
    """tracemalloc: orjson's output keeps a ~4 KiB allocation even for a 60-byte text;
    an Outbound keeps one right-sized copy (its frame) and nothing of that buffer."""
    count = 2000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = [
            Outbound.of(orjson.dumps({"type": "pong", "n": n}), "topics", 1000 + n)
            for n in range(count)
        ]
        per_item = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    size = sum(len(item.payload) for item in items) / count
    # the frame (a bytes object: 33 bytes of header) and the Outbound (~64): no 4 KiB
    assert per_item < size + OUTBOUND_OVERHEAD


#: Bytes an Outbound costs beyond its payload: the frame's bytes object header and
#: WebSocket header, the Outbound itself, its offset (an int above 256).
OUTBOUND_OVERHEAD = 160


# --- wire variants: built once, shared, decoded by independent receivers ---

METRICS = (
    b'{"type":"metrics","data":{"throughput":{"produceRate":1.5},"topicStats":['
    + b",".join([b'{"name":"t,\\"timestamp\\":","timestamp":1}'] * 40)
    + b'],"timestamp":7},"timestamp":8,"channel":"metrics","offset":3,"stale":false}'
)
EVENT = b'{"type":"topic_created","data":{"name":"orders","partitions":3},"timestamp":1}'
DEFLATE_15 = Variant(window_bits=15, min_size=200)
RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def inflating_parser(bits: int = 15) -> FrameProtocol:
    """A client-side parser with wsproto's own permessage-deflate, as negotiated."""
    extension = PerMessageDeflate()
    response = RESPONSE + (f"; server_max_window_bits={bits}" if bits != 15 else "")
    extension.finalize(response)
    return FrameProtocol(client=True, extensions=[extension])


def received(protocol: FrameProtocol, data: bytes) -> list[str]:
    protocol.receive_bytes(data)
    return [str(f.payload) for f in protocol.received_frames() if f.message_finished]


def test_plain_variant_is_the_item_itself() -> None:
    item = Outbound.of(METRICS, "metrics", 3, "metrics")
    assert item.variant(PLAIN) is item
    assert item.variant(Variant()) is item


def test_bare_variant_is_the_metrics_data() -> None:
    item = Outbound.of(METRICS, "metrics", 3, "metrics")
    bare = item.variant(BARE)
    assert bare is not None
    assert bare.payload == orjson.dumps(orjson.loads(METRICS)["data"])
    assert one_message(parse(bare.frame), Opcode.TEXT) == bare.payload.decode()
    assert (bare.channel, bare.offset, bare.route) == ("metrics", 3, "metrics")
    assert item.variant(BARE) is bare  # built once


@pytest.mark.parametrize(
    "payload",
    [
        EVENT,
        b'{"type":"pong","timestamp":1}',
        b'{"type":"welcome","data":{},"timestamp":1}',
        b'{"type":"metrics","data":{}}',
        b'{"type":"metrics"}',
    ],
)
def test_bare_variant_of_anything_else_is_nothing(payload: bytes) -> None:
    item = Outbound.of(payload)
    assert item.variant(BARE) is None
    assert item.variant(Variant(bare=True, window_bits=15)) is None


def test_bare_payload_of_a_real_envelope() -> None:
    metrics = MonitoringMetrics(timestamp=5)
    envelope = Envelope(payload=metrics, timestamp=9, channel="metrics", offset=1, epoch="e")
    assert bare_payload(encode(envelope)) == orjson.dumps(payload_to_data(metrics))


@pytest.mark.parametrize("bits", [9, 10, 12, 15])
def test_deflated_variant_decoded_by_wsproto(bits: int) -> None:
    item = Outbound.of(METRICS * 3)
    variant = Variant(window_bits=bits)
    compressed = item.variant(variant)
    assert compressed is not None
    assert compressed.frame[0] == 0xC1  # FIN, RSV1, text
    assert len(compressed.frame) < len(item.frame) / 4
    assert compressed.payload == item.payload
    assert item.variant(variant) is compressed  # built once, then shared
    # the same bytes, twice: each message stands alone (no context takeover)
    protocol = inflating_parser(bits)
    assert received(protocol, compressed.frame * 2) == [METRICS.decode() * 3] * 2


def test_compressed_and_plain_frames_mix_on_one_connection() -> None:
    item = Outbound.of(METRICS)
    small = Outbound.of(EVENT)
    compressed = item.variant(DEFLATE_15)
    assert compressed is not None
    assert small.variant(DEFLATE_15) is small  # below min_size: plain
    stream = compressed.frame + small.frame + ping_frame(b"x") + compressed.frame
    assert received(inflating_parser(), stream) == [
        METRICS.decode(),
        EVENT.decode(),
        "b'x'",
        METRICS.decode(),
    ]


def test_bare_compressed_variant() -> None:
    item = Outbound.of(METRICS)
    variant = Variant(bare=True, window_bits=15)
    compressed = item.variant(variant)
    bare = item.variant(BARE)
    assert compressed is not None
    assert bare is not None
    assert compressed.payload == bare.payload
    assert received(inflating_parser(), compressed.frame) == [bare.payload.decode()]


def test_deflated_frame_header_sizes() -> None:
    for size in (0, 125, 126, 65536):
        frame = deflated_frame(b"z" * size)
        assert frame[0] == 0xC1
        assert len(frame) == header_size(size) + size


def test_variant_equality_groups_clients() -> None:
    assert Variant(window_bits=15, min_size=512) == Variant(window_bits=15, min_size=512)
    assert hash(BARE) == hash(Variant(bare=True))
    assert Variant(window_bits=15).uncompressed is PLAIN
    assert Variant(bare=True, window_bits=10).uncompressed is BARE


# --- has_close_frame (moved from test_transport: pure) ---


def ws_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One unmasked frame (*rsv*: the RSV1-3 bits, 0x40/0x20/0x10)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 1 << 16:
        return bytes([first, 126]) + struct.pack("!H", n) + payload
    return bytes([first, 127]) + struct.pack("!Q", n) + payload


CLOSE = ws_frame(0x8, b"\x03\xe8")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(CLOSE, id="close"),
        pytest.param(ws_frame(0x8), id="empty-close"),
        pytest.param(ws_frame(0x1, b"abc") + ws_frame(0x8), id="text-then-empty-close"),
        pytest.param(ws_frame(0x8, b"x" * 125), id="close-payload-at-the-limit"),
        pytest.param(ws_frame(0x2, b"\x00" * 126) + CLOSE, id="length-126"),
        pytest.param(ws_frame(0x1, b"y" * 300) + CLOSE, id="16-bit-length"),
        pytest.param(ws_frame(0x1, b"z" * 70_000) + CLOSE, id="64-bit-length"),
        pytest.param(ws_frame(0x1, b"c", rsv=0x40) + CLOSE, id="compressed-data"),
        pytest.param(ws_frame(0x1, b"a", fin=False) + ws_frame(0x0, b"b") + CLOSE, id="fragments"),
        pytest.param(ws_frame(0x9, b"p") + CLOSE + ws_frame(0xA, b"q"), id="ping-close-pong"),
    ],
)
def test_has_close_frame_finds_a_close_among_whole_frames(data: bytes) -> None:
    assert has_close_frame(data)
    assert has_close_frame(bytearray(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(ws_frame(0x1, b"abc") + ws_frame(0x9), id="no-close"),
        pytest.param(CLOSE + b"\x81", id="a-stray-byte"),
        pytest.param(CLOSE[:-1], id="cut-close"),
        pytest.param(CLOSE + b"\x81\x7e\x01", id="cut-16-bit-length"),
        pytest.param(CLOSE + b"\x81\x7f" + b"\x00" * 7, id="cut-64-bit-length"),
        pytest.param(ws_frame(0x1, b"y" * 300)[:-1] + CLOSE, id="cut-long-frame"),
        pytest.param(b"HTTP/1.1 400 Bad Request\r\n\r\n", id="http"),
        pytest.param(bytes([0x88, 0x82]) + b"\x00\x00\x00\x00\x03\xe8", id="masked"),
        pytest.param(ws_frame(0x8, rsv=0x20), id="rsv2"),
        pytest.param(ws_frame(0x8, rsv=0x10), id="rsv3"),
        pytest.param(ws_frame(0x8, rsv=0x40), id="compressed-control"),
        pytest.param(ws_frame(0x8, fin=False), id="fragmented-close"),
        pytest.param(ws_frame(0x9, fin=False) + CLOSE, id="fragmented-ping"),
        pytest.param(ws_frame(0x9, b"p", rsv=0x40) + CLOSE, id="compressed-ping"),
        pytest.param(ws_frame(0x8, b"x" * 126), id="close-payload-over-the-limit"),
        pytest.param(ws_frame(0x3) + CLOSE, id="reserved-opcode"),
    ],
)
def test_has_close_frame_refuses_anything_else(data: bytes) -> None:
    assert not has_close_frame(data)
