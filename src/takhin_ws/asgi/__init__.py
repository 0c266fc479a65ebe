"""takhin-ws as an ASGI application, for a Trio web app served by Hypercorn's Trio worker.

``create_app(settings=None, *, source=None, authorize=None)`` returns a
:class:`TakhinApp`: an ASGI 3 application serving the WebSocket endpoint and the HTTP
routes of the standalone server, whole or mounted under a prefix (Starlette's
``Mount``, Hypercorn's ``TrioDispatcherMiddleware`` beside a Quart-Trio app). See
``docs/embedding.md`` for running it, mounting it and the trade-offs against the
standalone listener.
"""

from __future__ import annotations

from ..config.settings import Settings
from ..core.metrics.snapshot import MetricsSource
from .app import TakhinApp
from .auth import Access, Authorize, Refusal
from .scope import Message, Receive, Scope, Send

__all__ = [
    "Access",
    "Authorize",
    "Message",
    "Receive",
    "Refusal",
    "Scope",
    "Send",
    "TakhinApp",
    "create_app",
]


def create_app(
    settings: Settings | None = None,
    *,
    source: MetricsSource | None = None,
    authorize: Authorize | None = None,
) -> TakhinApp:
    """takhin-ws as an ASGI 3 application.

    *settings* and *source* as for :func:`takhin_ws.open_server` (``host`` and
    ``port`` are the ASGI server's business and are not used). *authorize*, if given,
    is called with the ASGI scope of every WebSocket handshake that passed the
    server's own checks and returns an :class:`Access` (who, which channels) or a
    :class:`Refusal` (status and reason), or an awaitable of one.

    Its services start with the ASGI lifespan, or in your nursery with ``async with
    app.running()`` / ``await nursery.start(app.serve)``.
    """
    return TakhinApp(settings or Settings(), source=source, authorize=authorize)
