"""Autobahn sections 1-5 (framing, pings and pongs, reserved bits, opcodes,
fragmentation) as cases of the project's suite (see ``autobahn``)."""

from __future__ import annotations

from typing import Final

from autobahn import (
    PONG_OF_PING,
    Case,
    Conn,
    Event,
    Result,
    answer,
    binary_refused,
    closes_cleanly,
    echo,
    echoed,
    fails,
    judge,
)
from rawws import BINARY, CONTINUATION, PING, PONG, TEXT, frame, ping_message, text

#: The message every "send a text message" case sends: it is answered with a pong.
MESSAGE: Final = b'{"type":"ping"}'
SIZES: Final = (0, 125, 126, 127, 128, 65535, 65536)


def sized(size: int) -> bytes:
    """A text message of *size* bytes: a padded JSON ping (an empty one for 0)."""
    return ping_message(size) if size else b""


def section_1() -> list[Case]:
    cases = []
    for index, size in enumerate(SIZES, start=1):
        cid = f"1.1.{index}"
        data = sized(size)
        cases.append(
            Case(cid, f"text message of {size} bytes", echo(cid, text(data), [answer(data)]))
        )
    data = sized(65536)
    cases.append(
        Case(
            "1.1.8",
            "text message of 65536 bytes, sent in chops of 997 octets",
            echo("1.1.8", text(data), [answer(data)], chop=997),
        )
    )
    for index, size in enumerate(SIZES, start=1):
        cid = f"1.2.{index}"
        cases.append(
            Case(
                cid,
                f"binary message of {size} bytes",
                binary_refused(cid, frame(BINARY, b"*" * size)),
            )
        )
    cases.append(
        Case(
            "1.2.8",
            "binary message of 65536 bytes in chops of 997 octets",
            binary_refused("1.2.8", frame(BINARY, b"*" * 65536), chop=997),
        )
    )
    return cases


def pong(payload: bytes) -> Event:
    return ("pong", payload)


def section_2() -> list[Case]:
    binary = bytes([0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF])
    payloads = [f"payload-{i}".encode() for i in range(10)]
    pings = b"".join(frame(PING, p) for p in payloads)

    def unsolicited(cid: str, data: bytes, expected: list[Event]) -> Case:
        return Case(cid, "unsolicited pong(s)", echo(cid, data, expected))

    return [
        Case("2.1", "ping without payload", echo("2.1", frame(PING), [pong(b"")])),
        Case(
            "2.2",
            "ping with a small text payload",
            echo("2.2", frame(PING, b"Hello, world!"), [pong(b"Hello, world!")]),
        ),
        Case(
            "2.3",
            "ping with a small binary payload",
            echo("2.3", frame(PING, binary), [pong(binary)]),
        ),
        Case(
            "2.4",
            "ping with a 125-byte payload",
            echo("2.4", frame(PING, b"\xfe" * 125), [pong(b"\xfe" * 125)]),
        ),
        Case("2.5", "ping with a 126-byte payload", fails("2.5", frame(PING, b"\xfe" * 126))),
        Case(
            "2.6",
            "ping with a 125-byte payload, in chops of 1 octet",
            echo("2.6", frame(PING, b"\xfe" * 125), [pong(b"\xfe" * 125)], chop=1),
        ),
        unsolicited("2.7", frame(PONG), []),
        unsolicited("2.8", frame(PONG, b"unsolicited pong payload"), []),
        unsolicited(
            "2.9",
            frame(PONG, b"unsolicited") + frame(PING, b"ping payload"),
            [pong(b"ping payload")],
        ),
        Case("2.10", "10 pings", echo("2.10", pings, [pong(p) for p in payloads])),
        Case(
            "2.11",
            "10 pings, in chops of 1 octet",
            echo("2.11", pings, [pong(p) for p in payloads], chop=1),
        ),
    ]


def then_bad(
    cid: str, description: str, bad: bytes, *, framewise: bool = False, chop: int | None = None
) -> Case:
    """A message, the bad frame, a ping (in one send, frame by frame, or in chops):
    the message is answered, then the close."""
    frames = [text(MESSAGE), bad, frame(PING)]
    data = frames if framewise else b"".join(frames)
    return Case(cid, description, fails(cid, data, [PONG_OF_PING], chop=chop))


def section_3() -> list[Case]:
    return [
        Case("3.1", "text message with RSV = 1", fails("3.1", text(MESSAGE, rsv=0x40))),
        then_bad(
            "3.2", "message, then a text message with RSV = 2, then a ping", text(MESSAGE, rsv=0x20)
        ),
        then_bad(
            "3.3", "the same with RSV = 3, frame-wise", text(MESSAGE, rsv=0x60), framewise=True
        ),
        then_bad("3.4", "the same with RSV = 4, octet-wise chops", text(MESSAGE, rsv=0x10), chop=1),
        Case(
            "3.5", "binary message with RSV = 5", fails("3.5", frame(BINARY, b"\x00\xff", rsv=0x50))
        ),
        Case("3.6", "ping with RSV = 6", fails("3.6", frame(PING, b"ping", rsv=0x60))),
        Case("3.7", "close with RSV = 7", fails("3.7", frame(0x8, b"\x03\xe8", rsv=0x70))),
    ]


