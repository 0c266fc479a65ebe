"""The listening sockets and their accept loops, with a separate nursery for handlers.

Trio's own listeners hide the stdlib socket, and the write-through fast path needs it,
so the accept loop is ours. It follows ``trio.serve_listeners``: :meth:`Listener.serve`
accepts on every bound address and starts each connection's handler in a
*handler nursery* the caller owns, so accepting can stop (:meth:`Listener.close`)
while the handlers finish.

:func:`bind` resolves the host with ``trio.socket.getaddrinfo`` and listens on every
address it returns (``localhost`` is 127.0.0.1 and ::1); with port 0 the first
address picks a free port and the others use the same one.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from .._exceptions import ListenError

__all__ = ["ACCEPT_BATCH", "LISTEN_BACKLOG", "Listener", "bind"]

log = logging.getLogger("takhin_ws.server")

LISTEN_BACKLOG: Final = 4096
#: Connections accepted in one turn of the event loop at most: a crowd arriving at
#: once (a reconnect storm) is taken in turns, so its handshakes share the loop with
#: deliveries and pongs instead of holding it for thousands of handshakes in a row.
ACCEPT_BATCH: Final = 32
#: The name of every connection's task (one string, not one per connection).
HANDLER_NAME: Final = "takhin_ws.connection"
#: Pause after an accept that failed for lack of resources (file descriptors, memory).
ACCEPT_RETRY_DELAY: Final = 0.1
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: An address of a family this host cannot use is skipped (as ``trio.open_tcp_listeners``
#: does), as long as another one could be bound.
_UNSUPPORTED_ERRNOS: Final = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})

Handler = Callable[[socket.socket], Awaitable[None]]


class Listener:
    """Non-blocking stdlib listening sockets (one per address)."""

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        if not sockets:
            raise ValueError("a listener needs at least one socket")
        self.sockets = tuple(sockets)
        self._closed = False
        self._port: int = self.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        """The port every socket listens on (still known once closed)."""
        return self._port

    @property
    def closed(self) -> bool:
        return self._closed

    async def serve(
        self,
        handler: Handler,
        handler_nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until :meth:`close`; each connection runs ``handler(sock)`` in
        *handler_nursery* (the handler owns and closes the socket)."""
        async with trio.open_nursery() as nursery:
            for sock in self.sockets:
                nursery.start_soon(self._accept_loop, sock, handler, handler_nursery)
            task_status.started()

    async def _accept_loop(
        self, listener: socket.socket, handler: Handler, handler_nursery: trio.Nursery
    ) -> None:
        accepted = 0
        while not self._closed:
            if accepted >= ACCEPT_BATCH:  # let the connections taken, and everyone else, run
                accepted = 0
                await trio.lowlevel.checkpoint()
                continue
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                accepted = 0
                try:
                    await trio.lowlevel.wait_readable(listener)
                except trio.ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    log.warning(
                        "accept failed (%s); retrying in %g s", exc.strerror, ACCEPT_RETRY_DELAY
                    )
                    await trio.sleep(ACCEPT_RETRY_DELAY)
                    continue
                if self._closed or listener.fileno() == -1:
                    return
                raise
            handler_nursery.start_soon(handler, sock, name=HANDLER_NAME)
            accepted += 1

    def close(self) -> None:
        """Stop accepting (idempotent); running handlers are not touched."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
            sock.close()


async def bind(host: str, port: int, *, backlog: int = LISTEN_BACKLOG) -> Listener:
    """Listen on every address *host* resolves to; raise :class:`ListenError`."""
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    unsupported: OSError | None = None
    try:
        for family, kind, proto, _, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            if sockets and port == 0:  # every address on the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sockets.append(_listen(family, kind, proto, address, backlog))
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED_ERRNOS:
                    raise
                unsupported = exc
        if not sockets:
            raise unsupported or OSError(errno.EADDRNOTAVAIL, "no address to listen on")
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from exc
    return Listener(sockets)


def _listen(
    family: int, kind: int, proto: int, address: tuple[object, ...], backlog: int
) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # so "::" and "0.0.0.0" can both be bound
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
