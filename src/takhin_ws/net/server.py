"""The service: one port for WebSocket and plain HTTP, sessions, graceful shutdown.

``open_server(settings)`` is an async context manager: on entry the listener is
bound, the metrics producer, the heartbeat sweep and the accept loops run, and the
returned :class:`Server` knows its port; on exit accepting stops, every client gets a
Close frame (1001) within ``shutdown_timeout`` and every task ends.

Each connection is one task in the server's handler nursery (see ``net/listener``): it
reads the request head, then either answers plain HTTP (``net/routes``) or, for an
admitted upgrade (``core/admission``), runs the WebSocket handshake and the client's
:class:`~takhin_ws.net.session.Session`. A connection's failure is logged with its id
and never reaches the server.
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from trio_websocket import WebSocketConnection, wrap_server_stream

from .._exceptions import HubFullError
from ..config.settings import Settings
from ..core.admission import Admission, Upgrade
from ..core.hosts import HostPolicy
from ..core.hub import Hub
from ..core.snapshot import MetricsSource
from ..ingest.bus import EventBus
from ..ingest.ingress import EventIngress
from ..ingest.producer import MetricsProducer
from ..wire.http import HttpError, Request
from ..wire.inbound import InboundFilter
from .exposition import ServerStatistics
from .heartbeat import heartbeat
from .httpio import read_body, read_request, send_answer
from .inboundio import RECEIVE_BYTES, InboundStream
from .listener import Listener, bind
from .routes import WS_PATH, Answer, Routes, refusal
from .services import Services, open_services
from .session import CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN, Session, gap_frames, log_ending
from .status import MetricsStatus
from .transport import SocketTransport

__all__ = ["WS_PATH", "Server", "open_server", "serve"]

log = logging.getLogger("takhin_ws.server")


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
        self._pending_handshakes = 0
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
        self._gap_frames = partial(gap_frames, hub)  # shared: no closure per connection

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

    def check_upgrade(self, request: Request) -> None:
        """Raise the :class:`HttpError` an upgrade with *request*'s query and headers
        would get now (503, 403, 401, 400), its handshake headers aside: what a plain
        ``GET /api/monitoring/ws`` answers, for browsers, which cannot see why an
        upgrade failed."""
        self._admission.admit(
            request,
            accepting=self._accepting,
            occupied=len(self.hub) + self._pending_handshakes,
            capacity=self.hub.max_clients,
            owns_handshake=False,
        )

    def latest_metrics(self) -> bytes | None:
        """The latest snapshot as a bare ``MonitoringMetrics`` JSON object (``None``
        before the first one)."""
        return self._services.latest_metrics()

    def statistics(self) -> ServerStatistics:
        """The server's counters now, as one frozen value (what ``/metrics`` renders)."""
        return ServerStatistics(
            hub=self.hub.statistics(),
            connections=self.connections_total,
            rejected=dict(self.rejected),
            backlogged_clients=sum(1 for s in tuple(self.sessions) if s.transport.backlogged),
            ready=self.ready,
            bus_healthy=None if self.bus is None else self.bus.healthy,
            producer=None if self.producer is None else self.producer.statistics(),
        )

    # --- one connection ---

    async def _connection(self, sock: socket.socket) -> None:
        """One accepted connection, start to end. Never raises (except cancellation)."""
        self.connections_total += 1
        conn_id = f"conn-{next(self._ids)}"
        remote = _address(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.settings.send_buffer_size:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_size)
            async with trio.open_nursery() as nursery:
                transport = SocketTransport(
                    sock,
                    nursery,
                    queue_size=self.settings.queue_size,
                    write_timeout=self.settings.write_timeout,
                    gap_frames=self._gap_frames,
                )
                try:
                    await self._serve(transport, nursery, conn_id, remote)
                finally:
                    transport.abort("connection finished")
                    nursery.cancel_scope.cancel()
        except Exception:
            log.exception("%s failed; the connection was closed", conn_id)
        finally:
            sock.close()

    async def _serve(
        self, transport: SocketTransport, nursery: trio.Nursery, conn_id: str, remote: str
    ) -> None:
        settings = self.settings
        request: Request | None = None
        with trio.move_on_after(settings.handshake_timeout):
            try:
                request = await read_request(transport)
            except HttpError as exc:  # a bad head (400) or one too large (431)
                self._count_rejected(exc)
                await self._send(transport, refusal(exc), head=False)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        if request is None:
            log.debug("%s: no request within %s s; dropped", conn_id, settings.handshake_timeout)
            return
        head = request.method == "HEAD"
        try:
            self._check_host(request, conn_id)
            if request.path == WS_PATH and request.is_websocket:
                upgrade = self._admit(request, conn_id)
                # the same synchronous step as the admission: no checkpoint in between
                self._pending_handshakes += 1
                transport.replay(request.raw)
                del request  # a session outlives its request: keep none of it
                await self._websocket(transport, nursery, upgrade, conn_id, remote)
                return
            await self._send(transport, await self._answer(transport, request), head=head)
        except HttpError as exc:
            self._count_rejected(exc)
            await self._send(transport, refusal(exc), head=head)
        await transport.linger_close()

    async def _answer(self, transport: SocketTransport, request: Request) -> Answer:
        """The plain-HTTP answer to *request* (a publish's body read first, bounded)."""
        routes = self._routes
        if not routes.is_publish(request):
            return routes.answer(request)
        routes.check_publish(request)
        body: bytes | None = None
        deadline = self.settings.body_timeout
        with trio.move_on_after(deadline):
            body = await read_body(transport, request, self.settings.max_body_size)
        if body is None:
            raise HttpError(408, f"the request body did not arrive within {deadline:g} s")
        return await routes.publish(body)

    async def _send(self, transport: SocketTransport, answer: Answer, *, head: bool) -> None:
        await send_answer(transport, answer, head=head, write_timeout=self.settings.write_timeout)

    def _check_host(self, request: Request, conn_id: str) -> None:
        try:
            self._hosts.check(request)
        except HttpError:
            log.warning("%s: refused Host %r", conn_id, (request.header("host") or "")[:80])
            raise

    def _count_rejected(self, exc: HttpError) -> None:
        self.rejected[exc.status] = self.rejected.get(exc.status, 0) + 1

    # --- WebSocket ---

    def _admit(self, request: Request, conn_id: str) -> Upgrade:
        try:
            return self._admission.admit(
                request,
                accepting=self._accepting,
                occupied=len(self.hub) + self._pending_handshakes,
                capacity=self.hub.max_clients,
            )
        except HttpError as exc:
            if exc.status == 403:
                log.warning("%s: refused origin %r", conn_id, request.header("origin"))
            elif exc.status == 401:
                log.warning("%s: refused upgrade without a valid API key", conn_id)
            raise

    async def _websocket(
        self,
        transport: SocketTransport,
        nursery: trio.Nursery,
        upgrade: Upgrade,
        conn_id: str,
        remote: str,
    ) -> None:
        """Handshake (its slot was taken at admission), then the session."""
        settings = self.settings
        ws: WebSocketConnection | None = None
        try:
            inbound = InboundFilter(
                max_message_size=settings.max_message_size,
                deflate=upgrade.deflate is not None,
                skip=upgrade.head_size,
            )
            stream = InboundStream(transport, inbound)
            with trio.move_on_after(settings.handshake_timeout):
                ws_request = await wrap_server_stream(
                    nursery,
                    stream,
                    max_message_size=settings.max_message_size,
                    receive_buffer_size=RECEIVE_BYTES,
                )
                ws = await ws_request.accept(
                    subprotocol=upgrade.subprotocol, extra_headers=upgrade.extra_headers
                )
        finally:
            self._pending_handshakes -= 1
        if ws is None:
            log.debug("%s: handshake did not finish in time; dropped", conn_id)
            return
        if not self._accepting:  # the shutdown began during the handshake
            with trio.move_on_after(settings.write_timeout):
                await ws.aclose(CLOSE_GOING_AWAY, "server shutting down")
            return
        # registration and the session's first frames: one synchronous step with
        # giving back the handshake slot (no checkpoint: the limit holds)
        try:
            client = self.hub.add_client(transport, upgrade.channels, variant=upgrade.variant)
            if upgrade.variant.bare:
                transport.without_gaps()
        except HubFullError:
            await ws.aclose(CLOSE_TRY_AGAIN, "connection limit reached")
            return
        series = None if self.producer is None else self.producer.series
        session = Session(
            self.hub, settings, transport, ws, client, series, nursery=nursery, inbound=stream
        )
        transport.next_ping = trio.current_time() + settings.ping_interval
        self.sessions.add(session)
        try:
            session.start(upgrade.since, upgrade.epoch, source=self._services.source_kind)
            log.debug("%s: client %s connected", conn_id, client.id)
            await session.run()
        finally:
            self.sessions.discard(session)
            if not self.sessions and self._drained is not None:
                self._drained.set()
            self.hub.remove_client(client)
            log_ending(client.id, remote, session.ending())

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


