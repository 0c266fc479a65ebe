"""The server: one port for WebSocket and plain HTTP, sessions, graceful shutdown.

:class:`Server` is what :func:`~takhin_ws.open_server` (``net/serving``) hands out:
its address, readiness and statistics, and :meth:`Server.shutdown`.

Each connection is one task in the server's handler nursery (see ``net/listener``): it
reads the request head, then either answers plain HTTP (``net/http/routes``) or, for an
admitted upgrade (``core/access/admission``), runs the WebSocket handshake and the client's
:class:`~takhin_ws.net.session.Session`. A connection's failure is logged with its id
and never reaches the server.
"""

from __future__ import annotations

import itertools
import logging
import socket

import trio

from .._exceptions import HubFullError
from ..config.settings import Settings
from ..core.access.admission import Admission, Upgrade
from ..core.access.hosts import HostPolicy
from ..core.access.permissions import Permissions
from ..core.access.renewal import token_session
from ..core.clients import Client
from ..core.hub import Hub
from ..ingest.bus import EventBus
from ..ingest.ingress import EventIngress
from ..ingest.producer import MetricsProducer
from ..wire.gaps import gap_frames
from ..wire.http import MAX_HEAD_BYTES, HttpError, Request, switching_protocols
from ..wire.websocket.frames import close_frame
from ..wire.websocket.inbound import InboundFilter
from .http.exchange import HeadReader, read_body, send_answer
from .http.exposition import ServerStatistics
from .http.routes import WS_PATH, Answer, Routes, refusal
from .http.status import MetricsStatus
from .inboundio import InboundReader
from .listener import Listener
from .services import Services
from .session import (
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN,
    Session,
    endings_logged,
    log_ending,
)
from .transport import SocketTransport

__all__ = ["WS_PATH", "Server"]

log = logging.getLogger("takhin_ws.server")

#: The reason of the 1013 a client gets when the hub is full after its upgrade.
CONNECTION_LIMIT = "connection limit reached"


