"""Server frames read back: the runs of unmasked frames the transport or the outbound
buffer wrote, parsed into ``(opcode, payload)`` (shared by their tests)."""

from __future__ import annotations

import struct


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse unmasked frames: (opcode, payload) each; the bytes must end on a frame."""
    out = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert first & 0x80, "every frame is final"
        assert not second & 0x80, "server frames are not masked"
        length = second & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        out.append((first & 0x0F, data[pos : pos + length]))
        pos += length
    assert pos == len(data), "the stream ended inside a frame"
    return out


def payloads(data: bytes) -> list[bytes]:
    return [payload for _, payload in frames(data)]
