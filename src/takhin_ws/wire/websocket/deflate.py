"""permessage-deflate (RFC 7692): the handshake's negotiation and compress-once (sans-IO).

The server always answers ``server_no_context_takeover``: every message it sends is
compressed from an empty window, so one compressed frame is valid for every client
that negotiated the same window size, and no connection keeps a compressor. It also
always answers ``client_no_context_takeover`` (RFC 7692 section 7.1.1.2 lets a server
add it to any offer): a client must then compress each message on its own, so the
server inflates each inbound message with a fresh, short-lived decompressor and keeps
no inflate state per connection either.

``server_max_window_bits=N`` in an offer is honoured by compressing that client's
frames with an N-bit window: one compressed variant per window size, each built once
per publish and only if some client uses it (browsers never ask, so there is one).
zlib cannot produce raw deflate with an 8-bit window, so an offer that demands
``server_max_window_bits=8`` is declined (the client may offer something else).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Final

from attrs import frozen

__all__ = [
    "DEFLATE_LEVEL",
    "EXTENSION",
    "MAX_WINDOW_BITS",
    "MIN_WINDOW_BITS",
    "Deflate",
    "deflate",
    "inflate",
    "negotiate",
    "parse_offers",
]

EXTENSION: Final = "permessage-deflate"
#: zlib's largest window (32 KiB), the default of RFC 7692.
MAX_WINDOW_BITS: Final = 15
#: The smallest window RFC 7692 allows is 8; zlib's raw deflate starts at 9.
MIN_WINDOW_BITS: Final = 9
RFC_MIN_WINDOW_BITS: Final = 8
#: zlib level: on a 1.3 MiB snapshot 5 is within 1 % of the size of 6 (zlib's default)
#: at about 60 % of its time; it runs once per publish, not per client.
DEFLATE_LEVEL: Final = 5
#: What ``Z_SYNC_FLUSH`` ends a block with; RFC 7692 section 7.2.1 removes it on the wire.
TAIL: Final = b"\x00\x00\xff\xff"

_SERVER_NO_TAKEOVER: Final = "server_no_context_takeover"
_CLIENT_NO_TAKEOVER: Final = "client_no_context_takeover"
_SERVER_BITS: Final = "server_max_window_bits"
_CLIENT_BITS: Final = "client_max_window_bits"
_PARAMS: Final = frozenset({_SERVER_NO_TAKEOVER, _CLIENT_NO_TAKEOVER, _SERVER_BITS, _CLIENT_BITS})

# RFC 7230 token and quoted-string, as RFC 6455 section 9.1 uses them.
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
_PARAM_RE: Final = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED})\s*)?$")
_SPLIT_RE: Final = re.compile(rf"((?:{_QUOTED}|[^,;\"])*)([,;]|$)")
_BITS_RE: Final = re.compile(r"[1-9][0-9]?")


@frozen
class Deflate:
    """The accepted permessage-deflate configuration of one connection."""

    #: The window the server compresses this client's messages with.
    window_bits: int = MAX_WINDOW_BITS
    #: The offer named ``server_max_window_bits``: the answer must repeat it.
    limited: bool = False

    def response(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the handshake answer."""
        parts = [EXTENSION, _SERVER_NO_TAKEOVER, _CLIENT_NO_TAKEOVER]
        if self.limited:
            parts.append(f"{_SERVER_BITS}={self.window_bits}")
        return "; ".join(parts)


def parse_offers(values: Iterable[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Split ``Sec-WebSocket-Extensions`` header values into ``(name, params)`` offers.

    Raise ``ValueError`` if the header does not follow RFC 6455's grammar (the
    handshake then has no usable extension at all).
    """
    offers: list[tuple[str, list[tuple[str, str | None]]]] = []
    current: list[str] = []
    for value in values:
        for item, sep in _split(value):
            current.append(item)
            if sep != ";":
                offers.append(_offer(current))
                current = []
    return [offer for offer in offers if offer[0]]


def _split(value: str) -> list[tuple[str, str]]:
    pieces: list[tuple[str, str]] = []
    pos = 0
    while pos <= len(value):
        match = _SPLIT_RE.match(value, pos)
        if match is None:  # an unterminated quoted-string
            raise ValueError(f"malformed extension header: {value!r}")
        item, sep = match.groups()
        pieces.append((item, sep))
        if not sep:
            break
        pos = match.end()
    return pieces


def _offer(items: list[str]) -> tuple[str, list[tuple[str, str | None]]]:
    name, *params = (item.strip() for item in items)
    if not name:
        if params:  # "; x" with no extension name before it
            raise ValueError("malformed extension header: a parameter without an extension")
        return "", []  # an empty list element ("a, , b"), which RFC 7230 allows
    if not re.fullmatch(_TOKEN, name):
        raise ValueError(f"malformed extension name: {name!r}")
    parsed: list[tuple[str, str | None]] = []
    for param in params:
        match = _PARAM_RE.match(param)
        if match is None:
            raise ValueError(f"malformed extension parameter: {param!r}")
        key, raw = match.groups()
        if raw is not None and raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        parsed.append((key.lower(), raw))
    return name.lower(), parsed


def negotiate(values: Iterable[str], *, enabled: bool = True) -> Deflate | None:
    """The configuration to accept for these ``Sec-WebSocket-Extensions`` values, or
    ``None`` (no compression: nothing offered, compression disabled, or no offer
    acceptable). Offers are tried in the client's order of preference."""
    if not enabled:
        return None
    try:
        offers = parse_offers(values)
    except ValueError:
        return None  # a malformed header: decline every extension, keep the connection
    for name, params in offers:
        if name == EXTENSION:
            accepted = _accept(params)
            if accepted is not None:
                return accepted
    return None


def _accept(params: list[tuple[str, str | None]]) -> Deflate | None:
    """RFC 7692 section 7.1: decline an offer with an unknown, repeated or invalid
    parameter, or one this server cannot honour."""
    seen: dict[str, str | None] = {}
    for key, value in params:
        if key not in _PARAMS or key in seen:
            return None
        seen[key] = value
    for flag in (_SERVER_NO_TAKEOVER, _CLIENT_NO_TAKEOVER):
        if flag in seen and seen[flag] is not None:
            return None
    if seen.get(_CLIENT_BITS) is not None and _bits(seen[_CLIENT_BITS]) is None:
        return None
    if _SERVER_BITS not in seen:
        return Deflate()
    bits = _bits(seen[_SERVER_BITS])
    if bits is None or bits < MIN_WINDOW_BITS:
        return None
    return Deflate(window_bits=bits, limited=True)


def _bits(value: str | None) -> int | None:
    if value is None or not _BITS_RE.fullmatch(value):
        return None
    bits = int(value)
    return bits if RFC_MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS else None


def deflate(payload: bytes, window_bits: int = MAX_WINDOW_BITS) -> bytes:
    """*payload* compressed as one permessage-deflate message from an empty window
    (raw deflate, flushed, the final ``00 00 ff ff`` removed)."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[: -len(TAIL)] if data.endswith(TAIL) else data


def inflate(data: bytes, max_size: int) -> bytes:
    """Inflate one permessage-deflate message; raise ``ValueError`` if it is not valid
    deflate data, or if it inflates beyond *max_size* bytes (a compression bomb)."""
    inflater = zlib.decompressobj(-MAX_WINDOW_BITS)
    try:
        out = inflater.decompress(data + TAIL, max_size + 1)
    except zlib.error as exc:
        raise ValueError(f"invalid compressed data: {exc}") from None
    if len(out) > max_size:
        raise OverflowError(f"message inflates beyond {max_size} bytes")
    return out
