"""A chunked request body (RFC 9112 section 7.1), decoded as its bytes arrive (sans-IO).

h11 decodes chunked bodies too, but at ~5 us of Python per chunk: a 1 MiB body sent
as a million one-byte chunks costs it seconds of CPU. :class:`ChunkedBody` walks each
piece it is fed in one loop (a compiled pattern for the size line, slices for the
data), at a fraction of that per chunk, and keeps nothing between pieces but an
unfinished size line or chunk end (a few bytes): its cost is linear in the bytes
received, whatever the chunk sizes. Bodies are bounded (413 beyond *limit*), size
lines and trailers too (400).
"""

from __future__ import annotations

import re
from typing import Final

from .plain import HttpError

__all__ = ["MAX_CHUNK_LINE", "MAX_TRAILER", "ChunkedBody"]

#: Longest chunk-size line (size and extensions) accepted.
MAX_CHUNK_LINE: Final = 4096
#: Most bytes of trailer fields accepted after the last chunk.
MAX_TRAILER: Final = 16 * 1024

# chunk-size [ chunk-ext ] CRLF; the size is at most 16 hex digits (64 bits)
_SIZE_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")
_CRLF: Final = b"\r\n"


# where a body stands
_SIZE: Final = 0  # at a chunk-size line
_DATA: Final = 1  # inside a chunk's data
_DATA_END: Final = 2  # at the CRLF after a chunk's data
_TRAILER: Final = 3  # after the last chunk: trailer fields, then an empty line
_DONE: Final = 4


class ChunkedBody:
    """The body of one chunked request: :meth:`feed` it what arrives until it returns
    ``True``, then read :attr:`body`. Raises :class:`~takhin_ws.wire.http.HttpError`:
    413 once the data exceeds *limit* bytes, 400 for anything malformed."""

    __slots__ = ("_body", "_left", "_limit", "_pending", "_state", "_trailer")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._body = bytearray()
        self._state = _SIZE
        self._pending = b""  # an unfinished size line, chunk end or trailer line
        self._left = 0  # data bytes of the current chunk still to come
        self._trailer = 0  # trailer bytes so far

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the body; ``True`` once the last chunk and the
        trailer have arrived (bytes after that are not the body's, and ignored)."""
        if self._state == _DONE:
            return True
        buf = self._pending + data if self._pending else data
        self._pending = b""
        view = memoryview(buf)
        body = self._body
        pos, end = 0, len(buf)
        match = _SIZE_LINE.match
        while pos < end:
            state = self._state
            if state == _SIZE:  # the common case: whole chunks, one after another
                room = self._limit - len(body)
                while True:
                    found = match(buf, pos)
                    if found is None:
                        self._bad_size_line(buf, pos)
                        self._pending = buf[pos:]  # a size line not whole yet
                        return False
                    start = found.end()
                    size = int(found.group(1), 16)
                    if size > room:
                        raise HttpError(413, f"body exceeds the limit of {self._limit} bytes")
                    stop = start + size
                    if not size or stop + 2 > end:
                        break  # the last chunk, or one that goes on in the next piece
                    if buf[stop : stop + 2] != _CRLF:
                        raise _too_long()
                    body += view[start:stop]
                    room -= size
                    pos = stop + 2
                    if pos == end:
                        return False
                if size:
                    self._state, self._left, pos = _DATA, size, start
                else:
                    self._state, pos = _TRAILER, start
            elif state == _DATA:
                take = min(self._left, end - pos)
                body += view[pos : pos + take]
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                tail = buf[pos : pos + 2]
                if tail != _CRLF:
                    if len(tail) == 1 and tail == _CRLF[:1]:
                        self._pending = tail  # the LF is still to come
                        return False
                    raise _too_long()
                self._state = _SIZE
                pos += 2
            else:
                return self._trailers(buf, pos)
        return False

    def _bad_size_line(self, buf: bytes, pos: int) -> None:
        """Refuse a size line that is whole but malformed, or too long to be one."""
        line_end = buf.find(b"\n", pos, pos + MAX_CHUNK_LINE + 1)
        if line_end >= 0:
            line = buf[pos:line_end].decode("latin-1").strip()
            raise HttpError(400, f"bad request body: bad chunk size line {line[:40]!r}")
        if len(buf) - pos > MAX_CHUNK_LINE:
            raise HttpError(400, f"bad request body: chunk size line over {MAX_CHUNK_LINE} bytes")

    def _trailers(self, buf: bytes, pos: int) -> bool:
        """Skip trailer fields up to the empty line that ends the message."""
        while True:
            line_end = buf.find(_CRLF, pos)
            if line_end < 0:
                if self._trailer + len(buf) - pos > MAX_TRAILER:
                    raise _long_trailer()
                self._pending = buf[pos:]
                return False
            if line_end == pos:
                self._state = _DONE
                return True
            self._trailer += line_end + 2 - pos
            if self._trailer > MAX_TRAILER:
                raise _long_trailer()
            pos = line_end + 2


def _too_long() -> HttpError:
    return HttpError(400, "bad request body: a chunk is longer than its size says")


def _long_trailer() -> HttpError:
    return HttpError(400, f"bad request body: trailer over {MAX_TRAILER} bytes")
