"""The chunked body decoder: h11 as the oracle for any body, chunking and split of the
bytes into reads; malformed bodies refused with 400, oversized ones with 413."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takhin_ws.wire.http import HttpError
from takhin_ws.wire.http.chunked import MAX_CHUNK_LINE, MAX_TRAILER, ChunkedBody

HEAD = b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def h11_body(wire: bytes) -> bytes:
    """What h11 makes of *wire* as the chunked body of a request."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(HEAD + wire)
    assert isinstance(conn.next_event(), h11.Request)
    out = bytearray()
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            out += event.data
        elif isinstance(event, h11.EndOfMessage):
            return bytes(out)
        else:
            raise AssertionError(event)


def decode(wire: bytes, cuts: list[int], limit: int = 1 << 20) -> ChunkedBody:
    body = ChunkedBody(limit)
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    for piece in pieces:
        if body.feed(piece):
            break
    return body


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(body, its chunked encoding): random chunk sizes, extensions, trailers."""
    data = draw(st.binary(max_size=300))
    wire = bytearray()
    pos = 0
    while pos < len(data):
        size = draw(st.integers(min_value=1, max_value=len(data) - pos))
        hexa = f"{size:x}"
        hexa = hexa.upper() if draw(st.booleans()) else hexa
        ext = draw(st.sampled_from(["", ";a=b", ';name="v"', ";x"]))
        wire += f"{hexa}{ext}\r\n".encode() + data[pos : pos + size] + b"\r\n"
        pos += size
    wire += b"0" + draw(st.sampled_from([b"", b";last"])) + b"\r\n"
    wire += draw(st.sampled_from([b"", b"Digest: abc\r\n", b"A: 1\r\nB: 2\r\n"])) + b"\r\n"
    return data, bytes(wire)


@settings(max_examples=400, deadline=None)
@given(chunked(), st.data())
def test_any_chunking_read_in_any_pieces_is_what_h11_reads(
    sample: tuple[bytes, bytes], data: st.DataObject
) -> None:
    body, wire = sample
    assert h11_body(wire) == body
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(wire)), max_size=12))))
    decoded = decode(wire, cuts)
    assert decoded.done
    assert decoded.body == body
    assert decoded.feed(b"bytes after the message are not the body's")


def test_nothing_is_done_before_the_trailer_ends() -> None:
    body = ChunkedBody(100)
    assert not body.feed(b"3\r\nabc\r\n0\r\n")
    assert not body.done
    assert not body.feed(b"X: 1\r\n")
    assert body.feed(b"\r\n")
    assert body.body == b"abc"


@pytest.mark.parametrize(
    "wire",
    [
        b"g\r\nabc\r\n",  # not hex
        b"\r\n",  # no size
        b"3\r\nabcd\r\n",  # longer than its size
        b"3\r\nab\r\n\r\n",  # shorter
        b"3\r\nabcXY",  # no CRLF after the data
        b"-1\r\n",
        b"0x3\r\nabc\r\n",
        b"1" * 17 + b"\r\n",  # beyond 64 bits
    ],
)
def test_a_malformed_body_is_400(wire: bytes) -> None:
    with pytest.raises(HttpError) as info:
        ChunkedBody(1 << 20).feed(wire + b"0\r\n\r\n")
    assert info.value.status == 400
    assert info.value.message.startswith("bad request body")


def test_a_size_line_or_a_trailer_without_end_is_bounded() -> None:
    with pytest.raises(HttpError, match="chunk size line over"):
        ChunkedBody(100).feed(b"1;" + b"x" * MAX_CHUNK_LINE)
    body = ChunkedBody(100)
    assert not body.feed(b"0\r\n")
    field = b"Name: value\r\n"
    for _ in range(MAX_TRAILER // len(field)):
        assert not body.feed(field)
    with pytest.raises(HttpError, match="trailer over"):
        body.feed(field)


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_a_body_over_the_limit_is_413_before_its_data(cut: int) -> None:
    wire = b"5\r\nabcde\r\n6\r\nfghijk\r\n0\r\n\r\n"
    body = ChunkedBody(10)
    assert not body.feed(wire[:cut])
    with pytest.raises(HttpError) as info:
        body.feed(wire[cut:])
    assert (info.value.status, info.value.message) == (413, "body exceeds the limit of 10 bytes")
    assert len(body.body) <= 10


def test_one_byte_chunks() -> None:
    data = bytes(range(256)) * 40
    wire = b"".join(b"1\r\n" + data[i : i + 1] + b"\r\n" for i in range(len(data))) + b"0\r\n\r\n"
    decoded = decode(wire, list(range(7, len(wire), 4093)))
    assert decoded.body == data == h11_body(wire)
