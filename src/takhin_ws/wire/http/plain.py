"""Plain HTTP on the WebSocket port, without I/O: requests, refusals, responses (sans-IO).

A request head is parsed with h11 (bounded at ``MAX_HEAD_BYTES``), once (the common
upgrade head by httptools instead: :mod:`takhin_ws.wire.http.fasthead`): an admitted
WebSocket upgrade is answered from it (:func:`switching_protocols`), and the bytes
read past the head are the client's first frames. Reading from a connection is
:mod:`takhin_ws.net.http.exchange`; answering is :func:`response_bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs, urlsplit

import attrs
import h11
import orjson
from wsproto.utilities import generate_accept_token

__all__ = [
    "MAX_HEAD_BYTES",
    "HttpError",
    "Request",
    "body_parser",
    "check_declared_length",
    "error_code",
    "head_error",
    "head_parser",
    "json_error",
    "make_request",
    "request_of",
    "response_bytes",
    "switching_protocols",
]

_KNOWN_STATUSES: Final = frozenset(s.value for s in HTTPStatus)

#: A request head larger than this is refused.
MAX_HEAD_BYTES: Final = 16 * 1024


class HttpError(Exception):
    """The peer's HTTP request is unacceptable; answer *status* with *message*."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        details: Mapping[str, object] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        #: more fields of the JSON error object, beside status, code and message
        self.details = details or {}


@attrs.frozen
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    raw: bytes  # every byte read from the socket so far (head and any body bytes)
    #: the h11 parser that read the head, to read a body with (``None``: the head was
    #: parsed by ``wire/http/fasthead``; :func:`body_parser` makes one when needed)
    conn: h11.Connection | None
    http_version: str = "1.1"
    #: bytes of the head in ``raw``; what follows it arrived with it (a body's start,
    #: an upgraded client's first frames)
    head_size: int = 0

    @property
    def rest(self) -> bytes:
        """The bytes read past the head."""
        return self.raw[self.head_size :]

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def is_websocket(self) -> bool:
        upgrade = (self.header("upgrade") or "").lower()
        return self.method == "GET" and "websocket" in upgrade


def head_parser() -> h11.Connection:
    """A fresh h11 server connection that refuses heads over ``MAX_HEAD_BYTES``."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)


def head_error(exc: h11.RemoteProtocolError, received: int) -> HttpError:
    """The refusal of a head h11 could not parse, *received* bytes into it."""
    if received > MAX_HEAD_BYTES:
        return HttpError(431, "request head too large")
    return HttpError(400, f"bad request: {exc}")


def request_of(event: h11.Request, raw: bytes, conn: h11.Connection) -> Request:
    """The :class:`Request` of a parsed head; raise 431 when it arrived whole but too
    large (h11 bounds only a head still incomplete)."""
    head_size = len(raw) - len(conn.trailing_data[0])
    if head_size > MAX_HEAD_BYTES:
        raise HttpError(431, "request head too large")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return make_request(
        event.method.decode("ascii", "replace"),
        event.target.decode("latin-1"),
        headers,
        raw,
        conn,
        event.http_version.decode("ascii", "replace"),
        head_size,
    )


def make_request(
    method: str,
    target: str,
    headers: dict[str, str],
    raw: bytes,
    conn: h11.Connection | None,
    http_version: str,
    head_size: int,
) -> Request:
    """A :class:`Request` with its target split into path and query (one place for
    both parsers)."""
    try:
        parts = urlsplit(target)
    except ValueError as exc:  # e.g. ``//[``: a host of an unclosed IPv6 bracket
        raise HttpError(400, f"bad request target: {exc}") from None
    return Request(
        method=method,
        target=target,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        raw=raw,
        conn=conn,
        http_version=http_version,
        head_size=head_size,
    )


def body_parser(request: Request) -> h11.Connection:
    """The h11 parser to read *request*'s body with: the one that read its head, or
    (a head parsed by ``wire/http/fasthead``) a fresh one given the bytes read so far."""
    if request.conn is not None:
        return request.conn
    conn = head_parser()
    conn.receive_data(request.raw)
    event = conn.next_event()
    assert isinstance(event, h11.Request), "the head parsed before"
    return conn


def check_declared_length(request: Request, limit: int) -> None:
    """413 up front when the declared ``Content-Length`` exceeds *limit*."""
    declared = request.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")


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
    reason = HTTPStatus(status).phrase if status in _KNOWN_STATUSES else ""
    response = h11.Response(status_code=status, headers=all_headers, reason=reason.encode())
    out = conn.send(response) or b""
    if body and not head_only:
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out


def switching_protocols(
    key: str, subprotocol: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    """The ``101 Switching Protocols`` answer to an admitted WebSocket upgrade whose
    ``Sec-WebSocket-Key`` is *key* (RFC 6455 4.2.2), selecting *subprotocol*, with
    *headers* besides (a ``Sec-WebSocket-Extensions`` answer). Built directly from the
    request already parsed: the head is not parsed a second time."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + generate_accept_token(key.strip().encode("ascii")),
    ]
    if subprotocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1"))
    lines.extend(name + b": " + value for name, value in headers or ())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def json_error(
    status: int, code: str, message: str, details: Mapping[str, object] | None = None
) -> bytes:
    """The JSON body of a refusal: ``{"error": {"status", "code", "message", ...}}``."""
    error = {"status": status, "code": code, "message": message, **(details or {})}
    return orjson.dumps({"error": error})


_ERROR_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    426: "upgrade_required",
    431: "head_too_large",
    503: "unavailable",
}


def error_code(status: int) -> str:
    """The ``error.code`` of a refusal with *status*."""
    return _ERROR_CODES.get(status, "error")
