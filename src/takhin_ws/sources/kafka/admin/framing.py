"""The Kafka protocol's framing, shared by the requests sent without librdkafka
(:mod:`.listoffsets`, :mod:`.metadata`, :mod:`.groupwire` and :mod:`.groupoffsets`).

A request is its size (a big-endian int32), then a header (v1: api key, version,
correlation id, client id; the flexible versions add an empty tagged-field section),
then its body; an answer is its size, then the correlation id and the body. Here: the
fixed-size fields, :class:`ProtocolError` (the one error every direct request raises
for an answer that does not read), and the blocking socket's three steps (connect,
send a request, receive one answer), each by a :func:`time.monotonic` deadline.
"""

from __future__ import annotations

import functools
import socket
import struct
import time
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

__all__ = [
    "HEADER",
    "I8",
    "I16",
    "I32",
    "MAX_ANSWER",
    "Address",
    "ProtocolError",
    "begin_answer",
    "compact",
    "connect",
    "end_answer",
    "read_name",
    "read_string",
    "read_uvarint",
    "reading",
    "reason_of",
    "receive",
    "remaining",
    "request",
    "send",
    "skip_tags",
    "uvarint",
]

#: The largest answer read (bytes): 12,000 partitions' offsets take ~300 KB.
MAX_ANSWER: Final = 64 * 1024 * 1024
#: The smallest: a correlation id.
_MIN_ANSWER: Final = 4

I8: Final = struct.Struct(">b")
I16: Final = struct.Struct(">h")
I32: Final = struct.Struct(">i")
#: Request header v1 (and v2 before its tagged fields): api key, version, correlation
#: id, then the client id's length.
HEADER: Final = struct.Struct(">hhih")

#: A broker's (host, port).
Address = tuple[str, int]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ProtocolError(Exception):
    """An answer that is not an answer to the request sent (cut short, of an impossible
    size, to another request, or with bytes left after it)."""


def remaining(deadline: float) -> float:
    """Seconds left until *deadline*; :class:`TimeoutError` once it passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return left


def reason_of(exc: BaseException) -> str:
    """What a failed exchange says of itself (its type when it says nothing)."""
    return str(exc) or type(exc).__name__


def connect(address: Address, deadline: float) -> socket.socket:
    """A blocking connection to *address* (made by *deadline*), without Nagle's delay:
    a request is one write and waits for its answer."""
    sock = socket.create_connection(address, timeout=remaining(deadline))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send(sock: socket.socket, request: bytes, deadline: float) -> None:
    """Write the whole *request* by *deadline*."""
    sock.settimeout(remaining(deadline))
    sock.sendall(request)


def receive(sock: socket.socket, deadline: float) -> bytearray:
    """One answer's body (after its size prefix), read by *deadline*."""
    (size,) = I32.unpack(_exactly(sock, I32.size, deadline))
    if not _MIN_ANSWER <= size <= MAX_ANSWER:
        raise ProtocolError(f"an answer of {size} bytes")
    return _exactly(sock, size, deadline)


def _exactly(sock: socket.socket, size: int, deadline: float) -> bytearray:
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        sock.settimeout(remaining(deadline))
        read = sock.recv_into(view[got:])
        if not read:
            raise ConnectionError("the broker closed the connection")
        got += read
    return data


# --- the flexible versions' encodings: compact strings and arrays, tagged fields ---


def uvarint(value: int) -> bytes:
    """An unsigned varint (a compact length or count: its value + 1, 0 for null)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def compact(text: str) -> bytes:
    """A compact string."""
    raw = text.encode()
    return uvarint(len(raw) + 1) + raw


def request(
    api: int,
    version: int,
    correlation: int,
    client_id: bytes,
    body: bytes,
    *,
    flexible: bool = True,
) -> bytes:
    """A whole request, size prefix included: header v2 for a flexible version (v1, then
    tagged fields: none), else v1."""
    head = HEADER.pack(api, version, correlation, len(client_id)) + client_id
    if flexible:
        head += b"\x00"
    return I32.pack(len(head) + len(body)) + head + body


def read_uvarint(view: memoryview, at: int) -> tuple[int, int]:
    """An unsigned varint at *at*, and where what follows it starts."""
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 28:
            raise ProtocolError("a varint longer than 5 bytes")


def read_string(view: memoryview, at: int) -> tuple[str | None, int]:
    """A compact (nullable) string."""
    size, at = read_uvarint(view, at)
    if size == 0:
        return None, at
    end = at + size - 1
    if end > len(view):
        raise ProtocolError("an answer cut short")
    return bytes(view[at:end]).decode(), end


def read_name(view: memoryview, at: int) -> tuple[str, int]:
    """A compact string that is not null (read in place when it is short)."""
    size = view[at]
    if 0 < size < 0x80:  # (most names: shorter than 127 bytes)
        end = at + size
        if end > len(view):
            raise ProtocolError("an answer cut short")
        return str(view[at + 1 : end], "utf-8"), end
    name, at = read_string(view, at)
    if name is None:
        raise ProtocolError("a null name")
    return name, at


def skip_tags(view: memoryview, at: int) -> int:
    """Where the tagged fields at *at* end (each skipped)."""
    count, at = read_uvarint(view, at)
    for _ in range(count):
        _tag, at = read_uvarint(view, at)
        size, at = read_uvarint(view, at)
        at += size
    return at


def begin_answer(
    body: bytes | bytearray, correlation: int, flexible: bool
) -> tuple[memoryview, int]:
    """The answer's view and where its body starts (after the response header)."""
    view = memoryview(body)
    (answered,) = I32.unpack_from(view, 0)
    if answered != correlation:
        raise ProtocolError(f"answer to request {answered}, not to {correlation}")
    return view, skip_tags(view, 4) if flexible else 4


def end_answer(view: memoryview, at: int) -> None:
    """Raise unless the answer ends at *at*."""
    if at != len(view):
        raise ProtocolError(f"{len(view) - at} bytes after the answer")


def reading(decode: Callable[_P, _T]) -> Callable[_P, _T]:
    """*decode*, its cut-short or garbled answer raising :class:`ProtocolError`."""

    @functools.wraps(decode)
    def read(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return decode(*args, **kwargs)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"an answer that does not read: {exc}") from None

    return read
