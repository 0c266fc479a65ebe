"""The listener: every address bound, handlers in the caller's nursery, accepting stops
while handlers finish."""

from __future__ import annotations

import socket

import pytest
import trio

from takhin_ws import ListenError
from takhin_ws.net.listener import ACCEPT_BATCH, bind


async def test_every_address_the_name_resolves_to_is_bound_on_one_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name with two addresses (127.0.0.1 and 127.0.0.2, both loopback on Linux):
    both are bound, on the port the first one picked, and both accept."""
    resolved: list[tuple[str, int]] = []

    async def getaddrinfo(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        resolved.append((host, port))
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),  # repeated
        ]

    monkeypatch.setattr(trio.socket, "getaddrinfo", getaddrinfo)
    listener = await bind("two.example", 0)
    try:
        assert resolved == [("two.example", 0)]
        names = [sock.getsockname() for sock in listener.sockets]
        assert names == [("127.0.0.1", listener.port), ("127.0.0.2", listener.port)]
        for sock in listener.sockets:
            with socket.create_connection(sock.getsockname(), timeout=5):
                pass  # the kernel completes the handshake on a listening socket
    finally:
        listener.close()


async def test_localhost_is_bound_on_every_address_it_resolves_to() -> None:
    expected = {
        (info[0], info[4][0])
        for info in await trio.socket.getaddrinfo(
            "localhost", 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    }
    listener = await bind("localhost", 0)
    try:
        got = {(sock.family, sock.getsockname()[0]) for sock in listener.sockets}
        assert got == expected
    finally:
        listener.close()


async def test_accepting_stops_while_a_handler_finishes() -> None:
    listener = await bind("127.0.0.1", 0)
    started = trio.Event()
    release = trio.Event()
    finished: list[bytes] = []

    async def handler(sock: socket.socket) -> None:
        with sock:
            started.set()
            await release.wait()
            sock.sendall(b"done")
            finished.append(b"done")

    with trio.fail_after(10):
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as services:
                await services.start(listener.serve, handler, handlers)
                client = await trio.open_tcp_stream("127.0.0.1", listener.port)
                await started.wait()
                listener.close()  # the accept loops end: serve returns...
            assert listener.closed
            with pytest.raises(OSError, match="connect"):  # ...nothing accepts any more
                await trio.open_tcp_stream("127.0.0.1", listener.port)
            release.set()  # ...while the handler still runs to its end
            async with client:
                assert await client.receive_some(16) == b"done"
    assert finished == [b"done"]


async def test_an_unknown_host_is_a_listen_error_and_an_os_error() -> None:
    with pytest.raises(ListenError, match=r"cannot listen on no-such-host\.invalid:0"):
        await bind("no-such-host.invalid", 0)


async def test_a_crowd_arriving_at_once_is_accepted_in_turns() -> None:
    """Connections waiting to be accepted are taken at most ACCEPT_BATCH per turn of
    the event loop, so a reconnect storm never keeps other tasks (deliveries, pongs)
    from running for thousands of handshakes. A task that counts the turns runs once
    per turn, before or after the handlers of that turn: handlers started in the same
    turn see at most two consecutive counts, handlers of four turns a wider range."""
    listener = await bind("127.0.0.1", 0)
    crowd = [
        socket.create_connection(("127.0.0.1", listener.port), timeout=5)
        for _ in range(4 * ACCEPT_BATCH)
    ]  # all complete, waiting in the listen queue before the first accept
    turns = 0
    seen: list[int] = []

    async def handler(sock: socket.socket) -> None:
        seen.append(turns)
        sock.close()

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(count_turns)
                await nursery.start(listener.serve, handler, nursery)
                while len(seen) < len(crowd):
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
    finally:
        listener.close()
        for sock in crowd:
            sock.close()
    assert len(seen) == len(crowd)
    assert max(seen) - min(seen) >= 2