class Server:
    """A running takhin-ws server (see :func:`open_server`)."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        producer: MetricsProducer | None,
        listener: Listener,
        ingress: EventIngress | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.producer = producer
        self._listener = listener
        self.sessions: set[Session] = set()
        #: set once shutting down and the last session has ended (one event for all)
        self._drained: trio.Event | None = None
        self._ids = itertools.count(1)
        self._accepting = True
        self.connections_total = 0
        self.rejected: dict[int, int] = {}
        self.ingress = ingress or EventIngress(hub)
        self.bus = bus
        self._services = Services(settings, hub, producer, self.ingress, bus)
        self._admission = Admission(settings)
        self._hosts = HostPolicy(settings.allowed_hosts, bind=settings.host)
        self._routes = Routes(self, self._admission)
        #: the connections' nursery, where flushers and closers run too (set at start)
        self._handlers: trio.Nursery | None = None

    @property
    def _nursery(self) -> trio.Nursery:
        assert self._handlers is not None, "not started"
        return self._handlers

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def url(self) -> str:
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + WS_PATH

    @property
    def ready(self) -> bool:
        return not self.unready_reasons()

    def unready_reasons(self) -> list[str]:
        """Why ``/readyz`` answers 503 (empty while ready)."""
        reasons = [] if self._accepting else ["shutting down"]
        return reasons + self._services.unready_reasons()

    @property
    def source_kind(self) -> str | None:
        """What clients are told the metrics come from (``welcome``, ``/readyz``):
        ``synthetic`` (simulated data), ``prometheus``, ``kafka``..., ``custom``."""
        return self._services.source_kind

    def metrics_status(self) -> MetricsStatus | None:
        """Where the metrics stand (``/readyz``'s ``metrics``); ``None`` without a producer."""
        return self._services.metrics_status()

    def _check_upgrade(self, request: Request) -> None:
        """Raise the :class:`HttpError` an upgrade with *request*'s query and headers
        would get now (503, 403, 401, 400), its handshake headers aside: what a plain
        ``GET /api/monitoring/ws`` answers, for browsers, which cannot see why an
        upgrade failed."""
        self._admission.admit(
            request,
            accepting=self._accepting,
            occupied=len(self.hub),
            capacity=self.hub.max_clients,
            owns_handshake=False,
        )

    def latest_metrics(self, permissions: Permissions | None = None) -> bytes | None:
        """The latest snapshot as a bare ``MonitoringMetrics`` JSON object (``None``
        before the first one), as *permissions* may see it."""
        return self._services.latest_metrics(permissions)

    def statistics(self) -> ServerStatistics:
        """The server's counters now, as one frozen value (what ``/metrics`` renders)."""
        authenticator = self._admission.authenticator
        return ServerStatistics(
            hub=self.hub.statistics(),
            clients_by_auth=authenticator.census(s.auth for s in tuple(self.sessions)),
            admitted_by_auth=dict(authenticator.admitted),
            auth_refusals=dict(authenticator.refusals),
            connections=self.connections_total,
            rejected=dict(self.rejected),
            backlogged_clients=sum(1 for s in tuple(self.sessions) if s.transport.backlogged),
            ready=self.ready,
            bus_healthy=None if self.bus is None else self.bus.healthy,
            producer=None if self.producer is None else self.producer.statistics(),
            max_views_per_connection=self.settings.max_views,
        )

    # --- one connection ---

    async def _connection(self, sock: socket.socket) -> None:
        """One accepted connection, start to end. Never raises (except cancellation).

        The connection's one task: it reads the request, answers plain HTTP or runs
        the session; a backed-up transport's flusher and a closing session's timer
        run in the server's handler nursery, only while needed."""
        self.connections_total += 1
        conn_id = next(self._ids)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.settings.send_buffer_size:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_size)
            transport = SocketTransport(
                sock,
                self._nursery,
                queue_size=self.settings.queue_size,
                write_timeout=self.settings.write_timeout,
                gap_frames=gap_frames,
            )
            session: Session | None = None
            remote = "unknown"
            try:
                session = await self._serve(transport, conn_id)
                if session is not None:
                    if endings_logged():  # looked up now: the peer may reset later
                        remote = _address(sock)
                    await session.run()  # awaited here: one frame less per idle client
            finally:
                transport.abort("connection finished")
                if session is not None:
                    self._ended(session, remote)
        except Exception:
            log.exception("conn-%d failed; the connection was closed", conn_id)
        finally:
            sock.close()

    async def _serve(self, transport: SocketTransport, conn_id: int) -> Session | None:
        """Read the request and answer it: a started session for an admitted upgrade
        (to be run), else ``None`` once the HTTP answer is written."""
        settings = self.settings
        reader = HeadReader()
        request: Request | None = None
        try:
            data = transport.receive_nowait(MAX_HEAD_BYTES)  # usually the whole head
            if data == b"":
                return None
            if data is not None:
                request = reader.feed(data)
            if request is None:
                with trio.move_on_after(settings.handshake_timeout):
                    request = await reader.read(transport)
        except HttpError as exc:  # a bad head (400) or one too large (431)
            self._count_rejected(exc)
            await self._send(transport, refusal(exc), head=False)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if request is None:
            timeout = settings.handshake_timeout
            log.debug("conn-%d: no request within %s s; dropped", conn_id, timeout)
            return None
        head = request.method == "HEAD"
        try:
            self._check_host(request, conn_id)
            if request.path == WS_PATH and request.is_websocket:
                session = self._upgrade(transport, request, conn_id)
                if session is not None:
                    return session
                # the hub was full all the same (another registrant raced this one)
                with trio.move_on_after(settings.write_timeout):
                    await transport.send_all(close_frame(CLOSE_TRY_AGAIN, CONNECTION_LIMIT))
            await self._send(transport, await self._answer(transport, request), head=head)
        except HttpError as exc:
            self._count_rejected(exc)
            await self._send(transport, refusal(exc), head=head)
        await transport.linger_close()
        return None

    async def _answer(self, transport: SocketTransport, request: Request) -> Answer:
        """The plain-HTTP answer to *request* (a publish's body read first, bounded)."""
        routes = self._routes
        if not routes.is_publish(request):
            return routes.answer(request)
        scope = routes.check_publish(request)
        body: bytes | None = None
        deadline = self.settings.body_timeout
        with trio.move_on_after(deadline):
            body = await read_body(transport, request, self.settings.max_body_size)
        if body is None:
            raise HttpError(408, f"the request body did not arrive within {deadline:g} s")
        return await routes.publish(body, scope)

    async def _send(self, transport: SocketTransport, answer: Answer, *, head: bool) -> None:
        await send_answer(transport, answer, head=head, write_timeout=self.settings.write_timeout)

    def _check_host(self, request: Request, conn_id: int) -> None:
        try:
            self._hosts.check(request)
        except HttpError:
            log.warning("conn-%d: refused Host %r", conn_id, (request.header("host") or "")[:80])
            raise

    def _count_rejected(self, exc: HttpError) -> None:
        self.rejected[exc.status] = self.rejected.get(exc.status, 0) + 1

    # --- WebSocket ---

    def _admit(self, request: Request, conn_id: int) -> Upgrade:
        try:
            return self._admission.admit(
                request,
                accepting=self._accepting,
                occupied=len(self.hub),
                capacity=self.hub.max_clients,
            )
        except HttpError as exc:
            if exc.status == 403:
                log.warning("conn-%d: refused origin %r", conn_id, request.header("origin"))
            elif exc.status == 401 and exc.details.get("reason") in ("missing", "wrong_key"):
                log.warning("conn-%d: refused upgrade without a valid API key", conn_id)
            elif exc.status in (401, 403):
                log.warning("conn-%d: refused upgrade: %s", conn_id, exc.message)
            raise

    def _upgrade(
        self, transport: SocketTransport, request: Request, conn_id: int
    ) -> Session | None:
        """Admit *request*, answer ``101``, register the client and write the session's
        first frames: one synchronous step (no checkpoint, so no publish slips in and
        the connection limit holds), from the request as parsed once. Raises
        :class:`HttpError` for a refusal (answered instead of the ``101``); ``None``
        if the hub refuses the client all the same (a ``Hub`` of the caller's that
        others register with), to be told 1013."""
        upgrade = self._admit(request, conn_id)
        key = request.header("sec-websocket-key") or ""
        answer = switching_protocols(key, upgrade.subprotocol, upgrade.extra_headers)
        try:
            client = self.hub.add_client(
                transport,
                upgrade.channels,
                variant=upgrade.variant,
                permissions=upgrade.auth.permissions,
            )
        except HubFullError:
            transport.send_control_nowait(answer)
            return None
        try:
            session = self._start_session(transport, upgrade, client, answer, request.rest)
        except BaseException:  # a fault (a bug): the client holds no place after it
            self.hub.remove_client(client)
            raise
        self.sessions.add(session)
        log.debug("conn-%d: client %s connected", conn_id, client.id)
        return session

    def _start_session(
        self,
        transport: SocketTransport,
        upgrade: Upgrade,
        client: Client,
        answer: bytes,
        first: bytes,
    ) -> Session:
        """The registered *client*'s session, its first frames written (``101`` first)."""
        settings = self.settings
        if upgrade.variant.bare:
            transport.without_gaps()
        inbound = InboundFilter(
            max_message_size=settings.max_message_size, deflate=upgrade.deflate is not None
        )
        series = None if self.producer is None else self.producer.series
        auth = upgrade.auth
        authenticator = self._admission.authenticator
        authenticator.admitted[auth.kind] += 1
        token = token_session(auth, authenticator, settings.token_expiry_notice)
        session = Session(
            self.hub,
            settings,
            transport,
            client,
            series,
            nursery=self._nursery,
            inbound=InboundReader(transport, inbound, first),
            auth=auth.kind,
            token=token,
        )
        transport.next_ping = trio.current_time() + settings.ping_interval
        session.start(upgrade.since, upgrade.epoch, source=self._services.source_kind, head=answer)
        return session

    def _ended(self, session: Session, remote: str) -> None:
        """A session's end: unregistered, logged."""
        self.sessions.discard(session)
        if not self.sessions and self._drained is not None:
            self._drained.set()
        self.hub.remove_client(session.client)
        log_ending(session.id, remote, session.ending())

    # --- shutdown ---

    async def shutdown(self) -> None:
        """Stop accepting, send 1001 to every client, wait for them (bounded by
        ``shutdown_timeout``), then close the hub. Idempotent; leaving
        :func:`open_server` (or cancelling :func:`serve`) calls it. Call it yourself to
        drain clients earlier: ``/readyz`` answers 503 from its first moment, and the
        server's tasks still end only with the ``async with`` block."""
        if not self._accepting:
            return
        self._accepting = False
        self._listener.close()
        sessions = tuple(self.sessions)
        log.info("shutting down: closing %d client connection(s)", len(sessions))
        self._drained = drained = trio.Event()
        for session in sessions:
            session.close(CLOSE_GOING_AWAY, "server shutting down")
        if self.sessions:
            with trio.move_on_after(self.settings.shutdown_timeout):
                await drained.wait()
        self.hub.close()


def _address(sock: socket.socket) -> str:
    """``host:port`` of the peer (``[v6]:port``); ``unknown`` once it is gone."""
    try:
        host, port, *_ = sock.getpeername()
    except OSError:
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
