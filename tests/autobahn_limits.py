"""Autobahn sections 9 (limits and performance), 12 and 13 (permessage-deflate) as
cases of the project's suite (see ``autobahn``).

Scaled down to stay fast, and said so in each description: 9.3 and 9.4 fragment a
message of :data:`FRAGMENTED` bytes instead of 4 MiB; 9.7 sends :data:`ROUND_TRIPS`
messages instead of 1,000; 12.x and 13.x send :data:`COMPRESSED` messages per case
instead of 1,000. The other sizes and every fragmentation are Autobahn's. The text
of 12.x/13.x is a JSON ping padded with pseudo-random whitespace (answered with a pong
only if it inflates exactly), or, for 12.4, non-JSON text (answered with an error);
the binary data sets (12.2, 12.3, 12.5) and the binary cases of 9.x are refused with
1003, as every binary message (INFORMATIONAL).
"""

from __future__ import annotations

import random
from typing import Final

from autobahn import (
    FAILED,
    Case,
    Conn,
    Event,
    Result,
    answer,
    binary_refused,
    closes_cleanly,
    echo,
    echoed,
    judge,
)
from rawws import BINARY, CONTINUATION, RSV1, TEXT, deflate, frame

KIB: Final = 1024
MIB: Final = 1024 * KIB
ROUND_TRIPS: Final = 100
COMPRESSED: Final = 3
#: The message of 9.3 and 9.4 (Autobahn: 4 MiB): 16,384 frames of 64 bytes already.
FRAGMENTED: Final = 1024 * 1024
#: Autobahn 12.x/13.x: (message size, auto-fragment size; 0 = one frame).
MESSAGE_SIZES: Final = (
    (16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0), (32768, 0),
    (65536, 0), (131072, 0), (8192, 256), (16384, 256), (32768, 256), (65536, 256),
    (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768),
)  # fmt: skip
PING_HEAD: Final = b'{"type":"ping"'
#: Every byte to one of JSON's four whitespace characters.
WHITESPACE: Final = bytes(b" \t\n\r"[byte % 4] for byte in range(256))


def varied_ping(size: int, seed: int) -> bytes:
    """A JSON ping of *size* bytes padded with pseudo-random whitespace (a text that
    compresses like text, about 4:1, not a thousandfold)."""
    pad = random.Random(seed).randbytes(size - len(PING_HEAD) - 1).translate(WHITESPACE)
    return PING_HEAD + pad + b"}"


def html_like(size: int, seed: int) -> bytes:
    words = [b"<p>", b"</p>", b"<div class=x>", b"</div>", b"takhin", b"topic", b"lag", b" "]
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size])


def fragmented(opcode: int, payload: bytes, size: int, *, rsv: int = 0) -> bytes:
    """*payload* as one message in frames of *size* bytes (0: one frame)."""
    if not size or len(payload) <= size:
        return frame(opcode, payload, rsv=rsv)
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    out = [frame(opcode, parts[0], fin=False, rsv=rsv)]
    out += [frame(CONTINUATION, p, fin=i == len(parts) - 1) for i, p in enumerate(parts) if i]
    return b"".join(out)


def section_9() -> list[Case]:
    cases = []
    sizes = (64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB, 16 * MIB)
    for i, size in enumerate(sizes, start=1):
        message = varied_ping(size, i)
        cases.append(
            Case(
                f"9.1.{i}",
                f"text message of {size} bytes",
                echo(f"9.1.{i}", frame(TEXT, message), [answer(message)]),
            )
        )
        cases.append(
            Case(
                f"9.2.{i}",
                f"binary message of {size} bytes",
                binary_refused(f"9.2.{i}", frame(BINARY, b"\xfe" * size)),
            )
        )
    big = varied_ping(FRAGMENTED, 3)
    for i, size in enumerate(
        (64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB), start=1
    ):
        cases.append(
            Case(
                f"9.3.{i}",
                f"1 MiB (Autobahn: 4 MiB) text message in fragments of {size}",
                echo(f"9.3.{i}", fragmented(TEXT, big, size), [answer(big)]),
            )
        )
        cases.append(
            Case(
                f"9.4.{i}",
                f"1 MiB (Autobahn: 4 MiB) binary message in fragments of {size}",
                binary_refused(f"9.4.{i}", fragmented(BINARY, b"\xfe" * FRAGMENTED, size)),
            )
        )
    one = varied_ping(MIB, 5)
    for i, chop in enumerate((64, 128, 256, 512, 1024, 2048), start=1):
        cases.append(
            Case(
                f"9.5.{i}",
                f"1 MiB text message in chops of {chop}",
                echo(f"9.5.{i}", frame(TEXT, one), [answer(one)], chop=chop),
            )
        )
        cases.append(
            Case(
                f"9.6.{i}",
                f"1 MiB binary message in chops of {chop}",
                binary_refused(f"9.6.{i}", frame(BINARY, b"\xfe" * MIB), chop=chop),
            )
        )
    for i, size in enumerate((0, 16, 64, 256, 1024, 4096), start=1):
        cases.append(_round_trips(f"9.7.{i}", size))
        cases.append(
            Case(
                f"9.8.{i}",
                f"{ROUND_TRIPS} binary messages of {size} bytes",
                binary_refused(f"9.8.{i}", frame(BINARY, b"\xfe" * size)),
            )
        )
    return cases


