"""The service: one port for WebSocket and plain HTTP, sessions, heartbeat, shutdown.

``open_server(settings)`` is an async context manager: on entry the listener is
bound, the metrics producer and the accept loop run in the server's nursery and
the returned :class:`Server` knows its port; on exit every client gets a Close
frame (1001) within ``shutdown_timeout`` and every task ends.

The accept loop is our own (Trio's listener hides the stdlib socket, and the
write-through fast path needs it). Each connection is one task in the
connections nursery; its failure is logged with the connection id and never
reaches the server.
"""

from __future__ import annotations

import errno
import hmac
import itertools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs
import orjson
import trio
from trio_websocket import wrap_server_stream

from ._bus import BusUnavailableError, EventBus
from ._channels import EVENT_STREAMS, parse_channel
from ._config import Settings
from ._dashboard import dashboard_page
from ._exceptions import HubFullError, ListenError
from ._frames import ping_frame
from ._http import HttpError, Request, json_error, read_body, read_request, response_bytes
from ._hub import Hub
from ._ingress import EventIngress, decode_events
from ._producer import MetricsProducer
from ._session import CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN, Session, gap_frames
from ._snapshot import MetricsSource
from ._stats import render_metrics
from ._transport import SocketTransport
from .sources import close_source, source_for

if TYPE_CHECKING:
    from .cluster.bus import RedisBus
    from .cluster.lease import MetricsLease

__all__ = ["WS_PATH", "Server", "open_server"]

log = logging.getLogger("takhin_ws.server")

#: The 2.9 endpoint.
WS_PATH: Final = "/api/monitoring/ws"
EVENTS_PATH: Final = "/api/events"
#: Subprotocol a browser offers to carry its API key: ``bearer.<key>``.
TOKEN_SUBPROTOCOL_PREFIX: Final = "bearer."
#: Subprotocol the server selects when offered (so browsers accept the handshake).
SUBPROTOCOL: Final = "takhin.v1"
LISTEN_BACKLOG: Final = 4096
_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@attrs.frozen
class _Upgrade:
    """What an admitted upgrade request asked for."""

    channels: list[str] | None
    since: dict[str, int]
    epoch: str | None
    subprotocol: str | None


