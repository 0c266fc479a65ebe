"""The plain-HTTP routes: the dashboard, health, readiness, Prometheus text, the latest
snapshot and ``POST /api/events``, as answers without I/O.

:meth:`Routes.answer` turns a request into an :class:`Answer` (status, body, headers)
or raises :class:`~takhin_ws.wire.http.HttpError`; a publish is checked first
(:meth:`Routes.check_publish`), its body read by the caller, then published
(:meth:`Routes.publish`). The standalone server writes answers to its sockets
(``net/http/exchange``), the ASGI app sends them as ASGI messages (``takhin_ws.asgi``): the
same routes on both doors. Routes see the server only through :class:`ServerView`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import orjson

from ...core.access.admission import Admission, bearer
from ...core.access.auth import key_matches, www_authenticate
from ...core.access.permissions import Permissions
from ...core.access.tokens import looks_like_token
from ...ingest.bus import BusUnavailableError
from ...ingest.idempotency import Done, IdempotencyKeys, check_key
from ...ingest.ingress import EventIngress, decode_events
from ...wire.http import HttpError, Request, error_code, json_error
from ...wire.messages import Payload, channel_of
from .dashboard import dashboard_page
from .exposition import ServerStatistics, render_metrics
from .status import MetricsStatus

if TYPE_CHECKING:
    from ...config.settings import Settings

__all__ = [
    "EVENTS_PATH",
    "METRICS_API_PATH",
    "WS_PATH",
    "Answer",
    "PublishScope",
    "Routes",
    "ServerView",
    "refusal",
]

#: The 2.9 endpoint.
WS_PATH: Final = "/api/monitoring/ws"
#: The latest snapshot as a bare ``MonitoringMetrics`` object (the Takhin console's REST path).
METRICS_API_PATH: Final = "/api/monitoring/metrics"
EVENTS_PATH: Final = "/api/events"
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4"
HTML_CONTENT_TYPE: Final = "text/html; charset=utf-8"
JSON_CONTENT_TYPE: Final = "application/json"
#: ``Retry-After`` seconds of the 503 answered before the first snapshot.
RETRY_NO_SNAPSHOT: Final = 1
#: ``Retry-After`` seconds of the 503 answered when the event bus did not take events.
RETRY_BUS: Final = 1
#: ``error.outcome`` of that 503: whether the events may have been published after all.
NOT_PUBLISHED: Final = "not_published"
OUTCOME_UNKNOWN: Final = "unknown"
#: The paths of the dashboard page.
DASHBOARD_PATHS: Final = frozenset({"/", "/index.html"})


def unpublished(exc: BusUnavailableError) -> str:
    """What a 503 of ``POST /api/events`` says about its events, truthfully: those
    published before the failure (in ``accepted``), then the one in flight: not
    published, or (a request sent and not answered) perhaps published."""
    done = len(exc.published)
    before = f"the first {done} event(s) were published (see accepted); " if done else ""
    if not exc.outcome_unknown:
        rest = "the rest were not published" if done else "nothing was published"
        return f"event bus unavailable: {exc}; {before}{rest}"
    return (
        f"event bus unavailable: {exc}; {before}outcome unknown: the next event may have "
        "been published (the bus may have taken it before the failure), any after it "
        "were not; a retry may publish it twice"
    )


@attrs.frozen
class Answer:
    """One HTTP response, before any I/O: status, body, content type, extra headers."""

    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(status: int, obj: object) -> Answer:
    return Answer(status, orjson.dumps(obj))


def refusal(exc: HttpError) -> Answer:
    """The answer to a refusal: its status, headers and a JSON error body."""
    body = json_error(exc.status, error_code(exc.status), exc.message, exc.details)
    return Answer(exc.status, body, headers=tuple(exc.headers))


@attrs.frozen
class PublishScope:
    """What a publisher may publish on: ``None``, everything (a publish key); else the
    channels its token's claim allows."""

    permissions: Permissions | None
    #: who publishes (a digest of the publish key, or the token's subject), the scope
    #: of its ``Idempotency-Key`` (two publishers' keys never collide)
    who: str = ""
    #: the request's ``Idempotency-Key``, if it has one
    idempotency_key: str | None = None

    def check(self, events: Sequence[Payload], forbid: Callable[[str], HttpError]) -> None:
        """Raise ``forbid(...)`` if an event of *events* is outside the scope."""
        permissions = self.permissions
        if permissions is None:
            return
        refused = sorted({c for c in map(channel_of, events) if not permissions.sees(c)})
        if refused:
            raise forbid(f"not permitted by the token: {', '.join(refused)} (nothing published)")


class ServerView(Protocol):
    """What the routes need of the server."""

    @property
    def settings(self) -> Settings: ...

    @property
    def ingress(self) -> EventIngress: ...

    def unready_reasons(self) -> list[str]: ...

    def metrics_status(self) -> MetricsStatus | None: ...

    def _check_upgrade(self, request: Request) -> None:
        """Raise the :class:`HttpError` an upgrade with *request*'s query and
        headers would get now (its handshake headers aside)."""

    def latest_metrics(self, permissions: Permissions | None = None) -> bytes | None: ...

    def statistics(self) -> ServerStatistics: ...


