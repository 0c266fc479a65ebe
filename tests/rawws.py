"""A raw WebSocket client for crafted frames: every byte it sends is chosen by the test.

Unlike the wsproto-driven ``clients.RawClient``, it builds frames by hand (so it can
break every rule: reserved bits and opcodes, lengths in too many bytes, bad UTF-8,
fragmented control frames), sends them whole, chopped or right behind the upgrade
request, and reads the server's frames as they are (inflating compressed ones).
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
import trio

from clients import WAIT, open_raw_stream
from takhin_ws import WS_PATH

TEXT: Final = 0x1
BINARY: Final = 0x2
CONTINUATION: Final = 0x0
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
RSV1: Final = 0x40
#: What RFC 7692 7.2.1 removes from the end of every compressed message.
TAIL: Final = b"\x00\x00\xff\xff"


def mask(data: bytes, key: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    stream = (key * (size // 4 + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(size, "little")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length_bytes: int | None = None,
) -> bytes:
    """One client frame. *length_bytes* (0, 2 or 8) forces how the length is written
    (RFC 6455 wants the fewest); *rsv* is ORed into the first byte as it is."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 1 << 16 else 8
    bit = 0x80 if masked else 0
    if length_bytes == 0:
        head = bytes((first, bit | size))
    elif length_bytes == 2:
        head = struct.pack("!BBH", first, bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, bit | 127, size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + mask(payload, key)


def text(message: str | bytes, **kwargs: Any) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return frame(TEXT, data, **kwargs)


def close(code: int | None = None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload)


def deflate(data: bytes, window_bits: int = 15) -> bytes:
    """*data* as one permessage-deflate message (a fresh compressor: no context takeover)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[: -len(TAIL)]


def ping_message(size: int) -> bytes:
    """A JSON ``ping`` of exactly *size* bytes (at least 15): padded with whitespace."""
    base = b'{"type":"ping"}'
    assert size >= len(base)
    pad = size - len(base)
    return base[:-1] + b" \t\n\r" * (pad // 4) + b" " * (pad % 4) + b"}"


class Frame:
    """One server frame (its payload inflated if it came compressed)."""

    def __init__(self, first: int, payload: bytes) -> None:
        self.fin = bool(first & 0x80)
        self.opcode = first & 0x0F
        self.payload = payload

    def json(self) -> dict[str, Any]:
        value = orjson.loads(self.payload)
        assert isinstance(value, dict)
        return value

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE, f"not a Close frame: opcode {self.opcode:#x}"
        if len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    def __repr__(self) -> str:
        return f"Frame(opcode={self.opcode:#x}, payload={self.payload[:60]!r})"


class RawWs:
    """An open connection: :meth:`send` bytes, read the server's frames."""

    def __init__(self, stream: trio.SocketStream, head: bytes, rest: bytes) -> None:
        self.stream = stream
        self.head = head  # the server's handshake answer
        self.buffer = rest
        self.eof = False

    @property
    def window_bits(self) -> int | None:
        """The window of the server's compressed frames, or None without deflate."""
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                for part in value.split(";"):
                    key, _, bits = part.strip().partition("=")
                    if key == "server_max_window_bits":
                        return int(bits.strip('"'))
                return 15
        return None

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_chopped(self, data: bytes, size: int, delay: float = 0.0) -> None:
        """*data* in pieces of *size* bytes (each its own ``send``)."""
        for start in range(0, len(data), size):
            await self.stream.send_all(data[start : start + size])
            if delay:
                await trio.sleep(delay)

    async def _more(self) -> bool:
        try:
            data = await self.stream.receive_some(1 << 16)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.eof = True
        self.buffer += data
        return bool(data)

    def _parse(self) -> Frame | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        first, length, start = buf[0], buf[1] & 0x7F, 2
        assert not buf[1] & 0x80, "server frames are never masked"
        if length == 126:
            if len(buf) < 4:
                return None
            (length,), start = struct.unpack_from("!H", buf, 2), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,), start = struct.unpack_from("!Q", buf, 2), 10
        if len(buf) < start + length:
            return None
        payload, self.buffer = buf[start : start + length], buf[start + length :]
        if first & RSV1:
            bits = self.window_bits
            assert bits is not None, "a compressed frame without permessage-deflate"
            payload = zlib.decompressobj(-bits).decompress(payload + TAIL)
        return Frame(first, payload)

    async def frame(self, *, timeout: float = WAIT) -> Frame | None:
        """The next frame (the server's pings skipped); None at EOF."""
        with trio.fail_after(timeout):
            while True:
                parsed = self._parse()
                if parsed is not None:
                    if parsed.opcode == PING:
                        continue
                    return parsed
                if self.eof or not await self._more():
                    return None

    async def message(self, *, timeout: float = WAIT) -> dict[str, Any]:
        """The next data message, parsed (fails on a Close frame or EOF)."""
        got = await self.frame(timeout=timeout)
        assert got is not None, "a message was due, the connection ended"
        assert got.opcode == TEXT, f"a message was due, got {got!r}"
        return got.json()

    async def until_eof(self, *, timeout: float = 3 * WAIT) -> list[Frame]:
        """Every frame until the server ends the connection."""
        frames = []
        with trio.fail_after(timeout):
            while (got := await self.frame(timeout=timeout)) is not None:
                frames.append(got)
        return frames


def upgrade_request(port: int, query: str = "", headers: tuple[str, ...] = ()) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {WS_PATH}{query} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@asynccontextmanager
async def connect(
    port: int, query: str = "?channels=", *headers: str, first: bytes = b""
) -> AsyncIterator[RawWs]:
    """Upgrade (sending *first* right behind the request, in the same write), read the
    server's answer head; yield the connection. Fails unless the answer is a 101."""
    stream = await open_raw_stream(port)
    async with stream:
        await stream.send_all(upgrade_request(port, query, headers) + first)
        response = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in response:
                data = await stream.receive_some(1 << 16)
                assert data, f"connection closed during the handshake: {response!r}"
                response += data
        head, rest = response.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), response[:200]
        yield RawWs(stream, head, rest)