class Server:
    """A running takhin-ws server (see :func:`open_server`)."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        producer: MetricsProducer | None,
        listener: socket.socket,
        ingress: EventIngress | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.producer = producer
        self._listener = listener
        self.sessions: set[Session] = set()
        self._pending_handshakes = 0
        self._ids = itertools.count(1)
        self._accepting = True
        self.connections_total = 0
        self.rejected: dict[int, int] = {}
        self._api_keys = [k.encode() for k in settings.api_keys]
        self._publish_keys = [k.encode() for k in settings.publish_keys]
        self.ingress = ingress or EventIngress(hub)
        self.bus = bus
        self._gap_frames = partial(gap_frames, hub)  # shared: no closure per connection

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

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
        return (
            self._accepting
            and (self.producer is None or self.producer.ready)
            and (self.bus is None or self.bus.healthy)
        )

    # --- accept loop ---

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        listener = self._listener
        while self._accepting:
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(listener)
                except trio.ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed (%s); retrying in 100 ms", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                if listener.fileno() == -1:  # closed by shutdown()
                    return
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.settings.send_buffer_size:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_size)
            self.connections_total += 1
            nursery.start_soon(self._connection, sock, f"conn-{next(self._ids)}")
            await trio.lowlevel.checkpoint()

    async def _connection(self, sock: socket.socket, conn_id: str) -> None:
        """One connection, start to end. Never raises (except cancellation)."""
        try:
            async with trio.open_nursery() as nursery:
                transport = SocketTransport(
                    sock,
                    nursery,
                    queue_size=self.settings.queue_size,
                    write_timeout=self.settings.write_timeout,
                    gap_frames=self._gap_frames,
                )
                try:
                    await self._serve(transport, nursery, conn_id)
                finally:
                    transport.abort("connection finished")
                    nursery.cancel_scope.cancel()
        except Exception:
            log.exception("%s failed; the connection was closed", conn_id)
        finally:
            sock.close()

    async def _serve(self, transport: SocketTransport, nursery: trio.Nursery, conn_id: str) -> None:
        settings = self.settings
        request: Request | None = None
        with trio.move_on_after(settings.handshake_timeout):
            try:
                request = await read_request(transport)
            except HttpError as exc:
                await self._respond(transport, exc.status, _code(exc.status), exc.message)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        if request is None:
            log.debug("%s: no request within %s s; dropped", conn_id, settings.handshake_timeout)
            return
        try:
            if request.path == WS_PATH and request.is_websocket:
                upgrade = self._admit(request, conn_id)
                transport.replay(request.raw)
                del request  # a session outlives its request: keep none of it
                await self._websocket(transport, nursery, upgrade, conn_id)
                return
            await self._http(transport, request)
        except HttpError as exc:
            self.rejected[exc.status] = self.rejected.get(exc.status, 0) + 1
            await self._respond(transport, exc.status, _code(exc.status), exc.message, exc.headers)
        await transport.linger_close()

    # --- plain HTTP ---

    async def _respond(
        self,
        transport: SocketTransport,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        body = json_error(status, code, message)
        with trio.move_on_after(self.settings.write_timeout):
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await transport.send_all(response_bytes(status, body, headers=headers))

    async def _send_json(self, transport: SocketTransport, status: int, obj: object) -> None:
        with trio.move_on_after(self.settings.write_timeout):
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await transport.send_all(response_bytes(status, orjson.dumps(obj)))

    async def _http(self, transport: SocketTransport, request: Request) -> None:
        path, method = request.path, request.method
        if path == EVENTS_PATH:
            if method != "POST":
                raise HttpError(405, "use POST", headers=[("Allow", "POST")])
            await self._publish_over_http(transport, request)
            return
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not allowed here", headers=[("Allow", "GET, HEAD")])
        if path in ("/", "/index.html"):
            with trio.move_on_after(self.settings.write_timeout):
                await transport.send_all(
                    response_bytes(
                        200,
                        dashboard_page(),
                        content_type="text/html; charset=utf-8",
                        head_only=method == "HEAD",
                    )
                )
        elif path == "/healthz":
            await self._send_json(transport, 200, {"status": "ok"})
        elif path == "/readyz":
            ready = self.ready
            reasons = []
            if not self._accepting:
                reasons.append("shutting down")
            if self.producer is not None and not self.producer.ready:
                reasons.append("metrics source has not produced a fresh snapshot")
            if self.bus is not None and not self.bus.healthy:
                reasons.append("event bus unavailable (Redis unreachable)")
            body = {"status": "ready" if ready else "unready", "reasons": reasons}
            await self._send_json(transport, 200 if ready else 503, body)
        elif path == "/metrics":
            text = render_metrics(self)
            with trio.move_on_after(self.settings.write_timeout):
                await transport.send_all(
                    response_bytes(200, text, content_type="text/plain; version=0.0.4")
                )
        elif path == WS_PATH:
            raise HttpError(
                426, "this endpoint speaks WebSocket", headers=[("Upgrade", "websocket")]
            )
        else:
            raise HttpError(404, f"no such path: {path}")

    async def _publish_over_http(self, transport: SocketTransport, request: Request) -> None:
        if not self._publish_keys:
            raise HttpError(403, "publishing is disabled: start the server with --publish-key")
        if not _key_matches(self._publish_keys, _bearer(request)):
            raise HttpError(401, "missing or wrong publish key", headers=_www_authenticate())
        ctype = (request.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "content type must be application/json")
        body = await read_body(transport, request, self.settings.max_body_size)
        try:
            published = await self.ingress.publish_many(decode_events(body))
        except BusUnavailableError as exc:
            raise HttpError(
                503, f"event bus unavailable: {exc}", headers=[("Retry-After", "1")]
            ) from None
        accepted = [attrs.asdict(p) for p in published]
        await self._send_json(transport, 202, {"accepted": accepted})

    # --- WebSocket ---

    def _admit(self, request: Request, conn_id: str) -> _Upgrade:
        """Check an upgrade request (state, Origin, key, capacity, parameters)."""
        settings = self.settings
        if not self._accepting:
            raise HttpError(503, "server is shutting down", headers=[("Retry-After", "1")])
        _check_handshake(request)
        if not self._origin_allowed(request):
            log.warning("%s: refused origin %r", conn_id, request.header("origin"))
            raise HttpError(403, "origin not allowed")
        offered = _subprotocols(request)
        if self._api_keys and not self._authorized(request, offered):
            log.warning("%s: refused upgrade without a valid API key", conn_id)
            raise HttpError(401, "missing or wrong API key", headers=_www_authenticate())
        if len(self.hub) + self._pending_handshakes >= self.hub.max_clients:
            raise HttpError(
                503,
                f"connection limit reached ({self.hub.max_clients} clients)",
                headers=[("Retry-After", str(settings.retry_after))],
            )
        channels, since, epoch = _connect_params(request)
        return _Upgrade(channels, since, epoch, _choose_subprotocol(offered))

    async def _websocket(
        self, transport: SocketTransport, nursery: trio.Nursery, upgrade: _Upgrade, conn_id: str
    ) -> None:
        settings = self.settings
        self._pending_handshakes += 1
        ws = None
        try:
            with trio.move_on_after(settings.handshake_timeout):
                ws_request = await wrap_server_stream(
                    nursery, transport, max_message_size=settings.max_message_size
                )
                ws = await ws_request.accept(subprotocol=upgrade.subprotocol)
        finally:
            self._pending_handshakes -= 1
        if ws is None:
            log.debug("%s: handshake did not finish in time; dropped", conn_id)
            return
        transport.watch_close(ws)
        try:
            client = self.hub.add_client(transport, upgrade.channels)
        except HubFullError:
            await ws.aclose(CLOSE_TRY_AGAIN, "connection limit reached")
            return
        session = Session(self.hub, settings, transport, ws, client)
        transport.next_ping = trio.current_time() + settings.ping_interval
        self.sessions.add(session)
        try:
            session.start(upgrade.since, upgrade.epoch)
            log.debug("%s: client %s connected", conn_id, client.id)
            await session.run()
        finally:
            self.sessions.discard(session)
            self.hub.remove_client(client)
            if transport.abort_reason and not transport.abort_reason.startswith("connection"):
                log.info("client %s dropped: %s", client.id, transport.abort_reason)

    def _origin_allowed(self, request: Request) -> bool:
        origin = request.header("origin")
        if origin is None:
            return True  # not a browser
        allowed = self.settings.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        parts = urlsplit(origin)
        if parts.netloc and parts.netloc == request.header("host"):
            return True
        return not allowed and (parts.hostname or "") in _LOCAL_HOSTS

    def _authorized(self, request: Request, offered: list[str]) -> bool:
        candidates = [_bearer(request), request.param("token")]
        candidates += [
            p[len(TOKEN_SUBPROTOCOL_PREFIX) :]
            for p in offered
            if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)
        ]
        ok = False
        for candidate in candidates:
            ok |= _key_matches(self._api_keys, candidate)
        return ok

    # --- heartbeat ---

    async def _heartbeat(self) -> None:
        settings = self.settings
        tick = min(max(min(settings.ping_interval, settings.ping_timeout) / 20, 0.05), 2.0)
        frame = ping_frame(b"takhin-ws")
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for session in tuple(self.sessions):
                transport = session.transport
                if transport.closing:
                    continue
                if now - transport.last_receive > settings.ping_timeout:
                    log.info(
                        "client %s dropped: no pong within %g s", session.id, settings.ping_timeout
                    )
                    transport.abort("heartbeat timeout")
                elif now >= transport.next_ping:
                    transport.next_ping = now + settings.ping_interval
                    transport.send_control_nowait(frame)

    # --- shutdown ---

    async def shutdown(self) -> None:
        """Stop accepting, send 1001 to every client, wait for them (bounded)."""
        if not self._accepting:
            return
        self._accepting = False
        trio.lowlevel.notify_closing(self._listener)
        self._listener.close()
        sessions = tuple(self.sessions)
        log.info("shutting down: closing %d client connection(s)", len(sessions))
        with trio.move_on_after(self.settings.shutdown_timeout):
            async with trio.open_nursery() as nursery:
                for session in sessions:
                    nursery.start_soon(session.close, CLOSE_GOING_AWAY, "server shutting down")
        self.hub.close()


def _code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        415: "unsupported_media_type",
        426: "upgrade_required",
        431: "head_too_large",
        503: "unavailable",
    }.get(status, "error")


def _www_authenticate() -> list[tuple[str, str]]:
    return [("WWW-Authenticate", 'Bearer realm="takhin-ws"')]


def _bearer(request: Request) -> str | None:
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()


def _key_matches(keys: list[bytes], candidate: str | None) -> bool:
    """Constant-time comparison against every key (no early exit)."""
    if not candidate:
        return False
    given = candidate.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(key, given)
    return ok


def _check_handshake(request: Request) -> None:
    """Refuse here what wsproto would refuse: its refusal leaves ``wrap_server_stream``
    waiting (and a handshake slot taken) until the handshake deadline."""
    tokens = {t.strip().lower() for t in (request.header("connection") or "").split(",")}
    if "upgrade" not in tokens:
        raise HttpError(400, "a WebSocket upgrade needs 'Connection: Upgrade'")
    if (request.header("upgrade") or "").strip().lower() != "websocket":
        raise HttpError(400, "a WebSocket upgrade needs 'Upgrade: websocket'")
    version = request.header("sec-websocket-version")
    if version != "13":
        raise HttpError(
            426 if version else 400,
            "only WebSocket version 13 is supported",
            headers=[("Sec-WebSocket-Version", "13")],
        )
    if not request.header("sec-websocket-key") or not request.header("host"):
        raise HttpError(400, "a WebSocket upgrade needs 'Sec-WebSocket-Key' and 'Host'")


def _subprotocols(request: Request) -> list[str]:
    value = request.header("sec-websocket-protocol") or ""
    return [p.strip() for p in value.split(",") if p.strip()]


def _choose_subprotocol(offered: list[str]) -> str | None:
    if not offered:
        return None
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    plain = [p for p in offered if not p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
    return plain[0] if plain else offered[0]


def _connect_params(request: Request) -> tuple[list[str] | None, dict[str, int], str | None]:
    """``?channels=a,b``, ``?since=topics:41,groups:7`` and ``?epoch=``."""
    channels: list[str] | None = None
    raw = request.param("channels")
    if raw is not None:
        try:
            channels = [parse_channel(c) for c in raw.split(",") if c]
        except ValueError as exc:
            raise HttpError(400, f"channels: {exc}") from None
    since: dict[str, int] = {}
    raw_since = request.param("since")
    if raw_since:
        for part in raw_since.split(","):
            stream, sep, offset = part.partition(":")
            if not sep or stream not in EVENT_STREAMS or not offset.isdigit():
                raise HttpError(
                    400, f"since: expected <topics|groups>:<offset>[,...], got {part!r}"
                )
            since[stream] = int(offset)
    return channels, since, request.param("epoch")


@asynccontextmanager
async def open_server(
    settings: Settings | None = None,
    *,
    source: MetricsSource | None = None,
    hub: Hub | None = None,
) -> AsyncIterator[Server]:
    """Run a takhin-ws server for the duration of the ``async with`` block.

    *source* defaults to the one *settings* names (synthetic or prometheus).
    Raises ``OSError`` if the address cannot be bound.
    """
    settings = settings or Settings()
    if hub is None:  # not `hub or ...`: a Hub with no clients yet is falsy (len 0)
        hub = Hub(
            max_clients=settings.max_clients,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
        )
    listener = _bind(settings.host, settings.port)
    try:
        async with trio.open_nursery() as nursery:
            owned_source = None
            if source is None:
                owned_source = source = source_for(settings)
            cluster: RedisBus | None = None
            lease: MetricsLease | None = None
            if settings.redis_url is not None:
                from .cluster.bus import RedisBus  # optional dependency (coredis)
                from .cluster.lease import MetricsLease

                cluster = RedisBus.for_settings(settings, hub)
                lease = MetricsLease.for_settings(settings)
                await nursery.start(cluster.run)
                await nursery.start(lease.run)
            ingress = EventIngress(cluster or hub)
            producer = MetricsProducer(
                hub,
                source,
                interval=settings.interval,
                collect_timeout=settings.collect_timeout,
                unready_after=settings.unready_after,
                on_event=ingress.detected_nowait,
                detect_changes=settings.detect_changes,
                publish=None if cluster is None else cluster.metrics_publisher(ingress),
                should_collect=None if lease is None else lease.hold,
            )
            server = Server(settings, hub, producer, listener, ingress, bus=cluster)
            await nursery.start(producer.run)
            nursery.start_soon(server._heartbeat)
            nursery.start_soon(server._accept_loop, nursery)
            try:
                yield server
            finally:
                with trio.CancelScope(shield=True):
                    await server.shutdown()
                    if lease is not None:
                        await lease.aclose()
                    if owned_source is not None:
                        await close_source(owned_source)
                nursery.cancel_scope.cancel()
    finally:
        listener.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from exc
    return sock
