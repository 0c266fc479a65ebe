"""Plain HTTP on the WebSocket port: read a request with h11, answer it, close.

The request head is parsed with h11 (bounded at ``MAX_HEAD_BYTES``); the raw bytes
read so far are kept so an upgrade request can be replayed to trio-websocket.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, urlsplit

import attrs
import h11
import orjson
import trio

__all__ = ["MAX_HEAD_BYTES", "HttpError", "Request", "read_body", "read_request", "response_bytes"]

#: A request head larger than this is refused.
MAX_HEAD_BYTES: Final = 16 * 1024


class HttpError(Exception):
    """The peer's HTTP request is unacceptable; answer *status* with *message*."""

    def __init__(self, status: int, message: str, *, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@attrs.frozen
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    raw: bytes  # every byte read from the socket so far (head and any body bytes)
    conn: h11.Connection

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def is_websocket(self) -> bool:
        upgrade = (self.header("upgrade") or "").lower()
        return self.method == "GET" and "websocket" in upgrade


async def read_request(stream: trio.abc.ReceiveStream) -> Request:
    """Read one request head; raise :class:`HttpError` (400/431) on a bad one, or
    ``trio.BrokenResourceError`` if the peer goes away first."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    raw = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = 431 if len(raw) > MAX_HEAD_BYTES else 400
            reason = "request head too large" if status == 431 else f"bad request: {exc}"
            raise HttpError(status, reason) from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(MAX_HEAD_BYTES)
            if not data:
                raise trio.BrokenResourceError("peer closed before sending a request")
            raw += data
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            # h11 bounds only a head still incomplete; one that arrived whole is measured here
            if len(raw) - len(conn.trailing_data[0]) > MAX_HEAD_BYTES:
                raise HttpError(431, "request head too large")
            break
        raise HttpError(400, "bad request")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = event.target.decode("latin-1")
    parts = urlsplit(target)
    return Request(
        method=event.method.decode("ascii", "replace"),
        target=target,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        raw=bytes(raw),
        conn=conn,
    )


async def read_body(stream: trio.abc.ReceiveStream, request: Request, limit: int) -> bytes:
    """The request body, at most *limit* bytes (413 beyond it)."""
    declared = request.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    conn = request.conn
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(400, f"bad request body: {exc}") from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(64 * 1024)
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


def response_bytes(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    headers: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete ``Connection: close`` response."""
    conn = h11.Connection(h11.SERVER)
    # h11 needs to have seen a request before it writes a response (HEAD: no body)
    method = b"HEAD" if head_only else b"GET"
    conn.receive_data(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    all_headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("Cache-Control", "no-store"),
        *(headers or []),
    ]
    out = conn.send(h11.Response(status_code=status, headers=all_headers)) or b""
    if body and not head_only:
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out


def json_error(status: int, code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"status": status, "code": code, "message": message}})
