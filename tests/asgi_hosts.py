"""Hosts for the ASGI app in tests: a real Hypercorn (its Trio worker, in the test's
nursery) serving takhin-ws whole, or mounted beside a console's own routes in a
Starlette app or a Quart-Trio app.

Each console has a page of its own at ``/`` and ``/login`` (which sets a session
cookie), and takhin-ws under ``/live`` whose ``authorize`` hook reads that cookie: the
console's login decides who connects.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from http.cookies import SimpleCookie
from typing import Any, Final, cast

import trio
from hypercorn.config import Config
from hypercorn.middleware.dispatcher import TrioDispatcherMiddleware
from hypercorn.trio import serve
from quart_trio import QuartTrio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from takhin_ws.asgi import Access, Refusal, Scope, TakhinApp

#: Where the consoles mount takhin-ws.
PREFIX: Final = "/live"
SESSION_COOKIE: Final = "console_session"
#: Seconds Hypercorn waits for open connections when it stops (then cancels them).
GRACEFUL: Final = 2.0


class Hosted:
    """A running Hypercorn: its URL, and the event that stops it (as a signal does:
    graceful timeout for open connections, then the lifespan's shutdown)."""

    def __init__(self, url: str, stop: trio.Event) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.stop = stop


@asynccontextmanager
async def hypercorn_serving(app: Any, **options: Any) -> AsyncIterator[Hosted]:
    """Serve *app* with Hypercorn's Trio worker on a free port for the block (or until
    its ``stop`` is set)."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = GRACEFUL
    config.accesslog = None
    for name, value in options.items():
        setattr(config, name, value)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield Hosted(binds[0], stop)
        finally:
            stop.set()


class Sessions:
    """The console's own login: session ids -> users, and who may see which channels."""

    def __init__(self, permissions: dict[str, list[str] | None] | None = None) -> None:
        self.users: dict[str, str] = {}
        #: user -> channel patterns (missing: every channel)
        self.permissions = permissions or {}

    def login(self, user: str) -> str:
        sid = secrets.token_urlsafe(16)
        self.users[sid] = user
        return sid

    def authorize(self, scope: Scope) -> Access | Refusal:
        """The takhin-ws hook: the session cookie of the handshake, or 401."""
        cookie = SimpleCookie()
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie.load(value.decode("latin-1"))
        morsel = cookie.get(SESSION_COOKIE)
        user = None if morsel is None else self.users.get(morsel.value)
        if user is None:
            return Refusal(401, "log in to the console first")
        return Access(identity=user, channels=self.permissions.get(user))


def starlette_console(live: TakhinApp, sessions: Sessions) -> Starlette:
    """A Starlette console: its page, its login, takhin-ws mounted under ``/live``
    and run by the console's own lifespan."""

    async def home(request: Request) -> Response:
        return HTMLResponse("<h1>console</h1>")

    async def login(request: Request) -> Response:
        response = JSONResponse({"user": request.query_params["user"]})
        response.set_cookie(SESSION_COOKIE, sessions.login(request.query_params["user"]))
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with live.running():
            yield

    return Starlette(
        routes=[Route("/", home), Route("/login", login), Mount(PREFIX, app=live)],
        lifespan=lifespan,
    )


def quart_console(live: TakhinApp, sessions: Sessions) -> Callable[..., Any]:
    """A Quart-Trio console beside takhin-ws, both behind Hypercorn's Trio
    dispatcher (which forwards the lifespan to each)."""
    console = QuartTrio(__name__)

    @console.route("/")
    async def home() -> str:
        return "<h1>console</h1>"

    @console.route("/login")
    async def login() -> Any:
        from quart import request

        user = request.args["user"]
        response = {"user": user}
        made = await console.make_response(response)
        made.set_cookie(SESSION_COOKIE, sessions.login(user))
        return made

    # (Hypercorn types apps with its own TypedDicts; takhin-ws, like Starlette, with
    # plain mappings)
    return TrioDispatcherMiddleware({PREFIX: cast(Any, live), "": console})