def _round_trips(cid: str, size: int) -> Case:
    message = varied_ping(size, 7) if size >= 16 else b""

    async def body(c: Conn) -> Result:
        for count in range(1, ROUND_TRIPS + 1):  # one at a time: Autobahn's RTT case
            problem = await echoed(c, frame(TEXT, message), [answer(message)] * count)
            if problem:
                return judge(cid, problem)
        return judge(cid, await closes_cleanly(c))

    return Case(
        cid, f"{ROUND_TRIPS} text messages of {size} bytes, one at a time (Autobahn: 1,000)", body
    )


def _compressed(cid: str, size: int, fragment: int, offers: tuple[str, ...], kind: str) -> Case:
    """*COMPRESSED* messages, each compressed on its own (the server answers
    ``client_no_context_takeover``) with the window it allows, in frames of *fragment*."""

    async def body(c: Conn) -> Result:
        window = c.ws.window_bits
        if window is None:
            return Result(cid, FAILED, "permessage-deflate not accepted (Autobahn: UNIMPLEMENTED)")
        bits = client_window(c.ws.head)
        expected: list[Event] = []
        for index in range(COMPRESSED):
            if kind == "binary":
                data = fragmented(BINARY, deflate(b"\xfe" * size, bits), fragment, rsv=RSV1)
                await c.send(data)
                closed = await c.until_end()
                code = None if c.close is None else c.close.close_code
                return Result(
                    cid,
                    "INFORMATIONAL" if closed and code == 1003 else FAILED,
                    f"closed with {code}",
                )
            message = varied_ping(size, index) if kind == "json" else html_like(size, index)
            expected.append(answer(message))
            problem = await echoed(
                c, fragmented(TEXT, deflate(message, bits), fragment, rsv=RSV1), expected
            )
            if problem:
                return judge(cid, problem)
        return judge(cid, await closes_cleanly(c))

    text = f"{COMPRESSED} compressed {kind} messages of {size} bytes (Autobahn: 1,000)"
    text += f", in frames of {fragment}" if fragment else ""
    return Case(cid, text, body, offers)


def client_window(head: bytes) -> int:
    """The window the server lets this client compress with (15 unless it says)."""
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("sec-websocket-extensions:"):
            for part in line.split(":", 1)[1].split(";"):
                key, _, value = part.strip().partition("=")
                if key == "client_max_window_bits" and value:
                    return int(value.strip('"'))
    return 15


PMD: Final = "permessage-deflate"
#: Autobahn's client offers by default that it takes ``client_max_window_bits``.
CMWB: Final = "client_max_window_bits"
DEFAULT_OFFER: Final = f"{PMD}; {CMWB}"
NO_TAKEOVER: Final = "server_no_context_takeover"


def offer(*params: str) -> str:
    return "; ".join([PMD, *params, CMWB])


#: Autobahn 13.1-13.7: what the client offers.
OFFERS: Final = (
    (offer(),),
    (offer(NO_TAKEOVER),),
    (offer("server_max_window_bits=9"),),
    (offer("server_max_window_bits=15"),),
    (offer(NO_TAKEOVER, "server_max_window_bits=9"),),
    (offer(NO_TAKEOVER, "server_max_window_bits=15"),),
    (offer(NO_TAKEOVER, "server_max_window_bits=9"), offer(NO_TAKEOVER), offer()),
)


def section_12() -> list[Case]:
    kinds = ("json", "binary", "binary", "html", "binary")  # Autobahn's five data sets
    return [
        _compressed(f"12.{j}.{i}", size, fragment, (DEFAULT_OFFER,), kind)
        for j, kind in enumerate(kinds, start=1)
        for i, (size, fragment) in enumerate(MESSAGE_SIZES, start=1)
    ]


def section_13() -> list[Case]:
    return [
        _compressed(f"13.{j}.{i}", size, fragment, offers, "json")
        for j, offers in enumerate(OFFERS, start=1)
        for i, (size, fragment) in enumerate(MESSAGE_SIZES, start=1)
    ]


def cases() -> list[Case]:
    return section_9() + section_12() + section_13()
