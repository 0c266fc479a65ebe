"""Small TCP servers that are not quite Kafka brokers, for the compatibility tests.

:class:`FakeKafka` listens on a free loopback port, in a thread, and treats every
connection one way (``mode``):

- ``"close"``: reads the client's first request (ApiVersions) and closes: what the
  Takhin broker does to librdkafka, and a TLS listener to a plaintext client;
- ``"protocol"``: answers ApiVersions with a body that is cut short;
- ``"lacking"``: a broker that speaks ApiVersions (v0) and Metadata (v1) and nothing
  else: its metadata lists itself and no topic, and it does not offer ListGroups.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

#: Kafka API keys the fake knows.
METADATA, API_VERSIONS = 3, 18
#: UNSUPPORTED_VERSION: asked a version it does not offer.
UNSUPPORTED_VERSION = 35


def read_request_head(data: bytes) -> tuple[int, int, int, str, int]:
    """A whole request (size prefix included) read as a broker reads its header v1,
    field by field: api key, version, correlation id, client id, and where the body
    starts."""
    (size,) = struct.unpack_from(">i", data, 0)
    assert size == len(data) - 4
    key, version, correlation, client_size = struct.unpack_from(">hhih", data, 4)
    at = 14
    client = data[at : at + client_size].decode()
    return key, version, correlation, client, at + client_size


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def reason_of_mode(mode: str, lacking: str) -> str:
    """What a reader of the fake in *mode* says went wrong (part of its reason);
    *lacking*: what a ``"lacking"`` one says it lacks (``"no version 4-5 of API 16"``)."""
    return {
        "close": "the broker closed the connection",
        "protocol": "does not read",
    }.get(mode, lacking)


class FakeKafka:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FakeKafka:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while (request := self._read(conn)) is not None:
                    key, version, correlation = struct.unpack_from(">hhi", request)
                    answer = self._answer(key, version)
                    if answer is None:
                        return
                    body = struct.pack(">i", correlation) + answer
                    conn.sendall(struct.pack(">i", len(body)) + body)
            except OSError:
                return

    def _read(self, conn: socket.socket) -> bytes | None:
        head = conn.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return None
        (size,) = struct.unpack(">i", head)
        body = conn.recv(size, socket.MSG_WAITALL)
        return body if len(body) == size else None

    def _answer(self, key: int, version: int) -> bytes | None:
        if self.mode == "close":
            return None
        if self.mode == "protocol":
            return b"\x00"  # an ApiVersions answer cut short
        if key == API_VERSIONS:
            if version > 0:  # the v0 form says which versions it has
                return struct.pack(">hi", UNSUPPORTED_VERSION, 1) + struct.pack(
                    ">hhh", API_VERSIONS, 0, 0
                )
            apis = [(API_VERSIONS, 0, 0), (METADATA, 1, 1)]
            return struct.pack(">hi", 0, len(apis)) + b"".join(
                struct.pack(">hhh", *api) for api in apis
            )
        if key == METADATA:
            broker = struct.pack(">i", 1) + _string("127.0.0.1") + struct.pack(">ih", self.port, -1)
            return struct.pack(">i", 1) + broker + struct.pack(">ii", 1, 0)  # no topics
        return None
