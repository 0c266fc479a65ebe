"""The project's Autobahn-style suite: the cases of the Autobahn testsuite's sections
1-7, 9, 12 and 13 that apply to a server receiving client frames, played over a real
socket by a raw client (``rawws``), and judged as Autobahn judges them.

The Autobahn client (Python 2) cannot run here, and this server does not echo: a
client message gets one answer instead (``pong`` for a JSON ``ping``, an ``error`` for
any other text), which stands in for the echo. Each case sends the same frames,
chopped the same way, as its Autobahn namesake; where the suite was scaled down to
stay fast (message counts, the 9.x sizes), the case says so.

Results, as Autobahn's:

- ``OK``: the expected answers (pongs with the ping's payload, one answer per
  message) and the expected close: a clean close handshake the client started, or a
  Close frame from the server with an expected code, then the end of the connection;
- ``NON-STRICT``: the connection was failed, but late (after bytes that were not
  needed to see the violation: not "fail fast"), or without the answers owed for the
  messages before the violation, or without a Close frame (Autobahn accepts a dropped
  TCP connection there; this suite does not);
- ``INFORMATIONAL``: behaviour the spec leaves open, or documented here: a binary
  message is refused with 1003 (the protocol is JSON in text frames), a Close code
  outside the registered ranges may be refused or echoed;
- ``FAILED``: anything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Final

import trio
from attrs import field, frozen

import rawws
from clients import WAIT
from rawws import CLOSE, PONG, Frame, RawWs

OK: Final = "OK"
NON_STRICT: Final = "NON-STRICT"
INFORMATIONAL: Final = "INFORMATIONAL"
FAILED: Final = "FAILED"
#: Results the suite accepts.
PASSING: Final = frozenset({OK, INFORMATIONAL})

#: How long a case waits for the server to fail a connection before it sends the rest
#: of a message (only a server that does not fail fast ever waits this long).
FAIL_FAST_WAIT: Final = 2.0

#: One thing the client saw: ``("pong", payload)`` for a Pong frame, ``("answer",
#: kind)`` for a message (its JSON type, or ``error:<code>``).
Event = tuple[str, object]

#: What a case sends: bytes in one go, or frames one send each.
Data = bytes | Sequence[bytes]

PONG_OF_PING: Final[Event] = ("answer", "pong")
INVALID_JSON: Final[Event] = ("answer", "error:invalid_json")


@frozen
class Result:
    case: str
    result: str
    detail: str = ""


def event_of(frame: Frame) -> Event:
    if frame.opcode == PONG:
        return ("pong", frame.payload)
    message = frame.json()
    kind = message["type"]
    if kind == "error":
        return ("answer", f"error:{message['data']['code']}")
    return ("answer", kind)


def answer(message: bytes) -> Event:
    """The answer owed for one text *message* (the echo's stand-in)."""
    return PONG_OF_PING if message.startswith(b'{"type":"ping"') else INVALID_JSON


class Conn:
    """One case's connection: what was sent, what came back."""

    def __init__(self, ws: RawWs) -> None:
        self.ws = ws
        self.events: list[Event] = []
        self.close: Frame | None = None
        self.cut = False  # the server closed before all was sent

    async def send(self, data: Data, chop: int | None = None) -> None:
        """Send *data* whole, or in chops of *chop* octets; a list of frames is sent
        frame by frame (each its own ``send``, as Autobahn's "frame-wise")."""
        try:
            for part in [data] if isinstance(data, bytes) else data:
                if chop is None:
                    await self.ws.send(part)
                else:
                    await self.ws.send_chopped(part, chop)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.cut = True  # the server ended the connection first: read what it said

    async def events_until(self, count: int) -> bool:
        """Read until *count* events arrived (True), or a Close frame / EOF (False)."""
        while len(self.events) < count:
            got = await self.ws.frame()
            if got is None:
                return False
            if got.opcode == CLOSE:
                self.close = got
                return False
            self.events.append(event_of(got))
        return True

    async def until_end(self, *, timeout: float = 3 * WAIT) -> bool:
        """Read to the end of the connection; whether the server sent a Close frame."""
        with trio.fail_after(timeout):
            while (got := await self.ws.frame(timeout=timeout)) is not None:
                if got.opcode == CLOSE:
                    self.close = got
                else:
                    self.events.append(event_of(got))
        return self.close is not None

    async def fails_within(self, seconds: float) -> bool:
        """Whether the server ends the connection within *seconds* (read meanwhile)."""
        with trio.move_on_after(seconds):
            await self.until_end()
            return True
        return False


Body = Callable[[Conn], Awaitable[Result]]


@frozen
class Case:
    """One Autobahn case: its number, what it does, how to play it."""

    id: str
    description: str
    body: Body = field(repr=False)
    #: permessage-deflate offers (``Sec-WebSocket-Extensions`` values), if any
    offers: tuple[str, ...] = ()


async def play(port: int, case: Case) -> Result:
    """Connect (with the case's offers), skip ``welcome``, play the case."""
    headers = [f"Sec-WebSocket-Extensions: {', '.join(case.offers)}"] if case.offers else []
    async with AsyncExitStack() as stack:
        ws = await stack.enter_async_context(rawws.connect(port, "?channels=", *headers))
        welcome = await ws.message()
        if welcome["type"] != "welcome":
            return Result(case.id, FAILED, f"first message {welcome['type']}, not welcome")
        with trio.fail_after(6 * WAIT):
            return await case.body(Conn(ws))
    raise AssertionError("unreachable")  # pragma: no cover


# --- the shapes of Autobahn's expectations ---


def close_code(frame: Frame | None) -> int | None:
    return None if frame is None else frame.close_code


async def echoed(
    c: Conn, data: Data, expected: Sequence[Event], *, chop: int | None = None
) -> str | None:
    """Send *data*; None if exactly *expected* came back, else what went wrong."""
    await c.send(data, chop)
    if not await c.events_until(len(expected)):
        return f"closed ({close_code(c.close)}) after {c.events}, expected {list(expected)}"
    if c.events != list(expected):
        return f"got {c.events}, expected {list(expected)}"
    return None


async def closes_cleanly(c: Conn, code: int | None = 1000, reason: bytes = b"") -> str | None:
    """The client's close handshake: the server answers with Close (the same code, or
    1000; nothing or 1000 to an empty Close) and ends the connection. None if so."""
    await c.send(rawws.close(code, reason))
    if not await c.until_end():
        return "no Close frame in answer to ours"
    answered = close_code(c.close)
    if answered not in (code, 1000):
        return f"answered our Close {code} with {answered}"
    return None


def judge(case_id: str, *problems: str | None) -> Result:
    found = [p for p in problems if p]
    return Result(case_id, FAILED if found else OK, "; ".join(found))


def echo(case_id: str, data: Data, expected: Sequence[Event], chop: int | None = None) -> Body:
    """Autobahn's "echo": the answers owed, then a clean close the client starts."""

    async def body(c: Conn) -> Result:
        problem = await echoed(c, data, expected, chop=chop)
        return judge(case_id, problem, None if problem else await closes_cleanly(c))

    return body


def fails(
    case_id: str,
    data: Data,
    before: Sequence[Event] = (),
    codes: tuple[int, ...] = (1002,),
    chop: int | None = None,
    informational: bool = False,
) -> Body:
    """Autobahn's "fail the connection": the answers owed for what came before the
    bad frame, then a Close frame with one of *codes*, then the end."""

    async def body(c: Conn) -> Result:
        await c.send(data, chop)
        closed = await c.until_end()
        if not closed:
            return Result(case_id, NON_STRICT, f"no Close frame (events {c.events})")
        code = close_code(c.close)
        if code not in codes:
            result = INFORMATIONAL if informational else FAILED
            return Result(case_id, result, f"closed with {code}, expected one of {codes}")
        if c.events != list(before):
            missing = list(before[: len(c.events)]) == c.events
            return Result(
                case_id, NON_STRICT if missing else FAILED, f"got {c.events}, owed {before}"
            )
        return Result(case_id, INFORMATIONAL if informational else OK)

    return body


def binary_refused(case_id: str, data: Data, chop: int | None = None) -> Body:
    """A binary message: refused with 1003 (documented: the protocol is JSON text)."""
    return fails(case_id, data, codes=(1003,), chop=chop, informational=True)


async def fails_fast(
    c: Conn, case_id: str, parts: Sequence[bytes], bad: int, code: int = 1007
) -> Result:
    """Autobahn 6.4: *parts* sent one by one; the connection must fail on part *bad*
    (OK), at the latest on the last one (NON-STRICT)."""
    for index, part in enumerate(parts):
        await c.send(part)
        if index < bad:
            continue
        if await c.fails_within(FAIL_FAST_WAIT):
            late = index > bad
            result = NON_STRICT if late else OK
            if close_code(c.close) != code:
                result = FAILED
            return Result(
                case_id, result, f"failed on part {index + 1}, code {close_code(c.close)}"
            )
    return Result(case_id, FAILED, "not failed at all")
