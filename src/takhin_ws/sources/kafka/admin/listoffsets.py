"""ListOffsets over the Kafka protocol itself: the end (or start) offset of every
partition, asked of its leader without librdkafka.

librdkafka answers a ListOffsets with a Python object per partition, built on its own
threads, and wants one per partition asked too: at 12,000 partitions that is ~120 ms
of CPU a tick. Here each leader gets one request for all the partitions it leads
(ListOffsets v1, a form every broker from Kafka 0.10.1 to 4.x reads) and its answer is
read with :meth:`struct.Struct.iter_unpack`, a run of fixed-size records per topic.
Only over a plaintext listener: TLS and SASL stay with librdkafka, and so does every
partition this path could not read (a broker it could not reach, an answer that did not
fit, an error in a partition's answer): the caller asks librdkafka for those.

:func:`encode_request` and :func:`decode_response` are the protocol (no I/O);
:class:`DirectOffsets` holds one blocking socket per broker, kept from tick to tick
(:mod:`.metadata` asks on them too).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from .framing import HEADER, I16, I32, Address, ProtocolError, connect, reason_of, receive, send

__all__ = [
    "EARLIEST",
    "LATEST",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "DirectOffsets",
    "decode_response",
    "encode_request",
]

#: The ListOffsets request, and the version of it spoken here.
API_KEY: Final = 2
VERSION: Final = 1
#: The timestamps that ask for a partition's log end and log start offsets.
LATEST: Final = -1
EARLIEST: Final = -2
#: The partition error that says it (or its topic) does not exist.
UNKNOWN_TOPIC_OR_PARTITION: Final = 3
#: Asked as a consumer would (not a follower replica).
_CONSUMER: Final = -1

#: One partition asked (v1): partition, timestamp.
_ASKED: Final = struct.Struct(">iq")
#: One partition answered (v1): partition, error code, timestamp, offset.
_ANSWERED: Final = struct.Struct(">ihqq")

#: An offset (or an error code) by (topic, partition).
Found = dict[tuple[str, int], int]


def encode_request(
    correlation: int, client_id: bytes, topics: Mapping[str, Sequence[int]], timestamp: int
) -> bytes:
    """A whole ListOffsets v1 request (size prefix included) asking *timestamp* of
    every partition of *topics*."""
    parts = [
        b"",
        HEADER.pack(API_KEY, VERSION, correlation, len(client_id)),
        client_id,
        I32.pack(_CONSUMER),
        I32.pack(len(topics)),
    ]
    pack = _ASKED.pack
    for name, ids in topics.items():
        raw = name.encode()
        parts += (I16.pack(len(raw)), raw, I32.pack(len(ids)))
        parts += [pack(partition, timestamp) for partition in ids]
    body = b"".join(parts)
    return I32.pack(len(body)) + body


def decode_response(body: bytes | bytearray, correlation: int) -> tuple[Found, Found]:
    """The offset of every partition a ListOffsets v1 answer (*body*: after its size
    prefix) gives one, and the error code of every other partition in it; raises
    :class:`ProtocolError` if it does not fit."""
    view = memoryview(body)
    out: Found = {}
    errors: Found = {}
    try:
        (answered,) = I32.unpack_from(view, 0)
        if answered != correlation:
            raise ProtocolError(f"answer to request {answered}, not to {correlation}")
        (topics,) = I32.unpack_from(view, 4)
        at = 8
        for _ in range(topics):
            (size,) = I16.unpack_from(view, at)
            name = bytes(view[at + 2 : at + 2 + size]).decode()
            (count,) = I32.unpack_from(view, at + 2 + size)
            at += 6 + size
            end = at + count * _ANSWERED.size
            if size < 0 or count < 0 or end > len(view):
                raise ProtocolError("an answer cut short")
            for partition, error, _timestamp, offset in _ANSWERED.iter_unpack(view[at:end]):
                if error:
                    errors[name, partition] = error
                else:
                    out[name, partition] = offset
            at = end
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"an answer that does not read: {exc}") from None
    if at != len(view):
        raise ProtocolError(f"{len(view) - at} bytes after the answer")
    return out, errors


class DirectOffsets:
    """ListOffsets v1 to each broker over a socket of its own (blocking, each step
    within the caller's deadline), kept open from one call to the next; one thread
    at a time (a request and its answer are not interleaved with another's)."""

    def __init__(self, client_id: str = "takhin-ws") -> None:
        self.client_id = client_id.encode()
        self._sockets: dict[Address, socket.socket] = {}
        self._correlation = 0

    def close(self) -> None:
        for address in list(self._sockets):
            self.drop(address)

    def read(
        self,
        asked: Mapping[Address, Mapping[str, Sequence[int]]],
        timestamp: int,
        deadline: float,
    ) -> tuple[Found, Found, dict[Address, str]]:
        """Ask each broker of *asked* for *timestamp* of the partitions it leads, all
        at once, then read the answers (by *deadline*, a :func:`time.monotonic` time).

        Returns the offsets by partition, the error codes of the partitions that
        answered one, and why each broker that gave no answer did not (its socket is
        closed: the next call connects again).
        """
        failed: dict[Address, str] = {}
        sent: list[tuple[Address, socket.socket, int]] = []
        for address, topics in asked.items():
            self._correlation = (self._correlation + 1) & 0x7FFFFFFF
            request = encode_request(self._correlation, self.client_id, topics, timestamp)
            try:
                sock = self._socket(address, deadline)
                send(sock, request, deadline)
            except OSError as exc:
                failed[address] = reason_of(exc)
                self.drop(address)
                continue
            sent.append((address, sock, self._correlation))
        out: Found = {}
        errors: Found = {}
        for address, sock, correlation in sent:
            try:
                found, wrong = decode_response(receive(sock, deadline), correlation)
            except (OSError, ProtocolError) as exc:
                failed[address] = reason_of(exc)
                self.drop(address)
                continue
            out.update(found)
            errors.update(wrong)
        return out, errors, failed

    def exchange(
        self, address: Address, encode: Callable[[int], bytes], deadline: float
    ) -> tuple[bytearray, int]:
        """One request to *address* on its socket (``encode(correlation id)`` gives the
        whole request), and its answer's body with that correlation id, by *deadline*.
        Another request's way to the brokers (:mod:`.metadata`): the caller reads the
        answer, and on any failure :meth:`drop` s the socket."""
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        request = encode(self._correlation)
        sock = self._socket(address, deadline)
        send(sock, request, deadline)
        return receive(sock, deadline), self._correlation

    def _socket(self, address: Address, deadline: float) -> socket.socket:
        sock = self._sockets.get(address)
        if sock is None:
            sock = connect(address, deadline)
            self._sockets[address] = sock
        return sock

    def drop(self, address: Address) -> None:
        """Close the socket to *address* (the next request connects again)."""
        sock = self._sockets.pop(address, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def forget(self, keep: Iterable[Address]) -> None:
        """Close the sockets of brokers not in *keep* (they left the cluster)."""
        for address in set(self._sockets) - set(keep):
            self.drop(address)
