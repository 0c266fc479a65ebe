"""The plain-HTTP routes of the port: the dashboard, health, readiness, Prometheus text
and ``POST /api/events``. One request per connection (``Connection: close``).

A refusal is raised as :class:`~takhin_ws.wire.http.HttpError`; the server answers it with
a JSON body and counts it. Routes see the server only through :class:`ServerView`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import orjson
import trio

from ..core.admission import Admission, bearer, key_matches, www_authenticate
from ..ingest.bus import BusUnavailableError
from ..ingest.ingress import EventIngress
from ..wire.http import HttpError, Request, error_code, json_error, response_bytes
from .dashboard import dashboard_page
from .exposition import ServerStatistics, render_metrics
from .httpio import read_body
from .transport import SocketTransport

if TYPE_CHECKING:
    from ..config.settings import Settings

__all__ = ["EVENTS_PATH", "METRICS_API_PATH", "WS_PATH", "Routes", "ServerView"]

#: The 2.9 endpoint.
WS_PATH: Final = "/api/monitoring/ws"
#: The latest snapshot as a bare ``MonitoringMetrics`` object (the Takhin console's REST path).
METRICS_API_PATH: Final = "/api/monitoring/metrics"
EVENTS_PATH: Final = "/api/events"
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4"
#: ``Retry-After`` seconds of the 503 answered before the first snapshot.
RETRY_NO_SNAPSHOT: Final = 1


class ServerView(Protocol):
    """What the routes need of the server."""

    @property
    def settings(self) -> Settings: ...

    @property
    def ingress(self) -> EventIngress: ...

    def unready_reasons(self) -> list[str]: ...

    def latest_metrics(self) -> bytes | None: ...

    def statistics(self) -> ServerStatistics: ...


class Routes:
    def __init__(self, server: ServerView, admission: Admission) -> None:
        self._server = server
        self._admission = admission
        self._settings = server.settings
        self._publish_keys = [k.encode() for k in server.settings.publish_keys]

    async def answer(self, transport: SocketTransport, request: Request) -> None:
        """Answer *request* (not a WebSocket upgrade); raise :class:`HttpError`.

        A ``HEAD`` request gets the ``GET`` answer's status and headers, no body."""
        path, method = request.path, request.method
        head = method == "HEAD"
        if path == EVENTS_PATH:
            if method != "POST":
                raise HttpError(405, "use POST", headers=[("Allow", "POST")])
            await self._publish(transport, request)
            return
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not allowed here", headers=[("Allow", "GET, HEAD")])
        if path in ("/", "/index.html"):
            page = dashboard_page()
            html = "text/html; charset=utf-8"
            await self.send(transport, response_bytes(200, page, content_type=html, head_only=head))
        elif path == "/healthz":
            await self.send_json(transport, 200, {"status": "ok"}, head=head)
        elif path == "/readyz":
            reasons = self._server.unready_reasons()
            body = {"status": "unready" if reasons else "ready", "reasons": reasons}
            await self.send_json(transport, 503 if reasons else 200, body, head=head)
        elif path == "/metrics":
            text = render_metrics(self._server.statistics())
            prometheus = PROMETHEUS_CONTENT_TYPE
            response = response_bytes(200, text, content_type=prometheus, head_only=head)
            await self.send(transport, response)
        elif path == METRICS_API_PATH:
            await self._latest_metrics(transport, request, head=head)
        elif path == WS_PATH:
            raise HttpError(
                426, "this endpoint speaks WebSocket", headers=[("Upgrade", "websocket")]
            )
        else:
            raise HttpError(404, f"no such path: {path}")

    async def send(self, transport: SocketTransport, response: bytes) -> None:
        """Write a whole response within the write deadline (a peer gone is no error)."""
        with trio.move_on_after(self._settings.write_timeout):
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await transport.send_all(response)

    async def send_json(
        self, transport: SocketTransport, status: int, obj: object, *, head: bool = False
    ) -> None:
        await self.send(transport, response_bytes(status, orjson.dumps(obj), head_only=head))

    async def refuse(self, transport: SocketTransport, exc: HttpError, *, head: bool) -> None:
        """Answer a refusal: its status, headers and a JSON error body (none to HEAD)."""
        body = json_error(exc.status, error_code(exc.status), exc.message)
        response = response_bytes(exc.status, body, headers=exc.headers, head_only=head)
        await self.send(transport, response)

    async def _latest_metrics(
        self, transport: SocketTransport, request: Request, *, head: bool
    ) -> None:
        """The latest snapshot, bare; the same API keys as WebSocket clients."""
        if self._admission.keys_required and not self._admission.authorized(request, []):
            raise HttpError(401, "missing or wrong API key", headers=www_authenticate())
        body = self._server.latest_metrics()
        if body is None:
            raise HttpError(
                503, "no metrics snapshot yet", headers=[("Retry-After", str(RETRY_NO_SNAPSHOT))]
            )
        await self.send(transport, response_bytes(200, body, head_only=head))

    async def _publish(self, transport: SocketTransport, request: Request) -> None:
        if not self._publish_keys:
            raise HttpError(403, "publishing is disabled: start the server with --publish-key")
        if not key_matches(self._publish_keys, bearer(request)):
            raise HttpError(401, "missing or wrong publish key", headers=www_authenticate())
        ctype = (request.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "content type must be application/json")
        body: bytes | None = None
        deadline = self._settings.body_timeout
        with trio.move_on_after(deadline):
            body = await read_body(transport, request, self._settings.max_body_size)
        if body is None:
            raise HttpError(408, f"the request body did not arrive within {deadline:g} s")
        try:
            published = await self._server.ingress.publish_body(body)
        except BusUnavailableError as exc:
            raise HttpError(
                503, f"event bus unavailable: {exc}", headers=[("Retry-After", "1")]
            ) from None
        accepted = [attrs.asdict(p) for p in published]
        await self.send_json(transport, 202, {"accepted": accepted})