def section_4() -> list[Case]:
    cases = []
    for section, opcodes in (("4.1", (3, 4, 5, 6, 7)), ("4.2", (11, 12, 13, 14, 15))):
        first, second, *rest = opcodes
        cases.append(
            Case(f"{section}.1", f"reserved opcode {first}", fails(f"{section}.1", frame(first)))
        )
        cases.append(
            Case(
                f"{section}.2",
                f"reserved opcode {second} with payload",
                fails(f"{section}.2", frame(second, b"reserved opcode payload")),
            )
        )
        for index, opcode in enumerate(rest, start=3):
            payload = b"payload" if index > 3 else b""
            cases.append(
                then_bad(
                    f"{section}.{index}",
                    f"message, reserved opcode {opcode}, ping",
                    frame(opcode, payload),
                    chop=1 if index == 4 else None,
                )
            )
    return cases


def _frames(data: bytes) -> list[bytes]:
    """*data* (client frames, as built here: masked, lengths under 126) split into its
    frames."""
    out = []
    while data:
        size = 2 + 4 + (data[1] & 0x7F)
        out.append(data[:size])
        data = data[size:]
    return out


def fragments(message: bytes, count: int) -> list[bytes]:
    step = -(-len(message) // count)
    return [message[i : i + step] for i in range(0, len(message), step)]


def fragmented(message: bytes, count: int = 2) -> bytes:
    parts = fragments(message, count)
    out = [frame(TEXT, parts[0], fin=len(parts) == 1)]
    out += [frame(CONTINUATION, p, fin=i == len(parts) - 1) for i, p in enumerate(parts) if i]
    return b"".join(out)


def section_5() -> list[Case]:
    one, two = fragments(MESSAGE, 2)
    with_ping = frame(TEXT, one, fin=False) + frame(PING, b"ping") + frame(CONTINUATION, two)
    orphan_final = frame(CONTINUATION, b"fragment1") + text(MESSAGE)
    orphan = frame(CONTINUATION, b"fragment1", fin=False) + text(MESSAGE)
    cases = [
        Case(
            "5.1",
            "ping in 2 fragments",
            fails("5.1", frame(PING, b"frag", fin=False) + frame(CONTINUATION, b"ment")),
        ),
        Case(
            "5.2",
            "pong in 2 fragments",
            fails("5.2", frame(PONG, b"frag", fin=False) + frame(CONTINUATION, b"ment")),
        ),
    ]
    # each shape three ways: in one send, frame by frame, in chops of 1 octet
    ways: list[tuple[str, bool, int | None]] = [("", False, None), ("", True, None), ("", False, 1)]
    shapes: list[tuple[int, str, list[bytes], list[Event] | None]] = [
        (3, "text message in 2 fragments", _frames(fragmented(MESSAGE)), [PONG_OF_PING]),
        (
            6,
            "text in 2 fragments, a ping between",
            _frames(with_ping),
            [pong(b"ping"), PONG_OF_PING],
        ),
        (9, "continuation (FIN) with nothing to continue", _frames(orphan_final), None),
        (12, "continuation (no FIN) with nothing to continue", _frames(orphan), None),
    ]
    for first, description, frames, expected in shapes:
        for offset, (_, framewise, chop) in enumerate(ways):
            cid = f"5.{first + offset}"
            data: list[bytes] | bytes = frames if framewise else b"".join(frames)
            body = (
                echo(cid, data, expected, chop=chop)
                if expected is not None
                else fails(cid, data, chop=chop)
            )
            cases.append(Case(cid, description, body))
    shape = fragmented(MESSAGE) + frame(CONTINUATION, b"fragment3", fin=False) + text(b"fragment4")
    cases.append(
        Case(
            "5.15",
            "message in 2 fragments, orphan continuation, message",
            fails("5.15", shape, [PONG_OF_PING]),
        )
    )
    twice = (frame(CONTINUATION, b"fragment1", fin=False) + fragmented(MESSAGE)) * 2
    cases.append(
        Case("5.16", "2x: orphan continuation, message in 2 fragments", fails("5.16", twice))
    )
    twice = (frame(CONTINUATION, b"fragment1") + fragmented(MESSAGE)) * 2
    cases.append(
        Case("5.17", "2x: orphan final continuation, message in 2 fragments", fails("5.17", twice))
    )
    both_text = frame(TEXT, one, fin=False) + frame(TEXT, two)
    cases.append(Case("5.18", "2 fragments, both with opcode text", fails("5.18", both_text)))
    cases += [_interleaved("5.19", chop=None), _interleaved("5.20", chop=1)]
    return cases


def _interleaved(cid: str, *, chop: int | None) -> Case:
    """5.19/5.20: a message in 5 fragments with 2 pings between, in two sends: the
    first pong comes before the message's last fragment is sent."""
    parts = fragments(MESSAGE, 5)
    first = frame(TEXT, parts[0], fin=False) + frame(CONTINUATION, parts[1], fin=False)
    first += frame(PING, b"pongme 1!")
    second = frame(CONTINUATION, parts[2], fin=False) + frame(CONTINUATION, parts[3], fin=False)
    second += frame(PING, b"pongme 2!") + frame(CONTINUATION, parts[4])

    async def body(c: Conn) -> Result:
        early = await echoed(c, first, [pong(b"pongme 1!")], chop=chop)
        if early:
            return judge(cid, early)
        expected = [pong(b"pongme 1!"), pong(b"pongme 2!"), PONG_OF_PING]
        late = await echoed(c, second, expected, chop=chop)
        return judge(cid, late, None if late else await closes_cleanly(c))

    return Case(cid, "fragments and pings interleaved, in two sends", body)


def cases() -> list[Case]:
    return section_1() + section_2() + section_3() + section_4() + section_5()
