"""The plain-HTTP routes behind ASGI: the same :class:`~takhin_ws.net.http.routes.Routes` as
the standalone server, answered with ``http.response.*`` messages.

A publish's body is read from ``http.request`` messages, bounded by
``max_body_size`` (413) and ``body_timeout`` (408). Mounted under a prefix
(``root_path``), the dashboard page is redirected once to itself with
``?ws=<the WebSocket URL under the prefix>``: the page (the same file as on the
standalone server) connects to ``/api/monitoring/ws`` at the host's root otherwise.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlencode

import trio

from ..net.http.routes import DASHBOARD_PATHS, WS_PATH, Answer, refusal
from ..wire.http import HttpError, Request, check_declared_length
from .scope import Receive, Scope, Send, request_of
from .state import AppState

__all__ = ["serve_http"]

#: The dashboard page's parameter naming the WebSocket URL it connects to.
WS_PARAM: Final = "ws"
_WEBSOCKET_SCHEMES: Final = {"https": "wss", "http": "ws"}


async def serve_http(state: AppState, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one HTTP request scope."""
    request = request_of(scope)
    try:
        answer = await _answer(state, scope, request, receive)
    except HttpError as exc:
        state.count_rejected(exc)
        answer = refusal(exc)
    await _send_answer(send, answer, head=request.method == "HEAD")


async def _answer(state: AppState, scope: Scope, request: Request, receive: Receive) -> Answer:
    routes = state.routes
    state.hosts.check(request)
    if request.path == "/healthz" and request.method in ("GET", "HEAD"):
        return routes.answer(request)  # alive, running or not
    state.running_services()  # 503 with what to do, while not running
    if routes.is_publish(request):
        publisher = routes.check_publish(request)
        settings = state.settings
        body: bytes | None = None
        with trio.move_on_after(settings.body_timeout):
            body = await _read_body(request, receive, settings.max_body_size)
        if body is None:
            raise HttpError(
                408, f"the request body did not arrive within {settings.body_timeout:g} s"
            )
        return await routes.publish(body, publisher)
    redirect = _dashboard_redirect(scope, request)
    return redirect or routes.answer(request)


async def _read_body(request: Request, receive: Receive, limit: int) -> bytes:
    check_declared_length(request, limit)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "request body ended early")
        body += message.get("body", b"")
        if len(body) > limit:
            raise HttpError(413, f"body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def _dashboard_redirect(scope: Scope, request: Request) -> Answer | None:
    """Under a prefix, the page without ``?ws=``: a redirect to it with the URL of
    this app's WebSocket endpoint (the page itself is not rewritten)."""
    root: str = scope.get("root_path") or ""
    if not root or request.path not in DASHBOARD_PATHS or request.param(WS_PARAM) is not None:
        return None
    host = request.header("host")
    if host is None:
        return None
    scheme = _WEBSOCKET_SCHEMES.get(scope.get("scheme", "http"), "ws")
    params = [(k, v) for k, values in request.query.items() for v in values]
    params.append((WS_PARAM, f"{scheme}://{host}{root}{WS_PATH}"))
    location = f"{root}{request.path}?{urlencode(params)}"
    return Answer(307, b"", headers=(("Location", location),))


async def _send_answer(send: Send, answer: Answer, *, head: bool) -> None:
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})
