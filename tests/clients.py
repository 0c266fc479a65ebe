"""Test clients for the server tests: a hand-driven wsproto client on a raw socket, a
plain-HTTP helper, and a bridge to the ``websockets`` package (asyncio, in a thread).

The raw client exists for the misbehaving peers a real library will not play: one
that never answers pings, one that stops reading, one that sends a broken handshake.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import trio
import websockets.asyncio.client
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, wrap_client_stream
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from takhin_ws import WS_PATH

T = TypeVar("T")


def loads(raw: str | bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict), value
    return value


#: Bound on any single wait for the server in these tests: a broken server fails the
#: test instead of hanging it.
WAIT: float = 10.0


async def recv_json(ws: WebSocketConnection, *, timeout: float = WAIT) -> dict[str, Any]:
    """The next message of a trio-websocket client, parsed."""
    with trio.fail_after(timeout):
        return loads(await ws.get_message())


async def until_closed(ws: WebSocketConnection, *, timeout: float = WAIT) -> CloseReason | None:
    """Read (and drop) messages until the connection closes; its close reason."""
    with trio.fail_after(timeout):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            return exc.reason


async def send_json(ws: WebSocketConnection, obj: object) -> None:
    await ws.send_message(orjson.dumps(obj).decode())


@asynccontextmanager
async def ws_connect(
    url: str,
    *,
    subprotocols: list[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client on a TCP stream this helper owns and always closes.

    (``open_websocket_url`` leaves its socket open when the server closes first or
    rejects the handshake, which ``filterwarnings = error`` turns into a failure.)
    A rejected handshake raises ``trio_websocket.ConnectionRejected``; any single
    exception comes out bare, not inside an exception group. The handshake is bounded
    by :data:`WAIT`: trio-websocket waits for ever when the server closes the
    connection without answering (a crashed handler), so such a test fails instead
    of hanging (``make mutation``'s forced-failure run hung on it).
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    try:
        async with stream, trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"{parts.hostname}:{parts.port}",
                    resource,
                    subprotocols=subprotocols,
                    extra_headers=extra_headers,
                )
            try:
                yield ws
            finally:
                with trio.move_on_after(5):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


class Rejected(Exception):
    """The server answered the upgrade with a plain HTTP response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


class RawClient:
    """A WebSocket client on a raw socket, driven by hand with wsproto.

    It answers nothing on its own (no pongs) unless ``auto_pong`` is set, and reads
    only when asked to, so it can play a silent or a stalled peer.
    """

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.auto_pong = False
        self.pings = 0
        self.close: CloseConnection | None = None
        self.eof = False
        self._events: list[Event] = []
        self._text: list[str] = []

    async def _fill(self) -> bool:
        """Read once; False at EOF (or a reset)."""
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.eof = True  # (not fed to wsproto: it would invent a 1006 Close)
        else:
            self.ws.receive_data(data)
        self._events.extend(self.ws.events())
        return bool(data)

    async def next_event(self) -> Event | None:
        """The next wsproto event (text messages reassembled); None at EOF."""
        while True:
            while self._events:
                event = self._events.pop(0)
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if not event.message_finished:
                        continue
                    text, self._text = "".join(self._text), []
                    return TextMessage(data=text)
                if isinstance(event, Ping):
                    self.pings += 1
                    if self.auto_pong:
                        await self.stream.send_all(self.ws.send(event.response()))
                if isinstance(event, CloseConnection):
                    self.close = event
                return event
            if self.eof or not await self._fill():
                if self._events:
                    continue
                return None

    async def message(self, *, timeout: float = WAIT) -> dict[str, Any]:
        """The next JSON message (pings are skipped); fails on close or EOF."""
        with trio.fail_after(timeout):
            while True:
                event = await self.next_event()
                if isinstance(event, Message):
                    assert isinstance(event.data, str)
                    return loads(event.data)
                if event is None or isinstance(event, CloseConnection):
                    raise AssertionError(f"connection ended ({event!r}) while a message was due")

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def wait_closed(self, *, timeout: float = 3 * WAIT) -> CloseConnection | None:
        """Read until the server ends the connection; the Close frame if it sent one."""
        with trio.fail_after(timeout):
            while await self.next_event() is not None:
                pass
        return self.close


async def open_raw_stream(port: int, *, rcvbuf: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@asynccontextmanager
async def raw_client(
    port: int,
    target: str = WS_PATH,
    *,
    rcvbuf: int | None = None,
    subprotocols: list[str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[RawClient]:
    """Connect, do the opening handshake by hand, yield the client; raise
    :class:`Rejected` if the server answers with a plain HTTP response."""
    stream = await open_raw_stream(port, rcvbuf=rcvbuf)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=f"127.0.0.1:{port}",
            target=target,
            subprotocols=subprotocols or [],
            extra_headers=headers or [],
        )
        await stream.send_all(ws.send(request))
        client = RawClient(stream, ws)
        reject: RejectConnection | None = None
        body = b""
        while True:
            with trio.fail_after(WAIT):
                event = await client.next_event()
            if isinstance(event, AcceptConnection):
                break
            if isinstance(event, RejectConnection):
                reject = event
                if not event.has_body:
                    break
            elif isinstance(event, RejectData):
                body += event.data
                if event.body_finished:
                    break
            else:
                raise AssertionError(f"unexpected event during the handshake: {event!r}")
        if reject is not None:
            names = {k.decode().lower(): v.decode() for k, v in reject.headers}
            raise Rejected(reject.status_code, names, body)
        yield client


async def http_exchange(port: int, request: bytes) -> bytes:
    """Send raw *request* bytes, return everything the server answers until it closes."""
    stream = await open_raw_stream(port)
    async with stream:
        await stream.send_all(request)
        with trio.fail_after(WAIT):
            return await read_to_eof(stream)


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while True:
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    return int(line.split()[1])


async def in_asyncio(factory: Callable[[], Awaitable[T]], *, timeout: float = 3 * WAIT) -> T:
    """Run an asyncio coroutine (for the ``websockets`` client) in a worker thread,
    bounded by *timeout* (a thread cannot be cancelled from Trio)."""

    def run() -> T:
        async def main() -> T:
            async with asyncio.timeout(timeout):
                return await factory()

        return asyncio.run(main())

    return await trio.to_thread.run_sync(run)


async def websockets_close_code(url: str) -> tuple[int, str | None]:
    """Connect with the ``websockets`` package's client, check the first frame is
    ``welcome``, read until the server closes; the Close frame's code and reason."""

    async def session() -> tuple[int, str | None]:
        async with websockets.asyncio.client.connect(url, open_timeout=10) as ws:
            assert loads(await ws.recv())["type"] == "welcome"
            try:
                async with asyncio.timeout(20):
                    while True:
                        await ws.recv()
            except WsConnectionClosed as exc:
                rcvd = exc.rcvd
        if rcvd is None:
            raise AssertionError("no Close frame received")
        return rcvd.code, rcvd.reason

    return await in_asyncio(session)
