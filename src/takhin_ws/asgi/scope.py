"""What the ASGI app reads from a connection scope: the route, the request, the peer.

An ASGI server hands the app a *scope* (a mapping: ``path``, ``root_path``,
``query_string``, ``headers``, ``client``...) instead of bytes. These helpers turn it
into the :class:`~takhin_ws.wire.http.Request` the sans-IO admission and routes take,
so both doors answer from the same code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs

from ..wire.http import Request

__all__ = [
    "Message",
    "Receive",
    "Scope",
    "Send",
    "client_address",
    "has_http_response_extension",
    "request_of",
    "route_path",
]

#: An ASGI connection scope and event messages (ASGI 3: plain mappings).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The ASGI extension that lets a WebSocket handshake be refused with an HTTP response.
HTTP_RESPONSE_EXTENSION: Final = "websocket.http.response"


def route_path(scope: Scope) -> str:
    """The path below where the app is mounted: ``scope["path"]`` less ``root_path``
    when it starts with it (Starlette's ``Mount`` and Hypercorn's dispatcher keep the
    whole path; others strip it themselves)."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path or "/"


def request_of(scope: Scope) -> Request:
    """The scope as the request the admission and the routes read (lower-case header
    names, repeated headers joined with ``", "``, the query string parsed, the path
    below the mount point). No bytes were read by us: ``raw`` is empty."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        key = bytes(name).decode("latin-1").lower()
        text = bytes(value).decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    path = route_path(scope)
    return Request(
        method=scope.get("method", "GET"),
        target=path + (f"?{query}" if query else ""),
        path=path,
        query=parse_qs(query, keep_blank_values=True),
        headers=headers,
        raw=b"",
        conn=None,
        http_version=scope.get("http_version", "1.1"),
    )


def client_address(scope: Scope) -> str:
    """``host:port`` of the peer as the ASGI server saw it (``[v6]:port``), or
    ``unknown`` (a server may leave ``client`` out)."""
    client = scope.get("client")
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def has_http_response_extension(scope: Scope) -> bool:
    """Whether the server can answer a refused handshake with an HTTP response."""
    return HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {})
