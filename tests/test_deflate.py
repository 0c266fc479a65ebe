"""permessage-deflate: negotiation (RFC 7692 section 7.1) and one-shot messages."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takhin_ws.wire.websocket.deflate import (
    DEFLATE_LEVEL,
    EXTENSION,
    MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
    TAIL,
    Deflate,
    deflate,
    inflate,
    negotiate,
    parse_offers,
)

ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def test_constants() -> None:
    assert EXTENSION == "permessage-deflate"
    assert (MIN_WINDOW_BITS, MAX_WINDOW_BITS) == (9, 15)
    assert 1 <= DEFLATE_LEVEL <= 9
    assert TAIL == b"\x00\x00\xff\xff"


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        # what browsers and the websockets package send
        ("permessage-deflate; client_max_window_bits", ANSWER),
        ("permessage-deflate", ANSWER),
        ("PerMessage-Deflate; Client_No_Context_Takeover", ANSWER),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", ANSWER),
        ("permessage-deflate; client_max_window_bits=10", ANSWER),
        ("permessage-deflate; server_max_window_bits=12", ANSWER + "; server_max_window_bits=12"),
        ('permessage-deflate; server_max_window_bits="10"', ANSWER + "; server_max_window_bits=10"),
        ("permessage-deflate;server_max_window_bits = 15", ANSWER + "; server_max_window_bits=15"),
        ("permessage-deflate; server_max_window_bits=9", ANSWER + "; server_max_window_bits=9"),
        # other extensions first, several offers: the first acceptable one wins
        ("x-webkit-deflate-frame, permessage-deflate", ANSWER),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            ANSWER,
        ),
        (
            "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=11",
            ANSWER + "; server_max_window_bits=11",
        ),
        ("foo, , permessage-deflate", ANSWER),
    ],
)
def test_accepted_offers(header: str, answer: str) -> None:
    accepted = negotiate([header])
    assert accepted is not None
    assert accepted.response() == answer


@pytest.mark.parametrize(
    "header",
    [
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; bogus",  # unknown parameter
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",  # takes no value
        "permessage-deflate; client_no_context_takeover=yes",
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot: declined
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=0",
        # malformed headers: no extension at all
        "permessage-deflate;",
        "; server_no_context_takeover",
        'permessage-deflate; server_max_window_bits="10',
        "permessage deflate",
        "permessage-deflate; server_max_window_bits=1 0",
    ],
)
def test_declined_offers(header: str) -> None:
    assert negotiate([header]) is None


def test_compression_disabled_declines_everything() -> None:
    assert negotiate(["permessage-deflate"], enabled=False) is None
    assert negotiate([]) is None


def test_repeated_headers_are_one_list() -> None:
    accepted = negotiate(["foo; a=1", "permessage-deflate; server_max_window_bits=10"])
    assert accepted == Deflate(window_bits=10, limited=True)


def test_parse_offers_keeps_parameters_and_order() -> None:
    assert parse_offers(['A; x=1; y="two", b', "c"]) == [
        ("a", [("x", "1"), ("y", "two")]),
        ("b", []),
        ("c", []),
    ]
    assert parse_offers(['a; y="q\\"t"']) == [("a", [("y", 'q"t')])]


def test_default_configuration_answer() -> None:
    assert Deflate().response() == ANSWER
    assert Deflate().window_bits == MAX_WINDOW_BITS


# --- messages ---


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.integers(MIN_WINDOW_BITS, MAX_WINDOW_BITS))
def test_deflate_is_one_independent_message(data: bytes, bits: int) -> None:
    compressed = deflate(data, bits)
    assert not compressed.endswith(TAIL) or not data
    # any permessage-deflate receiver: raw inflate of the data plus the tail
    assert zlib.decompressobj(-bits).decompress(compressed + TAIL) == data
    assert inflate(compressed, len(data)) == data


def test_deflate_honours_the_window() -> None:
    # a repetition 2 KiB back: reachable by a 15-bit window, not by a 9-bit (512 B) one
    data = random.Random(1).randbytes(2048) * 4
    wide, narrow = deflate(data, 15), deflate(data, 9)
    assert inflate_with_window(narrow, 9) == data
    with pytest.raises(zlib.error, match="distance too far back"):
        inflate_with_window(wide, 9)
    assert inflate_with_window(wide, 15) == data
    assert len(wide) < len(narrow)


def inflate_with_window(data: bytes, bits: int) -> bytes:
    """Inflate as a receiver with a *bits* window does: in small steps, so that back
    references must come from the window (one big output buffer would hide them)."""
    inflater = zlib.decompressobj(-bits)
    out, rest = b"", data + TAIL
    while rest:
        out += inflater.decompress(rest, 64)
        rest = inflater.unconsumed_tail
    return out


def test_deflate_shrinks_json() -> None:
    payload = b'{"topic":"orders","totalLag":12,"partition":3},' * 400
    assert len(deflate(payload)) < len(payload) / 20


def test_inflate_refuses_bombs_and_garbage() -> None:
    bomb = deflate(b"\x00" * 1_000_000)
    assert len(bomb) < 2000
    with pytest.raises(OverflowError, match="beyond 65536"):
        inflate(bomb, 65536)
    assert inflate(deflate(b"x" * 65536), 65536) == b"x" * 65536  # exactly the limit is fine
    with pytest.raises(ValueError, match="invalid compressed data"):
        inflate(b"\xff\xff\xff\xff", 1000)
