"""Plain HTTP on the WebSocket port, without I/O: request heads (h11, and httptools for
the common upgrade head), refusals and responses, and chunked request bodies.

The names of :mod:`.plain` are re-exported here, so ``takhin_ws.wire.http`` is where the
rest of the package takes them from.

Internal: import from ``takhin_ws`` and its public tiers."""

from .plain import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    body_parser,
    check_declared_length,
    error_code,
    head_error,
    head_parser,
    json_error,
    make_request,
    request_of,
    response_bytes,
    switching_protocols,
)

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