class _Handlers:
    """The connections' nursery, in a task of its own and shielded: cancelling the
    server's scope (``serve`` in a cancelled nursery) reaches the connections only
    through the shutdown, which lets every session send its Close frame first; then
    :meth:`stop` cancels whatever is left."""

    def __init__(self) -> None:
        self._scope = trio.CancelScope(shield=True)
        self._nursery: trio.Nursery | None = None

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "not started"
        return self._nursery

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def stop(self) -> None:
        self._scope.cancel()


def _address(sock: socket.socket) -> str:
    """``host:port`` of the peer (``[v6]:port``); ``unknown`` once it is gone."""
    try:
        host, port, *_ = sock.getpeername()
    except OSError:
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def open_server(
    settings: Settings | None = None,
    *,
    source: MetricsSource | None = None,
    hub: Hub | None = None,
) -> AsyncIterator[Server]:
    """Run a takhin-ws server for the duration of the ``async with`` block.

    *source* defaults to the one *settings* names (synthetic or prometheus).
    Raises :class:`~takhin_ws.ListenError` if the address cannot be bound.
    """
    settings = settings or Settings()
    listener = await bind(settings.host, settings.port)
    try:
        async with (
            open_services(settings, source=source, hub=hub) as services,
            trio.open_nursery() as nursery,
        ):
            server = Server(
                settings,
                services.hub,
                services.producer,
                listener,
                services.ingress,
                bus=services.bus,
            )
            nursery.start_soon(heartbeat, server.sessions, settings)
            handlers = _Handlers()
            try:
                await nursery.start(handlers.run)
                await nursery.start(listener.serve, server._connection, handlers.nursery)
                try:
                    yield server
                finally:
                    with trio.CancelScope(shield=True):
                        await server.shutdown()
            finally:
                handlers.stop()
                nursery.cancel_scope.cancel()
    finally:
        listener.close()


async def serve(
    settings: Settings | None = None,
    *,
    source: MetricsSource | None = None,
    hub: Hub | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a server in the caller's nursery until that nursery is cancelled (Trio's
    ``serve_tcp`` convention): ``server = await nursery.start(serve, settings)`` returns
    the started :class:`Server` once it listens. On cancellation it shuts down as
    leaving :func:`open_server` does (every client gets 1001). Same arguments as
    :func:`open_server`."""
    async with open_server(settings, source=source, hub=hub) as server:
        task_status.started(server)
        await trio.sleep_forever()
