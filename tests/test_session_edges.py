"""The session loop's edges (net/session.py): the answer to the peer's Close, the
close handshake the server starts, closes asked for from outside. Each test failed on
a mutant ``make mutation`` left alive (issue 25).

Over real sockets with independent clients (the ``websockets`` package, a raw wsproto
client) where the behaviour lives on the wire; a session on one end of a socket pair
where the case cannot be reached from outside on cue (a close asked for while the
connection is already ending).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import websockets.asyncio.client
from wsproto.events import CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason, FrameProtocol

from clients import WAIT, RawClient, in_asyncio, loads, raw_client
from conftest import ServerFactory, make_settings, wait_until
from takhin_ws import WS_PATH, Server
from takhin_ws.core.access.auth import AUTH_KINDS
from takhin_ws.core.hub import Hub
from takhin_ws.core.session import Close
from takhin_ws.net.inboundio import InboundReader
from takhin_ws.net.session import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    PEER_VANISHED,
    Ending,
    Session,
    endings_logged,
    log_ending,
)
from takhin_ws.net.transport import SocketTransport
from takhin_ws.wire.websocket.inbound import CLOSE_UNSUPPORTED_DATA, InboundFilter

pytestmark = pytest.mark.slow

QUIET = WS_PATH + "?channels="
TOO_MANY = "too many invalid messages"
SHUTTING_DOWN = "server shutting down"
PING = '{"type":"ping"}'
#: a write deadline that ends a wait for a Close that never comes soon (seconds)
SHORT = 0.5
#: the command rate of the throttling test: the second command waits 1/this seconds
COMMANDS_PER_S = 4.0


def frames(
    *, texts: tuple[str, ...] = (), ping: bytes | None = None, binary: bytes | None = None
) -> bytes:
    """Masked frames as a client sends them (wsproto's frame layer: it sends them in
    any state, where a client that has the server's Close would refuse to)."""
    proto = FrameProtocol(client=True, extensions=[])
    out = b"".join(bytes(proto.send_data(text, True)) for text in texts)
    out += b"" if ping is None else bytes(proto.ping(ping))
    return out + (b"" if binary is None else bytes(proto.send_data(binary, True)))


async def ended(server: Server) -> None:
    """Until every session has ended (and been unregistered)."""
    with trio.fail_after(WAIT):
        await wait_until(lambda: not server.sessions)


# --- the peer closes first: the server answers with the peer's code and reason ---


@pytest.mark.parametrize(("code", "reason"), [(4000, "bye"), (1000, "")])
async def test_the_peers_close_is_answered_with_its_code_and_reason(
    server: Server, code: int, reason: str
) -> None:
    url = server.ws_url + "?channels="

    async def session() -> tuple[int, str] | None:
        async with websockets.asyncio.client.connect(url, open_timeout=WAIT) as ws:
            assert loads(await ws.recv())["type"] == "welcome"
            await ws.close(code, reason)
            answer = ws.protocol.close_rcvd  # the server's Close frame, if one came
            return None if answer is None else (answer.code, answer.reason)

    assert await in_asyncio(session) == (code, reason)


async def test_a_close_without_a_status_code_is_answered_without_one(server: Server) -> None:
    async with raw_client(server.port, QUIET) as client:
        assert (await client.message())["type"] == "welcome"
        # an empty Close frame (RFC 6455 7.1.5: it reads as 1005, which is never sent)
        await client.stream.send_all(client.ws.send(CloseConnection(CloseReason.NO_STATUS_RCVD)))
        answer = await client.wait_closed()
    assert answer is not None
    assert (answer.code, answer.reason or "") == (CloseReason.NO_STATUS_RCVD, "")


async def test_a_peer_that_leaves_without_a_close_frame_is_logged_as_vanished(
    server: Server,
) -> None:
    async with raw_client(server.port, QUIET) as client:
        assert (await client.message())["type"] == "welcome"  # nothing unread: a FIN
        (session,) = server.sessions
        await client.stream.aclose()
    await ended(server)
    assert session.ending() == Ending("dropped", CLOSE_ABNORMAL, PEER_VANISHED)


async def test_a_peer_that_resets_the_connection_is_logged_as_lost_with_the_error(
    server: Server,
) -> None:
    async with raw_client(server.port, QUIET) as client:
        assert (await client.message())["type"] == "welcome"
        (session,) = server.sessions
        # closing with a zero linger time sends a reset, not a FIN
        client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.stream.aclose()
    await ended(server)
    ending = session.ending()
    assert (ending.by, ending.code) == ("dropped", CLOSE_ABNORMAL)
    lost, _, error = ending.reason.partition(": ")
    assert (lost, bool(error)) == ("connection lost", True)  # with the socket's error


async def test_a_protocol_violation_ends_as_the_close_the_server_sent(server: Server) -> None:
    async with raw_client(server.port, QUIET) as client:
        assert (await client.message())["type"] == "welcome"
        (session,) = server.sessions
        await client.stream.send_all(frames(binary=b"{}"))  # refused: JSON is text
        close = await close_of(client)
        assert close.code == CLOSE_UNSUPPORTED_DATA
        assert close.reason
    await ended(server)
    assert session.ending() == Ending("server", close.code, close.reason)


async def test_a_websocket_ping_is_answered_with_its_payload_and_the_session_goes_on(
    server: Server,
) -> None:
    url = server.ws_url + "?channels="

    async def session() -> str:
        async with websockets.asyncio.client.connect(url, open_timeout=WAIT) as ws:
            assert loads(await ws.recv())["type"] == "welcome"
            # the waiter resolves on the pong that carries this payload, no other
            pong = await ws.ping(b"are you there")
            async with asyncio.timeout(WAIT):
                await pong
            await ws.send(PING)
            answer: str = loads(await ws.recv())["type"]
            return answer

    assert await in_asyncio(session) == "pong"


@pytest.mark.parametrize(
    ("settings", "headers", "kind"),
    [
        ({}, [], "none"),
        ({"api_keys": ("s3cret",)}, [(b"Authorization", b"Bearer s3cret")], "api_key"),
    ],
)
async def test_each_session_is_counted_under_how_it_authenticated(
    make_server: ServerFactory,
    settings: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
    kind: str,
) -> None:
    async with (
        make_server(**settings) as server,
        raw_client(server.port, QUIET, headers=headers) as client,
    ):
        assert (await client.message())["type"] == "welcome"
        counted = server.statistics().clients_by_auth
    assert counted == {k: int(k == kind) for k in AUTH_KINDS}


# --- the server closes first: it reads until the peer's Close (RFC 6455 7.1.1) ---


async def close_of(client: RawClient) -> CloseConnection:
    """Read until the server's Close frame (the messages before it are dropped)."""
    with trio.fail_after(WAIT):
        while not isinstance(event := await client.next_event(), CloseConnection):
            assert event is not None, "the connection ended without a Close frame"
    return event


async def test_the_server_reads_the_peers_close_reply_then_drops_the_connection(
    make_server: ServerFactory,
) -> None:
    async with make_server(bad_message_limit=0) as server:
        async with raw_client(server.port, QUIET) as client:
            assert (await client.message())["type"] == "welcome"
            (session,) = server.sessions
            await client.send_text("nope")  # one invalid message too many: 1008
            assert (await close_of(client)).code == CLOSE_POLICY
            await client.stream.send_all(client.ws.send(CloseConnection(4321, "ok")))
            await client.wait_closed()
        await ended(server)
    assert session.peer_closed == Close(4321, "ok")  # the reply was read
    assert session.ending() == Ending("server", CLOSE_POLICY, TOO_MANY)
    assert session.transport.abort_reason == TOO_MANY  # then dropped by the handshake's end


async def test_a_peer_that_leaves_without_a_close_reply_ends_the_handshake(
    make_server: ServerFactory,
) -> None:
    async with make_server(bad_message_limit=0) as server:
        async with raw_client(server.port, QUIET) as client:
            assert (await client.message())["type"] == "welcome"
            (session,) = server.sessions
            await client.send_text("nope")
            assert (await close_of(client)).code == CLOSE_POLICY
            await client.stream.aclose()  # no Close reply: the TCP connection just ends
        await ended(server)
    assert session.peer_closed is None
    assert session.ending() == Ending("server", CLOSE_POLICY, TOO_MANY)
    assert session.transport.abort_reason == TOO_MANY  # the handshake's end dropped it


async def test_a_close_that_crosses_the_servers_own_ends_the_handshake_at_once(
    make_server: ServerFactory,
) -> None:
    # the message that makes the server close and the peer's own Close in one write:
    # the server reads both at once, and the Close it read is its answer (it used to
    # wait for another one until the write deadline, then drop the connection)
    async with make_server(bad_message_limit=0, write_timeout=SHORT) as server:
        async with raw_client(server.port, QUIET) as client:
            assert (await client.message())["type"] == "welcome"
            (session,) = server.sessions
            both = client.ws.send(TextMessage("nope")) + client.ws.send(
                CloseConnection(4000, "leaving")
            )
            await client.stream.send_all(both)
            assert (await close_of(client)).code == CLOSE_POLICY
            assert await client.wait_closed(timeout=WAIT) is not None
        await ended(server)
    assert session.peer_closed == Close(4000, "leaving")
    assert session.ending() == Ending("server", CLOSE_POLICY, TOO_MANY)


# --- a close asked for from outside (shutdown, token expiry) ---


async def test_a_peer_that_never_answers_the_shutdown_close_is_dropped_by_its_closer(
    make_server: ServerFactory,
) -> None:
    # the closer's deadline is the write deadline, well inside the shutdown's own
    async with make_server(write_timeout=SHORT, shutdown_timeout=3 * WAIT) as server:
        async with raw_client(server.port, QUIET) as client:
            assert (await client.message())["type"] == "welcome"
            (session,) = server.sessions
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                assert (await close_of(client)).code == CLOSE_GOING_AWAY
                # never answered: the server drops the connection
                assert await client.wait_closed() is not None
        await ended(server)
    assert session.peer_closed is None
    assert session.ending() == Ending("server", CLOSE_GOING_AWAY, SHUTTING_DOWN)
    assert session.transport.abort_reason == SHUTTING_DOWN


async def test_after_the_shutdown_close_only_the_peers_close_counts(
    make_server: ServerFactory,
) -> None:
    async with make_server(shutdown_timeout=3 * WAIT) as server:
        async with raw_client(server.port, QUIET) as client:
            assert (await client.message())["type"] == "welcome"
            (session,) = server.sessions
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                assert (await close_of(client)).code == CLOSE_GOING_AWAY
                # a command and a ping that crossed the Close: neither is answered,
                # and the reply after them is read
                late = frames(texts=(PING,), ping=b"late")
                reply = client.ws.send(CloseConnection(4321, "ok"))
                await client.stream.send_all(late + reply)
                assert await client.next_event() is None  # nothing more: the end
        await ended(server)
    assert session.peer_closed == Close(4321, "ok")
    assert session.ending() == Ending("server", CLOSE_GOING_AWAY, SHUTTING_DOWN)


async def test_a_throttled_message_is_not_answered_once_the_shutdown_closed(
    make_server: ServerFactory,
) -> None:
    # one command at once, then one per 1/COMMANDS_PER_S: the second one waits
    async with make_server(
        command_burst=1, command_rate=COMMANDS_PER_S, shutdown_timeout=3 * WAIT
    ) as server:
        async with raw_client(server.port, QUIET) as client:
            assert (await client.message())["type"] == "welcome"
            (session,) = server.sessions
            await client.stream.send_all(frames(texts=(PING, PING)))  # read at once
            # the first pong is written in the step that starts the second's wait
            assert (await client.message())["type"] == "pong"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                assert (await close_of(client)).code == CLOSE_GOING_AWAY
                await client.stream.send_all(client.ws.send(CloseConnection(4321, "ok")))
                assert await client.next_event() is None  # no pong after the Close
        await ended(server)
    assert session.peer_closed == Close(4321, "ok")  # the loop read on after its wait


@asynccontextmanager
async def lone_session() -> AsyncIterator[tuple[Session, trio.Nursery]]:
    """A session on one end of a socket pair, in a nursery of its own."""
    ours, peer = socket.socketpair()
    with ours, peer:
        async with trio.open_nursery() as nursery:
            settings = make_settings()
            hub = Hub()
            transport = SocketTransport(ours, nursery)
            client = hub.add_client(transport, [])
            inbound = InboundReader(
                transport, InboundFilter(max_message_size=settings.max_message_size, deflate=False)
            )
            session = Session(
                hub, settings, transport, client, nursery=nursery, inbound=inbound, auth="none"
            )
            try:
                yield session, nursery
            finally:
                transport.abort("test over")


async def test_close_leaves_a_connection_that_is_already_ending_to_its_own_end() -> None:
    async with lone_session() as (session, nursery):
        session.transport.abort("heartbeat timeout: no pong within 1 s")
        session.close(CLOSE_GOING_AWAY, SHUTTING_DOWN)
        assert session.ending() == Ending(
            "dropped", CLOSE_ABNORMAL, "heartbeat timeout: no pong within 1 s"
        )
        assert not nursery.child_tasks  # no closer waits on it


# --- the one log line of a session's end (docs/operations.md quotes it) ---


@pytest.mark.parametrize(
    ("ending", "said"),
    [
        (Ending("server", 1001, SHUTTING_DOWN), "closed by the server: 1001 server shutting down"),
        (Ending("client", 1000, ""), "closed by the client: 1000 (no reason)"),
        (
            Ending("dropped", CLOSE_ABNORMAL, "heartbeat timeout: no pong within 60 s"),
            "closed dropped: 1006 heartbeat timeout: no pong within 60 s",
        ),
    ],
)
def test_a_session_end_is_one_line_in_the_documented_words(
    caplog: pytest.LogCaptureFixture, ending: Ending, said: str
) -> None:
    caplog.set_level(logging.INFO, logger="takhin_ws.server")
    log_ending("c17", "127.0.0.1:50412", ending)
    (record,) = caplog.records
    assert record.getMessage() == f"client c17 (127.0.0.1:50412) {said}"
    fields = {k: getattr(record, k) for k in ("client_id", "remote", "closed_by")}
    assert fields == {"client_id": "c17", "remote": "127.0.0.1:50412", "closed_by": ending.by}
    assert (record.close_code, record.close_reason) == (ending.code, ending.reason)  # type: ignore[attr-defined]


def test_no_line_is_built_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="takhin_ws.server")
    assert not endings_logged()
    log_ending("c17", "127.0.0.1:50412", Ending("client", 1000, ""))
    assert caplog.records == []
