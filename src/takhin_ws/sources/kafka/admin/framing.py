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

import socket
import struct
import time
from typing import Final

__all__ = [
    "HEADER",
    "I8",
    "I16",
    "I32",
    "MAX_ANSWER",
    "Address",
    "ProtocolError",
    "connect",
    "reason_of",
    "receive",
    "remaining",
    "send",
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