class Routes:
    def __init__(self, server: ServerView, admission: Admission) -> None:
        self._server = server
        self._admission = admission
        self._publish_keys = [k.encode() for k in server.settings.publish_keys]
        settings = server.settings
        self._idempotency = IdempotencyKeys(
            ttl=settings.idempotency_ttl, capacity=settings.idempotency_keys
        )

    @staticmethod
    def is_publish(request: Request) -> bool:
        """Whether *request* is for ``/api/events`` (:meth:`check_publish` it, read its
        body, then :meth:`publish`)."""
        return request.path == EVENTS_PATH

    def answer(self, request: Request) -> Answer:
        """The answer to *request* (neither a WebSocket upgrade nor a publish); raise
        :class:`HttpError`. A ``HEAD`` request gets the ``GET`` answer (its writer
        leaves the body out)."""
        path, method = request.path, request.method
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not allowed here", headers=[("Allow", "GET, HEAD")])
        if path in DASHBOARD_PATHS:
            page = dashboard_page(self._server.settings.token_url)
            return Answer(200, page, HTML_CONTENT_TYPE)
        if path == "/healthz":
            return json_answer(200, {"status": "ok"})
        if path == "/readyz":
            reasons = self._server.unready_reasons()
            body: dict[str, object] = {"status": "unready" if reasons else "ready"}
            body["reasons"] = reasons
            status = self._server.metrics_status()
            if status is not None:
                body["metrics"] = status.as_json()
            return json_answer(503 if reasons else 200, body)
        if path == "/metrics":
            text = render_metrics(self._server.statistics())
            return Answer(200, text, PROMETHEUS_CONTENT_TYPE)
        if path == METRICS_API_PATH:
            return self._latest_metrics(request)
        if path == WS_PATH:
            # a plain GET is answered what its upgrade would be (a browser's WebSocket
            # sees none of that: every refusal is close 1006), 426 if it would be admitted
            self._server._check_upgrade(request)
            raise HttpError(
                426, "this endpoint speaks WebSocket", headers=[("Upgrade", "websocket")]
            )
        raise HttpError(404, f"no such path: {path}")

    def _latest_metrics(self, request: Request) -> Answer:
        """The latest snapshot, bare; the same API keys and tokens as WebSocket clients
        (a token's claim filters it as it filters ``metrics``)."""
        auth = self._admission.authenticate(request, [])
        permissions = auth.permissions
        if permissions is not None and not permissions.allows("metrics"):
            raise self._admission.authenticator.forbid("metrics: not permitted by the token")
        body = self._server.latest_metrics(permissions)
        if body is None:
            raise HttpError(
                503, "no metrics snapshot yet", headers=[("Retry-After", str(RETRY_NO_SNAPSHOT))]
            )
        return Answer(200, body)

    def check_publish(self, request: Request) -> PublishScope:
        """Refuse a publish before its body is read (method, keys, content type); the
        scope to :meth:`publish` its body in."""
        if request.method != "POST":
            raise HttpError(405, "use POST", headers=[("Allow", "POST")])
        scope = self._publisher(request)
        ctype = (request.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != JSON_CONTENT_TYPE:
            raise HttpError(415, "content type must be application/json")
        key = request.header("idempotency-key")
        return scope if key is None else attrs.evolve(scope, idempotency_key=check_key(key))

    def _publisher(self, request: Request) -> PublishScope:
        """Who may publish: a publish key (everything) or a token with ``publish:
        true`` (its channels); raise :class:`HttpError` otherwise."""
        authenticator = self._admission.authenticator
        verifier = authenticator.verifier
        if not self._publish_keys and verifier is None:
            raise HttpError(403, "publishing is disabled: start the server with --publish-key")
        given = bearer(request)
        if given is not None and key_matches(self._publish_keys, given):
            return PublishScope(None, "key:" + hashlib.sha256(given.encode()).hexdigest())
        if verifier is None or not given or not looks_like_token(given):
            raise HttpError(401, "missing or wrong publish key", headers=www_authenticate())
        auth = authenticator.authenticate([given])
        if auth.grant is None or not auth.grant.publish:
            raise authenticator.forbid("the token does not allow publishing (publish: true)")
        return PublishScope(auth.permissions, f"token:{auth.grant.subject}")

    async def publish(self, body: bytes, scope: PublishScope) -> Answer:
        """Publish the events of a checked request's *body* (every one or none), each
        within *scope* (else 403 and nothing is published). A request with an
        ``Idempotency-Key`` that was answered already gets the same answer again
        (see ``ingest/idempotency``), and publishes nothing."""
        key = scope.idempotency_key
        if key is None:
            return await self._publish(body, scope)
        done = self._idempotency.begin(scope.who, key, body)
        if done is not None:
            return Answer(done.status, done.body)
        try:
            answer = await self._publish(body, scope)
        except BaseException:
            self._idempotency.abandon(scope.who, key)
            raise
        self._idempotency.finish(scope.who, key, Done(answer.status, answer.body))
        return answer

    async def _publish(self, body: bytes, scope: PublishScope) -> Answer:
        ingress = self._server.ingress
        max_events = self._server.settings.max_batch_events
        try:
            if scope.permissions is None:
                published = await ingress.publish_body(body, max_events)
            else:
                events = decode_events(body, max_events)
                scope.check(events, self._admission.authenticator.forbid)
                published = await ingress.publish_many(events)
        except BusUnavailableError as exc:
            raise HttpError(
                503,
                unpublished(exc),
                headers=[("Retry-After", str(RETRY_BUS))],
                details={
                    "outcome": OUTCOME_UNKNOWN if exc.outcome_unknown else NOT_PUBLISHED,
                    "accepted": [attrs.asdict(p) for p in exc.published],
                },
            ) from None
        return json_answer(202, {"accepted": [attrs.asdict(p) for p in published]})
