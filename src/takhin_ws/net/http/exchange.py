"""One HTTP exchange on a connection: reading the request (head, then body) and writing
the answer; the I/O half of ``wire/http`` and ``net/http/routes``."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Final

import h11
import trio

from ...wire.http import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    body_parser,
    check_declared_length,
    head_error,
    head_parser,
    request_of,
    response_bytes,
)
from ...wire.http.chunked import ChunkedBody
from ...wire.http.fasthead import parse_upgrade_head

if TYPE_CHECKING:
    from .routes import Answer

__all__ = ["HeadReader", "read_body", "read_request", "send_answer"]

#: Most bytes one read of a request body asks for.
BODY_READ_BYTES: Final = 64 * 1024


class HeadReader:
    """One request head as its bytes arrive: :meth:`feed` what was read (a head that
    is already there whole is parsed without waiting), :meth:`read` the rest. A
    common upgrade head that arrives whole in the first read is parsed by
    :func:`~takhin_ws.wire.http.fasthead.parse_upgrade_head`, everything else by h11."""

    __slots__ = ("_conn", "_raw")

    def __init__(self) -> None:
        self._conn: h11.Connection | None = None  # made once the fast path declines
        self._raw = bytearray()

    def feed(self, data: bytes) -> Request | None:
        """Take *data*; the request once its head is whole, else ``None``. Raises
        :class:`HttpError` (400/431) on a bad head."""
        if self._conn is None and not self._raw:
            request = parse_upgrade_head(data)
            if request is not None:
                return request
        self._raw += data
        self._parser().receive_data(data)
        return self._next()

    def _parser(self) -> h11.Connection:
        if self._conn is None:
            self._conn = head_parser()
        return self._conn

    def _next(self) -> Request | None:
        conn = self._parser()
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise head_error(exc, len(self._raw)) from None
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Request):
            return request_of(event, bytes(self._raw), conn)
        raise HttpError(400, "bad request")

    async def read(self, stream: trio.abc.ReceiveStream) -> Request:
        """Read until the head is whole; raise :class:`HttpError` (400/431) on a bad
        one, or ``trio.BrokenResourceError`` if the peer goes away first."""
        request = self._next()
        while request is None:
            data = await stream.receive_some(MAX_HEAD_BYTES)
            if not data:
                raise trio.BrokenResourceError("peer closed before sending a request")
            request = self.feed(bytes(data))
        return request


async def read_request(stream: trio.abc.ReceiveStream) -> Request:
    """Read one request head; raise :class:`HttpError` (400/431) on a bad head, or
    ``trio.BrokenResourceError`` if the peer goes away first."""
    return await HeadReader().read(stream)


async def read_body(stream: trio.abc.ReceiveStream, request: Request, limit: int) -> bytes:
    """The request body, at most *limit* bytes (413 beyond it). A chunked body is
    decoded by :class:`~takhin_ws.wire.http.chunked.ChunkedBody` (linear in its bytes,
    whatever its chunk sizes), one with a length by h11."""
    check_declared_length(request, limit)
    conn = body_parser(request)
    if "chunked" in (request.header("transfer-encoding") or "").lower():
        chunked = ChunkedBody(limit)
        arrived = request.rest  # what came with the head
        while not chunked.feed(arrived):
            arrived = bytes(await stream.receive_some(BODY_READ_BYTES))
            if not arrived:
                raise HttpError(400, "request body ended early")
        return chunked.body
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(400, f"bad request body: {exc}") from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(BODY_READ_BYTES)
            if not data:
                raise HttpError(400, "request body ended early")
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise HttpError(413, f"body exceeds the limit of {limit} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            raise HttpError(400, "bad request body")


async def send_answer(
    transport: trio.abc.SendStream, answer: Answer, *, head: bool, write_timeout: float
) -> None:
    """Write *answer* as a whole ``Connection: close`` response within *write_timeout*
    (a peer gone is no error); a ``HEAD`` request gets no body."""
    response = response_bytes(
        answer.status,
        answer.body,
        content_type=answer.content_type,
        headers=list(answer.headers),
        head_only=head,
    )
    with trio.move_on_after(write_timeout):
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await transport.send_all(response)
